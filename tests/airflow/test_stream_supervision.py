"""The supervising task of gold_streaming run by Airflow (dag.test(): the real operator,
spark-submit on local[2]) with real receivers on loopback: a job killed with kill -9 is started
again and each event is told once per channel; a stop request ends the run as success; bad input
gives up at once, told, without retry."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from flight_gold.core.config import GoldConfig
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from flight_gold.supervision.control import StopRequests
from support.expected import expected_gold
from support.jobs import assert_gold_is, committed_batches, gold_is, job_processes, kill9_processes
from support.receivers import SmtpReceiver, WebhookServer, connection_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
GUARD, SENSOR, SUBMIT = "check_not_streaming", "wait_for_silver_ml", "run_gold_streams"
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
TABLES = ("flight_phase_counts", "anomaly_alerts")
STEP_TIMEOUT_S = 900  # a loaded 2-core machine takes minutes to start a JVM; no speed goal


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
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    for name, value in connection_env(*receivers, ["ops@example.com"]).items():
        monkeypatch.setenv(name, value)
    # Seconds, not minutes, between a stop and the restart; every event sent at once.
    monkeypatch.setenv("GOLD_STREAM_RESTART_DELAY", "1 second")
    monkeypatch.setenv("GOLD_STREAM_RESTART_MAX_DELAY", "2 seconds")
    monkeypatch.setenv("GOLD_STREAM_ALERT_INTERVAL", "0 seconds")
    return GoldConfig.from_env()


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "gold_streaming.py"))
    assert bag.import_errors == {}
    return bag.get_dag("gold_streaming")


def run(conf: dict) -> tuple[str, dict[str, tuple[str, int]]]:
    from airflow.utils.session import create_session

    dag_run = load_dag().test(run_conf=conf)
    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return str(dag_run.state), {ti.task_id: (str(ti.state), ti.try_number) for ti in tis}


def wait_for(what: str, condition, timeout: float = STEP_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_a_killed_job_restarts_told_once_and_a_stop_request_ends_the_run_as_success(env, receivers):
    webhook, inbox = receivers
    traffic = lambda n, first_row: generate(  # noqa: E731  one traffic, appended in two parts
        n, start=START, rate_per_s=10, aircraft=30, anomaly_share=0.08, seed=41, first_row=first_row
    )
    silver = traffic(3000, 0)
    append_silver(silver, env)
    expected = expected_gold(silver)
    steps: dict = {}

    def operator_of_the_stream():
        try:
            wait_for("the job's first batches", lambda: all(committed_batches(env, q) for q in TABLES))
            steps["killed"] = kill9_processes(job_processes(env))
            assert steps["killed"], "no job process to kill"
            wait_for(
                "the restarted job",
                lambda: [p for p in job_processes(env) if p.pid not in steps["killed"]],
            )
            # The feed goes on. A kill between a batch that moved the watermark and the no-data
            # batch that writes the windows it closed leaves them to the restarted job's next
            # batch: Spark runs no batch after a restart until new data comes (docs/guarantees.md).
            more = traffic(600, len(silver))
            append_silver(more, env)
            expected.update(expected_gold(pd.concat([silver, more], ignore_index=True)))
            wait_for("Gold to be complete", lambda: gold_is(env, expected))
            StopRequests(env).request("the test")
            steps["stop_requested"] = time.monotonic()
        except BaseException as exc:  # reported by the test, not lost in the thread
            steps["error"] = exc
            StopRequests(env).request("the test, after an error")

    thread = threading.Thread(target=operator_of_the_stream, daemon=True)
    thread.start()
    state, tasks = run({"trigger": "continuous", "trigger_interval": "1 second"})
    thread.join(timeout=60)
    assert "error" not in steps, steps.get("error")

    assert (state, tasks) == (
        "success",
        {GUARD: ("success", 1), SENSOR: ("success", 1), SUBMIT: ("success", 1)},
    )
    assert job_processes(env) == []
    assert_gold_is(env, expected)
    subjects = [
        "[Flight Gold] gold_streaming: the stream stopped unexpectedly; restarting in 1 s",
        "[Flight Gold] gold_streaming: the stream was started again",
    ]
    assert [text.splitlines()[0] for text in webhook.delivered()] == subjects
    assert inbox.subjects() == subjects
    assert (
        "The Spark job was killed by SIGKILL (exit code -9) without being asked to stop."
        in webhook.delivered()[0]
    )
    health = json.loads(Path(env.paths.control("gold_streaming_health.json")).read_text())
    assert health["state"] == "stopped" and health["message"].startswith("stopped on request: the test at ")
    assert [(r["exit_code"], r["delay_s"]) for r in health["restarts"]] == [(-9, 1.0)]


def test_bad_input_in_continuous_mode_gives_up_told_once_without_retry(env, receivers):
    webhook, inbox = receivers
    frame = generate(10, start=START, rate_per_s=1, aircraft=2, seed=43).drop(columns=["flight_phase"])
    schema = pa.schema([f for f in SILVER_ML_ARROW_SCHEMA if f.name != "flight_phase"])
    write_deltalake(
        env.paths.silver_flights_ml, pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    )

    state, tasks = run({"trigger": "continuous"})

    assert (state, tasks[SUBMIT]) == ("failed", ("failed", 1))
    assert [text.splitlines()[0] for text in webhook.delivered()] == [
        "[Flight Gold] gold_streaming: the stream gave up and needs you"
    ]
    assert inbox.subjects() == ["[Flight Gold] gold_streaming: the stream gave up and needs you"]
    text = webhook.delivered()[0]
    assert (
        "The Spark job ended with exit code 2: bad input or configuration. Last error: streaming_gold: error:"
        in text
    )
    assert "flight_phase" in text and "Not restarted: a restart would fail the same way." in text
    health = json.loads(Path(env.paths.control("gold_streaming_health.json")).read_text())
    assert (health["state"], health["last_failure"]["exit_code"]) == ("gave_up", 2)
