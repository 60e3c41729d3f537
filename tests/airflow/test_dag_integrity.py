"""Integrity of every file in dags/, as Airflow's own DagBag sees it: each imports without error
and defines DAGs with the project's owner, retries and tags; no DAG looks up a connection or a
variable while it is parsed (the DAG processor parses every file every few minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flight_gold.airflow.defaults import OWNER, TAGS

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
GUARD = Path(__file__).resolve().parents[1] / "support" / "parse_guard.py"


def parse_guarded(folder: Path) -> dict:
    """DagBag(folder) in a fresh interpreter whose first secrets backend records every lookup."""
    env = {
        **os.environ,
        "AIRFLOW__SECRETS__BACKEND": "parse_guard.RecordingSecretsBackend",
        "AIRFLOW__WORKERS__SECRETS_BACKEND": "parse_guard.RecordingSecretsBackend",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD.parent), os.environ.get("PYTHONPATH")])),
    }
    # Connections from the environment would answer before a lookup reached the recorder.
    env = {k: v for k, v in env.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    run = subprocess.run(
        [sys.executable, str(GUARD), str(folder)], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def guarded_parse() -> dict:
    return parse_guarded(DAGS_DIR)


def test_the_dags_folder_holds_the_streaming_dag():
    assert DAGS_DIR / "gold_streaming.py" in DAG_FILES


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_file_imports_and_its_dags_have_owner_retries_and_tags(path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))

    assert bag.import_errors == {}, bag.import_errors
    assert bag.dags, f"{path.name} defines no DAG"
    for dag_id, dag in bag.dags.items():
        assert dag.fileloc == str(path)
        owners = {task.owner for task in dag.tasks}
        assert owners == {OWNER}, f"{dag_id}: task owners {owners}"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id}: no retries in default_args"
        assert set(TAGS) <= set(dag.tags), f"{dag_id}: tags {sorted(dag.tags)} lack {TAGS}"


def test_no_dag_looks_up_a_connection_or_variable_at_parse_time(guarded_parse):
    assert guarded_parse["import_errors"] == {}
    assert "gold_streaming" in guarded_parse["dags"]
    assert guarded_parse["lookups"] == []


def test_the_parse_guard_sees_a_lookup_at_parse_time(tmp_path):
    # The guard itself must be able to fail: a DAG that reads a connection and a variable at
    # module level is caught.
    (tmp_path / "bad_dag.py").write_text(
        textwrap.dedent("""
        import pendulum
        from airflow.sdk import BaseHook, Variable, dag, task

        try:
            BaseHook.get_connection("spark_default")
        except Exception:
            pass
        Variable.get("gold_threshold", default="0.1")

        @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
        def bad_dag():
            @task
            def noop():
                pass
            noop()

        bad_dag()
    """)
    )

    result = parse_guarded(tmp_path)

    assert result["dags"] == ["bad_dag"]
    assert "connection spark_default" in result["lookups"]
    assert "variable gold_threshold" in result["lookups"]
