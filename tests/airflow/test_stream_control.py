"""The DAGs around the stream run by Airflow (dag.test()), without Spark: gold_streaming's guard
against a second run, gold_streaming_stop, gold_freshness against real receivers on loopback
(HTTP for Slack, aiosmtpd for email), and gold_housekeeping on planted old runs and logs.

Other runs' states are planted in the test's metadata database, as a running stream leaves them;
the tasks read them through the Task SDK's execution API, as in production."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from flight_gold.airflow.defaults import (
    FRESHNESS_DAG_ID,
    HOUSEKEEPING_DAG_ID,
    STOP_DAG_ID,
    STREAMING_DAG_ID,
    STREAMING_GUARD_TASK,
    STREAMING_SENSOR_TASK,
    STREAMING_TASK,
)
from flight_gold.core.config import GoldConfig
from flight_gold.core.times import utcnow
from flight_gold.supervision.control import StopRequests
from flight_gold.supervision.health import HealthStore, StreamHealth
from support.receivers import SmtpReceiver, WebhookServer, connection_env
from support.stream_data import catch_up, feed

REPO = Path(__file__).resolve().parents[2]
RECIPIENTS = ["ops@example.com"]


@pytest.fixture
def receivers():
    webhook, smtp = WebhookServer().start(), SmtpReceiver()
    inbox = smtp.start()
    yield webhook, inbox
    webhook.stop()
    smtp.stop()


@pytest.fixture
def env(monkeypatch, tmp_path, airflow_db, receivers):
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(tmp_path / "lakehouse"))
    for name, value in connection_env(*receivers, RECIPIENTS).items():
        monkeypatch.setenv(name, value)
    return GoldConfig.from_env()


def load_dag(file_name: str, dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / file_name))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def run(dag, **kwargs) -> tuple[str, dict[str, str], dict]:
    """dag.test(): (run state, {task: state}, {task: return value})."""
    from airflow.utils.session import create_session

    dag_run = dag.test(**kwargs)
    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        states = {ti.task_id: str(ti.state) for ti in tis}
        values = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id, session=session) for ti in tis}
    return str(dag_run.state), states, values


def plant_stream_run(states: dict[str, str]) -> str:
    """A gold_streaming run whose tasks are in `states` (a stream at work), as Airflow records it."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # A real run of the real DAG, its sensor failing at once (no Silver_ML here), then its states
    # set to those of a running stream.
    dag_run = load_dag("gold_streaming.py", STREAMING_DAG_ID).test(
        run_conf={"trigger": "available-now", "silver_wait_timeout": 0}
    )
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.run_id == dag_run.run_id))
        run.state = "running"
        for ti in run.get_task_instances(session=session):
            ti.state = states.get(ti.task_id, ti.state)
    return dag_run.run_id


def set_task_state(run_id: str, task_id: str, state: str) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance).where(TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
        )
        ti.state = state


