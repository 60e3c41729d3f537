"""`airflow db clean` from a task: Airflow 3's task runner replaces the metadata connection in the
task's environment with a marker; the command gets the worker's connection back (found on the
native production stack, where compose passes it as AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)."""

from __future__ import annotations

import os
import subprocess
import sys

from flight_gold.airflow.housekeeping import db_clean_env

BLOCKED = "airflow-db-not-allowed:///"
REAL = "postgresql+psycopg2://airflow:airflow@127.0.0.1:5432/airflow"
DB = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
CORE = "AIRFLOW__CORE__SQL_ALCHEMY_CONN"


def test_the_blocked_connection_is_put_back_from_the_workers_environment():
    env = {DB: BLOCKED, CORE: BLOCKED, "AIRFLOW_HOME": "/opt/airflow"}
    assert db_clean_env(env, {DB: REAL}) == {DB: REAL, "AIRFLOW_HOME": "/opt/airflow"}


def test_without_a_worker_value_the_configuration_file_applies():
    assert db_clean_env({DB: BLOCKED, CORE: BLOCKED}, {}) == {}
    assert db_clean_env({DB: BLOCKED}, {DB: BLOCKED}) == {}


def test_an_unblocked_connection_is_left_alone():
    assert db_clean_env({DB: REAL}, {DB: "sqlite:////elsewhere.db"}) == {DB: REAL}


def test_the_start_environment_survives_later_changes_to_os_environ():
    # What block_orm_access does to the task process, in a child of this one.
    code = (
        "import os, json\n"
        "from flight_gold.airflow.housekeeping import db_clean_env, process_start_environ\n"
        f"os.environ[{DB!r}] = {BLOCKED!r}\n"
        f"print(json.dumps([process_start_environ()[{DB!r}], db_clean_env()[{DB!r}]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, DB: REAL}, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f'["{REAL}", "{REAL}"]'
