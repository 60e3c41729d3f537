"""The DAG gold_streaming run by Airflow (dag.test(): the real sensor, the real SparkSubmitOperator
and spark-submit with master local[*]) on a temporary lakehouse whose Silver_ML comes from the feed;
the Gold tables must equal the independent DuckDB computation of tests/expected.py."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from flight_gold.airflow.submit import LOCAL_SPARK_CONNECTION
from flight_gold.core.config import GoldConfig
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from support.expected import expected_gold
from support.jobs import assert_gold_is, committed_batches, run_job

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "gold_streaming.py"
GUARD, SENSOR, SUBMIT = "check_not_streaming", "wait_for_silver_ml", "run_gold_streams"
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
GOLD_TABLES = ("flight_phase_counts", "anomaly_alerts")


@pytest.fixture
def env(monkeypatch, tmp_path, airflow_db):
    """The environment `make airflow` gives the Airflow components, on a temporary lakehouse."""
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(tmp_path / "lakehouse"))
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", LOCAL_SPARK_CONNECTION)
    return GoldConfig.from_env()


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.get_dag("gold_streaming")


def run(dag, conf: dict, tries: dict | None = None) -> tuple[str, dict[str, str], list]:
    """dag.test(run_conf=conf): (run state, {task: state}, the sensor's reschedule requests);
    fills `tries` with {task: try number} when given."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_run = dag.test(run_conf=conf)
    with create_session() as session:
        tis = {ti.task_id: ti for ti in dag_run.get_task_instances(session=session)}
        reschedules = session.scalars(
            select(TaskReschedule).where(TaskReschedule.ti_id == tis[SENSOR].id)
        ).all()
        if tries is not None:
            tries.update({k: ti.try_number for k, ti in tis.items()})
        return str(dag_run.state), {k: str(ti.state) for k, ti in tis.items()}, list(reschedules)


def test_available_now_run_writes_the_gold_tables_of_the_independent_computation(env):
    silver = generate(6000, start=START, rate_per_s=10, aircraft=40, anomaly_share=0.08, seed=21)
    append_silver(silver.iloc[:2500], env)
    append_silver(silver.iloc[2500:], env)

    state, tasks, _ = run(load_dag(), {"trigger": "available-now"})

    assert (state, tasks) == ("success", {GUARD: "success", SENSOR: "success", SUBMIT: "success"})
    assert_gold_is(env, expected_gold(silver), nonempty=True)
    for query in GOLD_TABLES:
        assert Path(env.paths.checkpoint(query), "commits").is_dir()


def job_drivers(config: GoldConfig) -> list[psutil.Process]:
    """The job's Python driver processes on this lakehouse."""
    found = []
    for p in psutil.process_iter():
        try:
            cmdline = p.cmdline()
            if (
                "python" in p.name()
                and any(a.endswith("jobs/streaming_gold.py") for a in cmdline)
                and config.lakehouse_root in cmdline
            ):
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_a_crashed_job_is_retried_and_resumes_from_its_checkpoint(env, monkeypatch):
    silver = generate(6000, start=START, rate_per_s=10, aircraft=40, anomaly_share=0.08, seed=25)
    parts = [silver.iloc[k * 1000 : (k + 1) * 1000] for k in range(6)]
    # A new checkpoint reads Silver_ML's whole snapshot in one batch, which leaves no batch to do
    # after a kill: a first run reads the first commit, the DAG's run then reads one Silver_ML
    # commit per micro-batch, five of them, and is killed after the first.
    append_silver(parts[0], env)
    first = run_job(env)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {q: committed_batches(env, q) for q in GOLD_TABLES}
    for part in parts[1:]:
        append_silver(part, env)
    monkeypatch.setenv("GOLD_MAX_FILES_PER_TRIGGER", "1")
    dag = load_dag()
    task = dag.get_task(SUBMIT)
    task.retries, task.retry_delay, task.retry_exponential_backoff = 1, timedelta(seconds=1), 0

    crash: dict = {}

    def kill_the_driver_after_its_first_batch():
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and not crash:
            done = {q: committed_batches(env, q) - before[q] for q in GOLD_TABLES}
            drivers = job_drivers(env)
            if drivers and all(n > 0 for n in done.values()):
                for driver in drivers:
                    driver.send_signal(signal.SIGKILL)
                crash.update(done)
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_the_driver_after_its_first_batch, daemon=True)
    watcher.start()
    tries: dict = {}
    state, tasks, _ = run(dag, {"trigger": "available-now"}, tries)
    watcher.join(timeout=10)

    assert crash and all(0 < n < len(parts) - 1 for n in crash.values()), crash
    assert (state, tasks) == ("success", {GUARD: "success", SENSOR: "success", SUBMIT: "success"})
    assert tries[SUBMIT] == 2
    assert_gold_is(env, expected_gold(silver))


def test_sensor_times_out_naming_the_path_and_frees_its_slot_while_waiting(env, capfd):
    state, tasks, reschedules = run(load_dag(), {"trigger": "available-now", "silver_wait_timeout": 3})

    assert (state, tasks) == ("failed", {GUARD: "success", SENSOR: "failed", SUBMIT: "upstream_failed"})
    # Each wait was a reschedule: the sensor gave its worker slot back between pokes.
    assert len(reschedules) >= 1
    output = "".join(capfd.readouterr())
    failure = [
        line for line in output.splitlines() if "AirflowSensorTimeout: Silver_ML is not a Delta table" in line
    ]
    assert failure, output[-3000:]
    assert f"no commit in {env.paths.silver_flights_ml}/_delta_log" in failure[-1]
    assert "after waiting 3 s" in failure[-1]