def finish_stream_run(run_id: str) -> None:
    """What a stopped stream leaves: its tasks and run ended."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.run_id == run_id))
        run.state = "success"
        for ti in run.get_task_instances(session=session):
            ti.state = "success"


# -- gold_streaming: one stream at a time ------------------------------------------------------------


def test_a_trigger_while_a_stream_runs_is_refused_naming_it(env):
    streaming = plant_stream_run(
        {STREAMING_GUARD_TASK: "success", STREAMING_SENSOR_TASK: "success", STREAMING_TASK: "running"}
    )
    health = StreamHealth()
    since = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
    health.supervising(STREAMING_DAG_ID, streaming, 1, "continuous", since)
    health.job_started(since)
    HealthStore(env).save(health)
    try:
        state, tasks, _ = run(
            load_dag("gold_streaming.py", STREAMING_DAG_ID), run_conf={"trigger": "continuous"}
        )
    finally:
        finish_stream_run(streaming)
    assert (state, tasks) == (
        "failed",
        {
            STREAMING_GUARD_TASK: "failed",
            STREAMING_SENSOR_TASK: "upstream_failed",
            STREAMING_TASK: "upstream_failed",
        },
    )
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        guard = session.scalars(
            select(TaskInstance)
            .where(TaskInstance.dag_id == STREAMING_DAG_ID, TaskInstance.task_id == STREAMING_GUARD_TASK)
            .order_by(TaskInstance.start_date.desc())
        ).first()
        assert guard.try_number == 1 and guard.max_tries == 0


def test_the_guard_names_the_running_run(env, capfd):
    streaming = plant_stream_run({STREAMING_SENSOR_TASK: "up_for_reschedule"})
    health = StreamHealth()
    health.supervising(STREAMING_DAG_ID, streaming, 1, "continuous", datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    HealthStore(env).save(health)
    try:
        run(load_dag("gold_streaming.py", STREAMING_DAG_ID))
    finally:
        finish_stream_run(streaming)
    message = (
        f"gold_streaming is already streaming (run {streaming}, since 2024-05-01 10:00:00 UTC); this run "
        "does nothing. Stop it first with the DAG gold_streaming_stop to start it with other settings."
    )
    assert f"AirflowFailException: {message}" in "".join(capfd.readouterr())


# -- gold_streaming_stop ---------------------------------------------------------------------------


def test_stop_with_nothing_streaming_says_so_and_leaves_the_request(env):
    state, tasks, values = run(load_dag("gold_streaming_stop.py", STOP_DAG_ID))
    assert (state, tasks) == ("success", {"request_stop": "success"})
    stops = StopRequests(env)
    assert values["request_stop"] == {
        "stopped_runs": [],
        "message": f"no gold_streaming run is streaming: nothing to stop. The request stays in {stops.uri}; "
        "the next trigger of gold_streaming removes it and streams.",
        "stop_request": stops.uri,
    }
    assert stops.current().requested_by.startswith("gold_streaming_stop run ")


def test_stop_waits_until_the_stream_has_stopped(env):
    streaming = plant_stream_run(
        {STREAMING_GUARD_TASK: "success", STREAMING_SENSOR_TASK: "success", STREAMING_TASK: "running"}
    )

    def the_stream_stops_when_asked():
        stops = StopRequests(env)
        deadline = time.monotonic() + 300
        while stops.current() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        finish_stream_run(streaming)

    stopper = threading.Thread(target=the_stream_stops_when_asked, daemon=True)
    stopper.start()
    state, tasks, values = run(load_dag("gold_streaming_stop.py", STOP_DAG_ID))
    stopper.join(timeout=10)
    assert (state, tasks) == ("success", {"request_stop": "success"})
    result = values["request_stop"]
    assert (result["stopped_runs"], result["states"]) == ([streaming], {streaming: "success"})


# -- gold_freshness --------------------------------------------------------------------------------


def test_freshness_alerts_once_while_stopped_and_resolves_after_a_restart(env, receivers):
    webhook, inbox = receivers
    dag = load_dag("gold_freshness.py", FRESHNESS_DAG_ID)
    now = utcnow().replace(second=0, microsecond=0)
    # Recent traffic: the freshness check caps Silver_ML's newest time at now + the skew guard.
    start = now - timedelta(minutes=40)
    silver = feed(env, 0, 10, start=start)
    catch_up(env, silver)

    checks = []
    for k in range(3):  # no stream; Silver_ML grows before each check
        silver = pd.concat([silver, feed(env, 10 + k, 1, start=start)])
        checks.append(run(dag))
    assert [c[:2] for c in checks] == [("success", {"check_freshness": "success"})] * 3
    assert [c[2]["check_freshness"]["sent"] for c in checks] == [{}, {"slack": "alert", "email": "alert"}, {}]
    assert webhook.delivered()[0].startswith("[Flight Gold] Gold is falling behind Silver_ML\n")
    assert inbox.subjects() == ["[Flight Gold] Gold is falling behind Silver_ML"]

    streaming = plant_stream_run(
        {STREAMING_GUARD_TASK: "success", STREAMING_SENSOR_TASK: "success", STREAMING_TASK: "running"}
    )
    try:
        catch_up(env, silver)  # the restarted stream catches up
        after = [run(dag)[2]["check_freshness"] for _ in range(2)]
    finally:
        finish_stream_run(streaming)
    assert [a["sent"] for a in after] == [{"slack": "resolved", "email": "resolved"}, {}]
    assert all(a["stream_running"] for a in after)
    assert [t.splitlines()[0] for t in webhook.delivered()] == [
        "[Flight Gold] Gold is falling behind Silver_ML",
        "[Flight Gold] Gold is fresh again",
    ]
    assert inbox.subjects() == [
        "[Flight Gold] Gold is falling behind Silver_ML",
        "[Flight Gold] Gold is fresh again",
    ]
    ledger = json.loads(Path(env.paths.alerts("gold_freshness.json")).read_text())
    assert ledger["incident"] is None and ledger["stream_running"] is True


# -- gold_housekeeping -----------------------------------------------------------------------------


def test_housekeeping_removes_old_runs_and_logs_and_keeps_recent_ones(env, tmp_path, monkeypatch):
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    monkeypatch.setenv("GOLD_AIRFLOW_RETENTION_DAYS", "30")
    old = utcnow() - timedelta(days=45)
    aged, recent = run_ids = [
        load_dag("gold_streaming_stop.py", STOP_DAG_ID).test().run_id,
        load_dag("gold_streaming_stop.py", STOP_DAG_ID).test().run_id,
    ]
    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.run_id == aged))
        dag_run.start_date = dag_run.end_date = old
        for ti in dag_run.get_task_instances(session=session):
            ti.start_date = ti.end_date = old

    from airflow.configuration import conf

    logs = Path(conf.get("logging", "base_log_folder")) / "dag_id=planted"
    (logs / "old").mkdir(parents=True, exist_ok=True)
    (logs / "new").mkdir(parents=True, exist_ok=True)
    stale, fresh = logs / "old" / "attempt=1.log", logs / "new" / "attempt=1.log"
    stale.write_text("x" * 1000)
    fresh.write_text("y" * 10)
    os.utime(stale, (old.timestamp(), old.timestamp()))
    os.utime(logs / "old", (old.timestamp(), old.timestamp()))

    state, tasks, values = run(load_dag("gold_housekeeping.py", HOUSEKEEPING_DAG_ID))

    assert (state, tasks) == ("success", {"clean_metadata": "success", "clean_task_logs": "success"})
    with create_session() as session:
        left = set(session.scalars(select(DagRun.run_id).where(DagRun.run_id.in_(run_ids))))
        tis = set(session.scalars(select(TaskInstance.run_id).where(TaskInstance.run_id.in_(run_ids))))
    assert left == tis == {recent}
    assert (
        values["clean_task_logs"]["files_removed"] >= 1 and values["clean_task_logs"]["bytes_freed"] >= 1000
    )
    assert not stale.exists() and not (logs / "old").exists()
    assert fresh.read_text() == "y" * 10
