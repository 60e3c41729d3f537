"""Live: the project's Airflow (scripts/airflow_local.sh: api-server, scheduler, dag-processor,
triggerer) in a temporary AIRFLOW_HOME, driven through the REST API the UI uses, with the alert
connections pointed at real receivers on loopback (HTTP for Slack, aiosmtpd for email). One
Airflow for the whole module, in order:

1. gold_streaming with {"trigger": "available-now"}: success, Gold = the independent computation;
   continuous (and continuous-low-latency) runs stopped by marking the task failed: the Spark
   driver is gone within 30 s after a clean stop, nobody is alerted; a new run resumes from the
   checkpoints: no window twice;
2. supervision: a continuous run whose Spark job is killed with kill -9 four times in a row; after
   each kill a job runs again (within 5 minutes) and processes new Silver_ML rows; each unplanned
   stop and each restart is told once per channel; a second trigger meanwhile is refused naming
   the run; the DAG gold_streaming_stop ends the run as success and nothing starts it again; Gold
   = the independent computation;
3. bad input in continuous mode: given up at once, told once per channel, not retried;
4. gold_housekeeping under the LocalExecutor: `airflow db clean` from a task, beside the running
   scheduler, succeeds;
5. stopping Airflow ends every process it started.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import psutil
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from flight_gold.core.config import GoldConfig
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from support.airflow_live import LiveAirflow, airflow_env, wait_for
from support.expected import expected_gold, read_delta
from support.jobs import assert_gold_is, committed_batches, job_processes, kill9_processes, progress_lines
from support.receivers import SmtpReceiver, WebhookServer, connection_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

DAG_ID, STOP_DAG_ID = "gold_streaming", "gold_streaming_stop"
GUARD, SENSOR, SUBMIT = "check_not_streaming", "wait_for_silver_ml", "run_gold_streams"
TASKS = (GUARD, SENSOR, SUBMIT)
QUERIES = ("flight_phase_counts", "anomaly_alerts")
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
RATE, AIRCRAFT, SEED = 10, 30, 31
SPARK_GONE_WITHIN_S = 30
KILLS = 4
RESTART_WITHIN_S = 300
UNPLANNED = "[Flight Gold] gold_streaming: the stream stopped unexpectedly; restarting in 1 s"
RESTARTED = "[Flight Gold] gold_streaming: the stream was started again"
GAVE_UP = "[Flight Gold] gold_streaming: the stream gave up and needs you"


def silver_rows(first_row: int, n: int) -> pd.DataFrame:
    """Rows first_row .. first_row + n - 1 of one synthetic run: later chunks continue in time."""
    return generate(
        n, start=START, rate_per_s=RATE, aircraft=AIRCRAFT, anomaly_share=0.08, seed=SEED, first_row=first_row
    )


class Feed:
    """Silver_ML as the tests append it, chunk after chunk of one traffic."""

    def __init__(self, config: GoldConfig):
        self.config, self.chunks, self.next_row = config, [], 0

    def append(self, n: int) -> pd.DataFrame:
        chunk = silver_rows(self.next_row, n)
        append_silver(chunk, self.config)
        self.chunks.append(chunk)
        self.next_row += n
        return chunk

    def all(self) -> pd.DataFrame:
        return pd.concat(self.chunks, ignore_index=True)


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def subjects(webhook: WebhookServer) -> list[str]:
    return [text.splitlines()[0] for text in webhook.delivered()]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    home = tmp / "airflow-home"
    home.mkdir()
    webhook, smtp = WebhookServer().start(), SmtpReceiver()
    inbox = smtp.start()
    env = airflow_env(
        home,
        tmp / "lakehouse",
        **connection_env(webhook, inbox, ["ops@example.com"]),
        # Seconds between an unplanned stop and the restart, every event sent at once: the test
        # then runs in minutes (the defaults are 5 s doubling to 5 min, and 5 min between messages).
        GOLD_STREAM_RESTART_DELAY="1 second",
        GOLD_STREAM_RESTART_MAX_DELAY="1 second",
        GOLD_STREAM_ALERT_INTERVAL="0 seconds",
    )
    airflow = LiveAirflow(home, env)
    config = GoldConfig.from_env(env)
    try:
        airflow.start()
        airflow.login()
        airflow.wait_for_dags(DAG_ID, STOP_DAG_ID)
        airflow.unpause(DAG_ID)
        yield airflow, config, Feed(config), webhook, inbox
    finally:
        if airflow.proc is not None:
            airflow.stop()
            airflow.kill_everything()
        webhook.stop()
        smtp.stop()


def test_trigger_available_now_then_continuous_stop_and_resume(live):
    airflow, config, feed, webhook, inbox = live
    started = time.monotonic()
    first = feed.append(6000)  # 10 minutes of traffic

    # available-now: what Silver_ML holds, then the run finishes.
    run_1 = airflow.trigger(DAG_ID, {"trigger": "available-now"})
    airflow.wait_run(DAG_ID, run_1, task_ids=TASKS)
    assert_gold_is(config, expected_gold(first), nonempty=True)
    assert job_processes(config) == []

    # continuous: batches land while the feed appends, until the task is marked failed; then the
    # same with the low-latency mode (an available-now run every interval).
    outcome = []
    for trigger, feed_chunks in (("continuous", 2), ("continuous-low-latency", 1)):
        run_2 = airflow.trigger(DAG_ID, {"trigger": trigger, "trigger_interval": "2 seconds"})
        wait_for(
            f"the {trigger} job's Spark driver",
            lambda: (
                airflow.task(DAG_ID, run_2, SUBMIT)["state"] == "running" and len(job_processes(config)) >= 2
            ),
            details=lambda: airflow.run_details(DAG_ID, run_2, TASKS),
        )
        for _ in range(feed_chunks):
            before = {q: committed_batches(config, q) for q in QUERIES}
            feed.append(1200)  # 2 more minutes each
            wait_for(
                "a micro-batch of the new Silver_ML rows",
                lambda: all(committed_batches(config, q) > before[q] for q in QUERIES),
                details=lambda: airflow.run_details(DAG_ID, run_2, TASKS),
            )
        assert airflow.task(DAG_ID, run_2, SUBMIT)["state"] == "running"
        drivers = job_processes(config)
        assert {p.name() for p in drivers} >= {"java"} and any("python" in p.name() for p in drivers), drivers

        try_number = airflow.task(DAG_ID, run_2, SUBMIT)["try_number"]
        airflow.mark_task(DAG_ID, run_2, SUBMIT, "failed")
        stop_requested = time.monotonic()
        wait_for(
            f"the Spark driver to end (deadline {SPARK_GONE_WITHIN_S} s)",
            lambda: not [p for p in drivers if alive(p)],
            timeout=SPARK_GONE_WITHIN_S,
            interval=0.5,
            details=lambda: f"{job_processes(config)}\n{airflow.run_details(DAG_ID, run_2, TASKS)}",
        )
        spark_gone_s = time.monotonic() - stop_requested
        airflow.wait_run(DAG_ID, run_2, expected="failed", task_ids=TASKS)
        assert airflow.task(DAG_ID, run_2, SUBMIT)["state"] == "failed"
        log_2 = airflow.task_log(DAG_ID, run_2, SUBMIT, try_number)
        # on_kill ran and sent SIGTERM to the job's driver, which stopped its queries itself.
        assert any("sending SIGTERM to the Spark job (pid" in line for line in log_2), log_2[-40:]
        assert any("received SIGTERM, stopping the queries" in line for line in log_2), log_2[-40:]
        assert any("stopped cleanly" in line for line in log_2), log_2[-40:]
        outcome += [f"{trigger}: Spark driver gone {spark_gone_s:.1f} s after the task was marked failed"]
        outcome += [line for line in log_2 if "after SIGTERM" in line]
    committed_at_stop = {q: committed_batches(config, q) for q in QUERIES}
    # Marking the task failed is a stop on purpose: nobody is alerted.
    assert (webhook.delivered(), inbox.subjects()) == ([], [])

    # a new run resumes from the checkpoints: every window once, none missing.
    feed.append(1200)
    run_3 = airflow.trigger(DAG_ID, {"trigger": "available-now"})
    airflow.wait_run(DAG_ID, run_3, task_ids=TASKS)
    assert_gold_is(config, expected_gold(feed.all()), nonempty=True)
    ti_3 = airflow.task(DAG_ID, run_3, SUBMIT)
    batches_3 = progress_lines(airflow.task_log(DAG_ID, run_3, SUBMIT, ti_3["try_number"]))
    for query in QUERIES:
        first_batch = min(line["batch_id"] for line in batches_3 if line["query"] == query)
        assert first_batch >= committed_at_stop[query] > 0, (query, first_batch, committed_at_stop)
    print(f"\nlive Airflow, stops and resume: {time.monotonic() - started:.0f} s; {outcome}")


def test_kill_9_four_times_restarts_tells_once_and_the_stop_dag_ends_it(live):
    airflow, config, feed, webhook, inbox = live
    started = time.monotonic()
    run = airflow.trigger(DAG_ID, {"trigger": "continuous", "trigger_interval": "1 second"})
    details = lambda: airflow.run_details(DAG_ID, run, TASKS)  # noqa: E731
    wait_for("the stream's first job", lambda: len(job_processes(config)) >= 2, details=details)

    # A second trigger while it streams is refused at once, naming it.
    refused = airflow.trigger(DAG_ID, {"trigger": "continuous"})
    airflow.wait_run(DAG_ID, refused, expected="failed", task_ids=TASKS)
    guard = airflow.task(DAG_ID, refused, GUARD)
    assert (guard["state"], guard["try_number"], airflow.task(DAG_ID, refused, SUBMIT)["state"]) == (
        "failed",
        1,
        "upstream_failed",
    )
    assert any(
        f"gold_streaming is already streaming (run {run}" in line
        for line in airflow.task_log(DAG_ID, refused, GUARD, 1)
    )

    timings = []
    for kill in range(1, KILLS + 1):
        # The job at work: a batch of new rows committed, then kill -9 of its JVM and Python driver.
        before = {q: committed_batches(config, q) for q in QUERIES}
        feed.append(600)
        wait_for(
            "a batch of the new rows",
            lambda: all(committed_batches(config, q) > before[q] for q in QUERIES),
            details=details,
        )
        messages = len(webhook.delivered())
        killed = kill9_processes(job_processes(config))
        assert len(killed) >= 2, killed
        killed_at = time.monotonic()
        restarted = wait_for(
            f"a job again after kill {kill}",
            lambda: [p for p in job_processes(config) if p.pid not in killed and "python" in p.name()],
            timeout=RESTART_WITHIN_S,
            interval=0.5,
            details=details,
        )
        restart_s = time.monotonic() - killed_at
        told = wait_for(
            f"the message about kill {kill}",
            lambda: len(webhook.delivered()) > messages and time.monotonic(),
            timeout=60,
            interval=0.2,
            details=details,
        )
        timings.append((round(restart_s, 1), round(told - killed_at, 1)))
        assert restarted
    # The last restarted job processes what is left, then the stop DAG ends the stream. A batch
    # that moves the watermark closes windows the next (no-data) batch writes: the stop waits for
    # Gold to hold every closed window, or it would end the stream between the two.
    feed.append(600)
    expected = expected_gold(feed.all())
    wait_for(
        "Gold to hold every window the watermark closed",
        lambda: all(len(read_delta(config.paths.gold_table(q))) == len(expected[q]) for q in QUERIES),
        details=details,
    )
    assert airflow.task(DAG_ID, run, SUBMIT)["try_number"] == 1  # restarted by the task itself

    stop = airflow.trigger(STOP_DAG_ID)
    stop_began = time.monotonic()
    airflow.wait_run(STOP_DAG_ID, stop, task_ids=("request_stop",))
    stop_s = time.monotonic() - stop_began
    airflow.wait_run(DAG_ID, run, expected="success", task_ids=TASKS)
    assert job_processes(config) == []
    # The stream's run is over: its task ended as success, no try left to start the job again.
    ti = airflow.task(DAG_ID, run, SUBMIT)
    assert (ti["state"], ti["try_number"]) == ("success", 1)
    log = airflow.task_log(DAG_ID, run, SUBMIT, 1)
    assert any("stop requested by gold_streaming_stop run" in line for line in log), log[-40:]
    assert any("the task ends as success" in line for line in log), log[-40:]

    # Told once per event and channel: four unplanned stops, four restarts; nothing for the stop.
    expected_subjects = [UNPLANNED, RESTARTED] * KILLS
    assert subjects(webhook) == expected_subjects
    assert inbox.subjects() == expected_subjects
    assert all("killed by SIGKILL (exit code -9)" in text for text in webhook.delivered()[::2])
    assert_gold_is(config, expected_gold(feed.all()), nonempty=True)
    print(
        f"\nlive supervision: {time.monotonic() - started:.0f} s; (restart s, message s) after each kill: "
        f"{timings}; stop DAG run {stop_s:.0f} s"
    )


def test_bad_input_gives_up_once_without_retry(live):
    airflow, config, _, webhook, inbox = live
    told = len(webhook.delivered())
    # Silver_ML replaced by a table without a column the job needs.
    frame = generate(10, start=START, rate_per_s=1, aircraft=2, seed=23).drop(columns=["flight_phase"])
    schema = pa.schema([f for f in SILVER_ML_ARROW_SCHEMA if f.name != "flight_phase"])
    write_deltalake(
        config.paths.silver_flights_ml,
        pa.Table.from_pandas(frame, schema=schema, preserve_index=False),
        mode="overwrite",
        schema_mode="overwrite",
    )
    run = airflow.trigger(DAG_ID, {"trigger": "continuous"})
    airflow.wait_run(DAG_ID, run, expected="failed", task_ids=TASKS)
    ti = airflow.task(DAG_ID, run, SUBMIT)
    assert (ti["state"], ti["try_number"]) == ("failed", 1)
    assert subjects(webhook)[told:] == [GAVE_UP] and inbox.subjects()[told:] == [GAVE_UP]
    assert "exit code 2: bad input or configuration" in webhook.delivered()[-1]
    assert job_processes(config) == []


def test_housekeeping_runs_under_the_local_executor(live):
    airflow = live[0]
    airflow.wait_for_dags("gold_housekeeping")
    airflow.unpause("gold_housekeeping")
    run = airflow.trigger("gold_housekeeping")
    airflow.wait_run("gold_housekeeping", run, task_ids=("clean_metadata", "clean_task_logs"))
    log = airflow.task_log("gold_housekeeping", run, "clean_metadata", 1)
    assert any("db clean:" in line for line in log), log[-30:]


def test_stopping_airflow_ends_every_process_it_started(live):
    airflow = live[0]
    assert airflow.session_processes()
    stop = airflow.stop()
    assert stop.returncode == 0, stop.stderr
    assert airflow.session_processes() == [], airflow.session_processes()
    assert airflow.proc.wait(timeout=60) == 0
