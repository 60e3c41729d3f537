"""The production topology of docker-compose.yaml, run for real without Docker (tests/support/stack):
PostgreSQL, Airflow's four components with the LocalExecutor, a Spark standalone cluster (master
and two workers of 2 cores and 1.5 GiB), the lakehouse on an S3 server, SMTP and Slack receivers;
every setting from the rendered compose file and docker/airflow-init.sh. Then what production does
to it:

1. the Silver_ML replay (compose's silver-replay; the recording with two injected anomaly bursts)
   feeds s3a:// live, shifted to now, at 3x: the 3 h recording lasts an hour, longer than the
   test, so that the stream has new data through every fault;
2. gold_streaming is triggered through the REST API (continuous): the sensor passes, the job runs
   on the cluster with an executor on each worker (the master's and the workers' JSON);
3. while it streams: gold_maintenance runs beside it, each application with its own cores;
   gold_anomaly_alerts sends one Slack message and one email; the dashboard API answers from S3;
4. faults, each followed by recovery: kill -9 of the scheduler's session (its tasks and the
   Spark driver with it) and a scheduler restart; kill -9 of a Spark worker (and its executor);
   the S3 server down for 30 s and up again on its port with its data;
5. the feed stops, the stream drains: both Gold tables equal the independent computation
   (tests/support/expected.py) over everything the feed wrote; every breach alerted exactly once;
6. stop: no process of the stack is left.

The durations (stack start, trigger to first Gold window, each recovery, the whole test) are
printed and written to test-output/production_stack.json.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from flight_gold.airflow.defaults import ALERTS_DAG_ID, MAINTENANCE_DAG_ID, STREAMING_DAG_ID
from flight_gold.spark.maintenance import APP_NAME as MAINTENANCE_APP
from flight_gold.spark.runner import APP_NAME as STREAM_APP
from support.expected import assert_gold_equal, expected_gold, flight_phase_counts, normalize
from support.production import (
    GOLD_TABLES,
    STEP_S,
    Burst,
    Figures,
    Lake,
    StreamRun,
    anomalous_recording,
    committed,
    committing_after,
    exactly_once,
    log_tail,
    mail_alerts,
    master_state,
    slack_alerts,
    wait_for,
    wait_run,
    window_key,
)
from support.stack import DEFAULT_SETTINGS, Stack, StackConfig, procs

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.stack, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
FIGURES_FILE = REPO / "test-output" / "production_stack.json"
# .env settings of the run (docker-compose.yaml reads them): the replay at 3x real time (an hour
# for the recording: the feed must outlast the faults, which need new data to show a stream
# committing again; at 10x it ended before the first fault on a loaded machine); the scheduled
# DAGs out of the way (this test triggers them), so that what each run sends is known, and every
# DAG paused until the test switches it on: the scheduled DAGs' catch-up runs at start (a Spark
# maintenance application among them) cost minutes of a loaded machine on the stream's start.
SETTINGS = {
    "AIRFLOW_DAGS_PAUSED_AT_CREATION": "true",
    "REPLAY_SPEED": "3",
    "GOLD_ALERTS_SCHEDULE": "0 0 1 1 *",
    "GOLD_OPTIMIZE_SCHEDULE": "0 0 1 1 *",
    "GOLD_VACUUM_SCHEDULE": "0 0 1 1 *",
}
# The whole recording (3 h of event time, an hour at 3x): the feed is stopped before its end.
REPLAY_ARGS = ["--minutes", "180", "--commit-every", "30"]
# Austria is in every minute of these stretches; each burst makes the 5 windows around it breach
# (minute 35: 132 of Austria's 612 to 1,035 observations in each window holding it). The second
# is fed 12 minutes in at 3x, so that a fast run need not wait long for it before step 5.
BURSTS = [Burst(20, "Austria", "altitude"), Burst(35, "Austria", "velocity")]
# Step 5 stops the feed once Silver_ML holds this much of the recording: every window around the
# second burst is closed by the anomaly table's watermark (6 minutes).
FEED_MINUTES_BEFORE_STOP = BURSTS[-1].minute + 5 + 6 + 1
OUTAGE_S = 30


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path / "stack.json")
    yield stack
    if stack.state_file.exists():  # the test failed before its own stop
        stack.stop()


def test_production_stack(stack, tmp_path):
    figures = Figures()
    recording = tmp_path / "recording.json.gz"
    assert all(anomalous_recording(recording, BURSTS).values())

    started = time.monotonic()
    stack.start(StackConfig(settings=SETTINGS, replay=False))
    figures.record("stack start (s)", time.monotonic() - started)
    airflow, spark = stack.airflow(), stack.info["endpoints"]["spark"]
    lake = Lake(stack.lakehouse_env())
    check_connections(stack, airflow)

    # 1. The feed.
    stack.start_replay("--recording", str(recording), *REPLAY_ARGS)
    wait_for(
        "Silver_ML on S3",
        lambda: lake.silver() is not None,
        STEP_S,
        details=lambda: log_tail(stack, "silver-replay"),
    )

    # 2. The stream, on the cluster.
    airflow.unpause(STREAMING_DAG_ID)
    triggered = time.monotonic()
    run_id = airflow.trigger(STREAMING_DAG_ID, {"trigger": "continuous"})
    stream = StreamRun(stack, airflow, run_id)
    wait_for(
        "the sensor to pass",
        lambda: stream.state("wait_for_silver_ml") == "success",
        STEP_S,
        details=stream.details,
    )
    app = wait_for(
        "the stream's executors on both workers", lambda: stream.spread_app(), STEP_S, details=stream.details
    )
    assert app["cores"] == int(DEFAULT_SETTINGS["GOLD_SPARK_CORES_MAX"]), app
    wait_for(
        "the first Gold window",
        lambda: len(lake.gold("flight_phase_counts")) > 0,
        STEP_S,
        details=stream.details,
    )
    figures.record("trigger to first Gold window (s)", time.monotonic() - triggered)

    # 3. Maintenance beside the stream, alerts, the dashboard.
    maintenance = MaintenanceBesideTheStream(airflow, spark, lake, stream).start()
    first_alerts = check_alerts_of_a_run(stack, airflow, lake, burst=BURSTS[0], details=stream.details)
    check_dashboard(airflow, lake)
    maintenance.finish()

    # 4. Faults.
    figures.record("scheduler kill -9 -> stream committing again (s)", scheduler_crash(stack, lake, stream))
    figures.record("worker kill -9 -> stream committing again (s)", worker_crash(stack, lake, stream, spark))
    figures.record("S3 back -> stream committing again (s)", s3_outage(stack, lake, stream))

    # 5. The feed stops; the stream drains; exactly what the feed wrote, every breach once.
    silver_start = lake.silver()["event_timestamp"].min()
    wait_for(
        f"the first {FEED_MINUTES_BEFORE_STOP} minutes of the recording in Silver_ML",
        lambda: (
            lake.silver()["event_timestamp"].max()
            >= silver_start + pd.Timedelta(minutes=FEED_MINUTES_BEFORE_STOP)
        ),
        STEP_S,
        details=lambda: log_tail(stack, "silver-replay"),
    )
    assert stack.alive("silver-replay"), log_tail(stack, "silver-replay")
    stack.stop_proc("silver-replay")
    silver = lake.silver()
    expected = expected_gold(silver)
    drained = time.monotonic()
    wait_for(
        "Gold to equal the independent computation",
        lambda: gold_equals(lake, expected),
        STEP_S,
        10,
        details=stream.details,
    )
    figures.record("feed stopped -> Gold complete (s)", time.monotonic() - drained)
    breaches = expected["anomaly_alerts"][expected["anomaly_alerts"]["anomaly_rate"] > 0.1]
    assert len(breaches) >= 2 * 5, breaches  # both bursts
    final = airflow.trigger(ALERTS_DAG_ID)
    wait_run(airflow, ALERTS_DAG_ID, final)
    wanted = {window_key(r.window_start, r.origin_country): 1 for r in breaches.itertuples()}
    endpoints = stack.info["endpoints"]
    for channel, messages in (
        ("slack", slack_alerts(endpoints["slack"]["records"])),
        ("email", mail_alerts(endpoints["smtp"]["records"])),
    ):
        assert dict(exactly_once(messages)) == wanted, (channel, messages)
        assert {m["run_id"] for m in messages} == {first_alerts, final}, channel

    # 6. Stop: nothing of the stack is left.
    stopping = time.monotonic()
    report = stack.stop()
    figures.record("stack stop (s)", time.monotonic() - stopping)
    assert report["leftovers_after"] == {}, report
    assert procs.marked(stack.id, stack.base) == []
    figures.record("whole test (s)", time.monotonic() - figures.started)
    figures.write(FIGURES_FILE)
    print(f"\nproduction stack figures: {figures.values}")


# -- steps ----------------------------------------------------------------------------------------


def check_connections(stack: Stack, airflow) -> None:
    """docker/airflow-init.sh created what the DAGs use, pointing at the native services."""
    connections = airflow.connections()
    ep = stack.info["endpoints"]
    assert connections["spark_default"]["host"] == ep["spark"]["master"]
    assert (
        connections["spark_default"]["extra"]
        and '"deploy-mode": "client"' in connections["spark_default"]["extra"]
    )
    smtp = connections["smtp_alerts"]
    assert (smtp["conn_type"], smtp["host"], smtp["port"]) == ("smtp", "127.0.0.1", ep["smtp"]["port"])
    assert connections["slack_alerts"]["conn_type"] == "slackwebhook"
    assert airflow.import_errors() == []


class MaintenanceBesideTheStream:
    """A gold_maintenance run while the stream runs: each application gets its own cores (the
    master's JSON, polled every second while the run lasts) and the stream keeps committing."""

    def __init__(self, airflow, spark: dict, lake: Lake, stream: StreamRun):
        self.airflow, self.spark, self.lake, self.stream = airflow, spark, lake, stream
        self.side_by_side: list[tuple[int, int]] = []
        self.done = threading.Event()

    def start(self) -> MaintenanceBesideTheStream:
        self.before = committed(self.lake)
        self.airflow.unpause(MAINTENANCE_DAG_ID)
        self.run_id = self.airflow.trigger(MAINTENANCE_DAG_ID)
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()
        return self

    def _poll(self) -> None:
        while not self.done.wait(1.0):
            try:
                apps = {
                    a["name"]: a for a in master_state(self.spark)["activeapps"] if a["state"] == "RUNNING"
                }
            except OSError:
                continue
            if MAINTENANCE_APP in apps and STREAM_APP in apps:
                self.side_by_side.append((apps[STREAM_APP]["cores"], apps[MAINTENANCE_APP]["cores"]))

    def finish(self) -> None:
        try:
            wait_run(self.airflow, MAINTENANCE_DAG_ID, self.run_id)
        finally:
            self.done.set()
            self.poller.join(10)
        # Both applications ran at once, each with its own cap: neither waited for the other.
        cores = (int(DEFAULT_SETTINGS["GOLD_SPARK_CORES_MAX"]), 1)
        assert self.side_by_side and set(self.side_by_side) == {cores}, self.side_by_side
        report = self.airflow.xcom(MAINTENANCE_DAG_ID, self.run_id, "maintain")
        assert set(report["tables"]) == set(GOLD_TABLES), report
        for table, row in report["tables"].items():
            # On S3 the stream is the only writer of its tables' logs: it compacts them itself,
            # and VACUUM, which writes nothing to the log, runs beside it.
            assert (row["status"], row["mode"]) == ("ok", "both"), (table, row)
            assert row["optimize_skipped"].startswith(
                "on object storage the Gold stream is the only writer"
            ), row
            assert row["vacuum_files_removed"] == 0, row  # every file is younger than the 168 h
            operations = {c.get("operation") for c in self.lake.history(table)}
            assert not operations & {"VACUUM START", "VACUUM END"}, (table, operations)
        wait_for(
            "the stream to commit during maintenance",
            committing_after(self.lake, self.before),
            STEP_S,
            details=self.stream.details,
        )


def check_alerts_of_a_run(stack: Stack, airflow, lake: Lake, burst: Burst, details) -> str:
    """Once the windows around the first burst are in Gold: one Slack message and one email, for
    the triggered run, naming the same breaches as the run reports."""
    silver_start = lake.silver()["event_timestamp"].min().floor("min")

    def burst_windows_written() -> bool:
        gold = lake.gold("anomaly_alerts")
        # The last window holding the burst's minute starts at that minute.
        last = silver_start + pd.Timedelta(minutes=burst.minute)
        return len(gold) > 0 and gold["window_start"].max() >= last

    wait_for(
        f"the windows around the burst at minute {burst.minute}",
        burst_windows_written,
        STEP_S,
        details=details,
    )
    airflow.unpause(ALERTS_DAG_ID)
    run_id = airflow.trigger(ALERTS_DAG_ID)
    wait_run(airflow, ALERTS_DAG_ID, run_id)
    ep = stack.info["endpoints"]
    slack = [m for m in slack_alerts(ep["slack"]["records"]) if m["run_id"] == run_id]
    mail = [m for m in mail_alerts(ep["smtp"]["records"]) if m["run_id"] == run_id]
    assert len(slack) == 1 and len(mail) == 1, (slack, mail)
    assert sorted(slack[0]["breaches"]) == sorted(mail[0]["breaches"]) and slack[0]["breaches"], slack
    assert {country for _, country in slack[0]["breaches"]} == {burst.country}, slack
    assert mail[0]["to"] == [stack.settings["ALERT_EMAIL_TO"]]
    result = airflow.xcom(ALERTS_DAG_ID, run_id, "check_and_alert")
    assert result["breaches_found"] == len(slack[0]["breaches"]), result
    return run_id


def check_dashboard(airflow, lake: Lake) -> None:
    """The dashboard's phase counts of five closed minutes equal the independent computation over
    Silver_ML as it is on S3."""
    gold = lake.gold("flight_phase_counts")
    start = gold["window_start"].min()
    end = start + pd.Timedelta(minutes=5)
    wait_for(
        "five closed minutes", lambda: lake.gold("flight_phase_counts")["window_end"].max() > end, STEP_S
    )
    silver = lake.silver()
    expected = flight_phase_counts(silver)
    expected = expected[(expected["window_start"] >= start) & (expected["window_start"] < end)]
    query = f"start={start.isoformat().replace('+00:00', 'Z')}&end={end.isoformat().replace('+00:00', 'Z')}"
    page = airflow.get(f"/flight-gold/api/phase-counts?{query}", absolute=True)
    assert page["path"] == lake.config.paths.gold_table("flight_phase_counts") and page["duplicate_rows"] == 0
    minutes = [pd.Timestamp(m) for m in page["minutes"]]
    shown = {
        (minutes[i], phase["phase"]): count
        for phase in page["phases"]
        for i, count in enumerate(phase["flight_count"])
        if count
    }
    assert shown == {(r.window_start, r.flight_phase): r.flight_count for r in expected.itertuples()}
    assert page["total_observations"] == int(expected["flight_count"].sum()) > 0


def scheduler_crash(stack: Stack, lake: Lake, stream: StreamRun) -> float:
    """kill -9 of the scheduler's session: the task and its Spark driver die with it; a restarted
    scheduler finds the orphaned task, runs it again, and the stream resumes from its checkpoints."""
    wait_for("a running stream", lambda: stream.state() == "running", STEP_S, details=stream.details)
    try_before = stream.try_number()
    before = committed(lake)
    killed = time.monotonic()
    victims = stack.kill9("airflow-scheduler")
    # The LocalExecutor's task process and the Spark driver (spark-submit, the job's Python) died too.
    assert any(cmd.split(" ")[0].endswith("/java") for cmd in victims.values()), victims
    assert any("streaming_gold.py" in cmd for cmd in victims.values()), victims
    stack.restart("airflow-scheduler")
    wait_for("the scheduler's health", stack.scheduler_healthy, STEP_S)
    wait_for(
        "a new try of the stream",
        lambda: stream.try_number() > try_before and stream.state() == "running",
        STEP_S,
        details=stream.details,
    )
    wait_for("new batches after the crash", committing_after(lake, before), STEP_S, details=stream.details)
    recovered = time.monotonic() - killed
    # The new try's progress lines are sampled (a line per query and minute, and every batch that
    # wrote Gold): the first may come after the checkpoint shows the batch.
    first = wait_for("the new try's progress lines of both queries", lambda: first_batches(stream), STEP_S, 5)
    # Resumed: the new driver's first batch is where the checkpoint stood, not batch 0.
    assert all(first[q] >= before[q] - 1 > 0 for q in GOLD_TABLES), (first, before)
    return recovered


def worker_crash(stack: Stack, lake: Lake, stream: StreamRun, spark: dict) -> float:
    """kill -9 of a worker with one of the stream's executors: Spark runs its tasks on the other
    worker (or the job is restarted), and the worker comes back ("restart: always")."""
    wait_for("the stream on both workers", stream.spread_app, STEP_S, details=stream.details)
    before = committed(lake)
    killed = time.monotonic()
    stack.kill9("spark-worker-1")
    wait_for(
        "new batches after the worker died", committing_after(lake, before, 2), STEP_S, details=stream.details
    )
    recovered = time.monotonic() - killed
    stack.restart("spark-worker-1")
    wait_for(
        "the worker back",
        lambda: sum(w["state"] == "ALIVE" for w in master_state(spark)["workers"]) == 2,
        STEP_S,
    )
    return recovered


def s3_outage(stack: Stack, lake: Lake, stream: StreamRun) -> float:
    """The S3 server down for OUTAGE_S: the job fails or stalls, saying so, and comes back alone."""
    before = committed(lake)
    try_before = stream.try_number()
    stack.s3_down()
    time.sleep(OUTAGE_S)  # the outage itself
    stack.s3_up()
    back = time.monotonic()
    wait_for("new batches after the outage", committing_after(lake, before), STEP_S, details=stream.details)
    recovered = time.monotonic() - back
    lines = [line for t in range(try_before, stream.try_number() + 1) for line in stream.log(t)]
    endpoint = stack.info["endpoints"]["s3"]["url"].removeprefix("http://")
    said = [line for line in lines if f"the S3 endpoint {endpoint}" in line]
    assert any("storage unreachable:" in line for line in said), lines[-40:]
    assert any("storage reachable again:" in line for line in said), lines[-40:]
    assert stack.alive("silver-replay"), log_tail(stack, "silver-replay")
    return recovered


def first_batches(stream: StreamRun) -> dict[str, int] | None:
    """The first batch id each query logged in the current try, once both have logged one."""
    progress = stream.progress()
    first = {q: min((p["batch_id"] for p in progress if p["query"] == q), default=None) for q in GOLD_TABLES}
    return None if None in first.values() else first


def gold_equals(lake: Lake, expected: dict[str, pd.DataFrame]) -> bool:
    for table in GOLD_TABLES:
        actual = lake.gold(table)
        if len(normalize(actual, table)) != len(expected[table]):
            return False
        assert_gold_equal(actual, expected[table], table)
    return True
