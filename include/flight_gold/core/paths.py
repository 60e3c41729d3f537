"""Where every table and checkpoint lives under the lakehouse root.

The layout is the same on a local folder and on s3a://: `silver/flights_ml`,
`gold/streaming_aggregations/<table>`, and checkpoints under `_checkpoints/`, apart from the
tables so that VACUUM of a table can never touch a stream's state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from flight_gold.core.contract import gold_table

SILVER_FLIGHTS_ML = "silver/flights_ml"
GOLD_AGGREGATIONS = "gold/streaming_aggregations"
CHECKPOINTS = "_checkpoints"
ALERTS = "_alerts"
# The stream's control and health documents (stop request, health, alert throttle).
CONTROL = "_control"
# Tables the job keeps about itself (per-batch metrics).
METRICS = "_metrics"
DELTA_LOG = "_delta_log"
# Delta names a JSON commit by its version in 20 digits.
_COMMIT_NAME = re.compile(r"^(\d{20})\.json$")


def join(root: str, *parts: str) -> str:
    """`root/part/...` with single slashes, for local paths and URIs alike."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def delta_log(table: str) -> str:
    return join(table, DELTA_LOG)


def delta_commit(table: str, version: int) -> str:
    """The JSON commit file of `version` in `table`'s log."""
    return join(table, DELTA_LOG, f"{version:020d}.json")


def commit_versions(names: Iterable[str]) -> list[int]:
    """The versions of the JSON commits among the file names of a `_delta_log` listing, ascending."""
    return sorted(int(m.group(1)) for m in map(_COMMIT_NAME.match, names) if m)


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3a://", "s3://"))


@dataclass(frozen=True)
class LakehousePaths:
    root: str

    @property
    def silver_flights_ml(self) -> str:
        return join(self.root, SILVER_FLIGHTS_ML)

    def gold_table(self, name: str) -> str:
        return join(self.root, GOLD_AGGREGATIONS, gold_table(name).name)

    def checkpoint(self, name: str) -> str:
        return join(self.root, CHECKPOINTS, GOLD_AGGREGATIONS, gold_table(name).name)

    def refresh_marker(self, name: str) -> str:
        """Beside the checkpoint folder (clearing the folder keeps it): present while a full
        refresh of the table is unfinished (flight_gold.spark.refresh)."""
        return self.checkpoint(name) + ".full_refresh"

    def alerts(self, file_name: str) -> str:
        return join(self.root, ALERTS, file_name)

    def control(self, file_name: str) -> str:
        return join(self.root, CONTROL, file_name)

    def metrics(self, table_name: str) -> str:
        return join(self.root, METRICS, table_name)

    @property
    def flight_phase_counts(self) -> str:
        return self.gold_table("flight_phase_counts")

    @property
    def anomaly_alerts(self) -> str:
        return self.gold_table("anomaly_alerts")
