"""Parses a DAG folder with Airflow's DagBag while a secrets backend, consulted before any other,
records every connection and variable looked up; prints {"dags", "import_errors", "lookups"} as
JSON. Run as a script, in a process of its own, so that the backend is the first Airflow loads:

    AIRFLOW__SECRETS__BACKEND=parse_guard.RecordingSecretsBackend python parse_guard.py DAG_FOLDER
"""

from __future__ import annotations

import json
import sys

from airflow.secrets import BaseSecretsBackend

LOOKUPS: list[str] = []


class RecordingSecretsBackend(BaseSecretsBackend):
    """Answers nothing, remembers every question."""

    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        LOOKUPS.append(f"connection {conn_id}")
        return None

    def get_variable(self, key: str, team_name: str | None = None) -> str | None:
        LOOKUPS.append(f"variable {key}")
        return None

    def get_config(self, key: str) -> str | None:
        return None


def main(folder: str) -> None:
    # Airflow imports the backend as `parse_guard`, not as this `__main__`.
    import parse_guard
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    json.dump(
        {"dags": sorted(bag.dag_ids), "import_errors": bag.import_errors, "lookups": parse_guard.LOOKUPS},
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1])