def test_only_the_named_query_runs(env):
    silver = generate(2400, start=START, rate_per_s=10, aircraft=20, seed=22)
    append_silver(silver, env)

    state, tasks, _ = run(load_dag(), {"trigger": "available-now", "queries": ["flight_phase_counts"]})

    assert (state, tasks) == ("success", {GUARD: "success", SENSOR: "success", SUBMIT: "success"})
    assert_gold_is(env, expected_gold(silver), tables=("flight_phase_counts",))
    assert not Path(env.paths.anomaly_alerts).exists()
    assert not Path(env.paths.checkpoint("anomaly_alerts")).exists()


def test_bad_silver_fails_at_once_without_retry(env):
    # Silver_ML is a Delta table (the sensor passes) but lacks a column the job needs: exit code 2.
    import pyarrow as pa
    from deltalake import write_deltalake

    from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA

    frame = generate(10, start=START, rate_per_s=1, aircraft=2, seed=23).drop(columns=["flight_phase"])
    schema = pa.schema([f for f in SILVER_ML_ARROW_SCHEMA if f.name != "flight_phase"])
    write_deltalake(
        env.paths.silver_flights_ml, pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    )

    from airflow.utils.session import create_session

    dag_run = load_dag().test(run_conf={"trigger": "available-now"})
    with create_session() as session:
        ti = dag_run.get_task_instance(SUBMIT, session=session)
        assert (str(dag_run.state), str(ti.state), ti.try_number) == ("failed", "failed", 1)


def test_a_missing_spark_connection_is_a_clear_error(env, monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW_CONN_SPARK_DEFAULT")
    append_silver(generate(10, start=START, rate_per_s=1, aircraft=2, seed=24), env)

    state, tasks, _ = run(load_dag(), {"trigger": "available-now"})

    assert (state, tasks) == ("failed", {GUARD: "success", SENSOR: "success", SUBMIT: "failed"})
    assert "AirflowFailException: Airflow connection 'spark_default' is not defined" in "".join(
        capfd.readouterr()
    )


def test_the_py_files_zip_holds_the_package_without_bytecode(tmp_path):
    import zipfile

    from flight_gold.airflow.submit import build_package_zip

    names = zipfile.ZipFile(build_package_zip(tmp_path)).namelist()
    package = Path(__file__).resolve().parents[2] / "include" / "flight_gold"
    sources = sorted(
        str(Path("flight_gold") / p.relative_to(package))
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    )
    assert sorted(n for n in names if n.endswith(".py")) == sources
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


# -- what the operators hand to spark-submit ----------------------------------------------------


@pytest.mark.parametrize(
    "connection, cores",
    [
        ({"conn_type": "spark", "host": "spark://10.1.2.3", "port": 7077}, ("1", "2")),
        ({"conn_type": "spark", "host": "local[2]"}, (None, None)),
    ],
)
def test_the_spark_settings_follow_the_connections_master(monkeypatch, tmp_path, connection, cores):
    import json

    from flight_gold.airflow.maintenance import GoldMaintenanceSubmitOperator
    from flight_gold.airflow.streaming import GoldStreamingSubmitOperator
    from flight_gold.airflow.submit import ship_project

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(connection))
    # The worker's SPARK_MASTER says the opposite of the connection: the connection wins.
    other = "local[*]" if "spark://" in connection["host"] else "spark://elsewhere:7077"
    monkeypatch.setenv("SPARK_MASTER", other)
    monkeypatch.setenv("GOLD_MAINTENANCE_CORES_MAX", "2")
    config = GoldConfig.from_env(lakehouse_root=str(tmp_path / "lake"))
    operators = [
        GoldStreamingSubmitOperator(task_id="stream", conn_id="spark_default"),
        GoldMaintenanceSubmitOperator(task_id="maintain", conn_id="spark_default"),
    ]
    for operator, cap in zip(operators, cores):
        ship_project(operator, config, str(tmp_path))
        assert operator.conf.get("spark.cores.max") == cap, operator.task_id
        # Small Delta state on every master: one task per reconstruction (session.py; the 50 of
        # Delta's default cost 45 s per empty batch on the native stack's cluster).
        assert operator.conf.get("spark.databricks.delta.snapshotPartitions") == "1"
        assert operator.conf.get("spark.executor.cores") == ("1" if cap else None)


def test_a_full_refresh_is_passed_on_the_first_try_and_on_retries_only_while_unfinished(env):
    from types import SimpleNamespace

    from flight_gold.airflow.streaming import GoldStreamingSubmitOperator

    def asked(value, try_number):
        operator = GoldStreamingSubmitOperator(task_id="run", full_refresh=value)
        return operator.refresh_requested({"ti": SimpleNamespace(try_number=try_number)}, env)

    assert asked("False", 1) is False and asked(False, 1) is False
    assert asked("True", 1) is True and asked(True, 1) is True
    # A retry after the refresh finished resumes from the new checkpoints: no second refresh.
    assert asked("True", 2) is False
    marker = Path(env.paths.refresh_marker("anomaly_alerts"))
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert asked("True", 2) is True
    assert asked("False", 2) is False


def test_the_trigger_form_has_an_unticked_full_refresh_that_asks_for_confirmation(env):
    params = load_dag().params
    assert params["full_refresh"] is False
    param = params.get_param("full_refresh")
    assert param.schema["type"] == "boolean" and param.schema["title"] == "Full refresh"
    assert "Tick only if you mean it" in param.description
