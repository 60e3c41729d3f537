"""The job's available-now-loop driver (flight_gold.spark.runner.run_streams) with stand-in queries:
run cadence, stop between and during runs, a failed run ends the loop; what the job says while
its queries wait for the storage (flight_gold.spark.watch). Spark itself is exercised
by tests/e2e/test_streaming_job.py."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.spark import runner, watch


class FakeQuery:
    """Active for `runs_for` seconds after its start, then finished (or failed); completes a
    micro-batch every `batch_every` seconds while active."""

    def __init__(self, name: str, runs_for: float, error: Exception | None = None, batch_every: float = 0.1):
        self.name, self.error = name, error
        self.started_at = time.monotonic()
        self.ends_at = self.started_at + runs_for
        self.batch_every = batch_every
        self.stopped_at: float | None = None

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    @property
    def recentProgress(self) -> list:  # noqa: N802 (PySpark's API)
        until = min(self.stopped_at or time.monotonic(), self.ends_at)
        done = int((until - self.started_at) / self.batch_every)
        return [SimpleNamespace(batchId=7 + k) for k in range(done)]

    @property
    def isActive(self) -> bool:  # noqa: N802 (PySpark's API)
        return not self.stopped and time.monotonic() < self.ends_at

    def exception(self):
        return self.error if not self.isActive else None

    def stop(self) -> None:
        self.stopped_at = self.stopped_at or time.monotonic()


class Starts:
    """Stands in for flight_gold.spark.queries.start_queries and records each call."""

    def __init__(
        self,
        fail_on_run: int | None = None,
        stop_on_run: tuple | None = None,
        runs_for: float = 0.05,
        batch_every: float = 0.1,
    ):
        self.calls: list[tuple[float, str, bool]] = []
        self.limits: list[int | None] = []
        self.fail_on_run, self.stop_on_run = fail_on_run, stop_on_run
        self.runs_for, self.batch_every = runs_for, batch_every
        self.queries: list[FakeQuery] = []
        self.started: list[list[FakeQuery]] = []

    def __call__(self, spark, config, first_start=True, stop=None):
        self.calls.append((time.monotonic(), config.trigger, first_start))
        self.limits.append(config.max_files_per_trigger)
        run, runs_for = len(self.calls), self.runs_for
        if self.stop_on_run and run == self.stop_on_run[0]:
            # A stop while this run's queries are busy (they would run for a minute).
            self.stop_on_run[1].set()
            runs_for = 60
        error = RuntimeError("boom") if run == self.fail_on_run else None
        self.queries = [FakeQuery(name, runs_for, error, self.batch_every) for name in config.queries]
        self.started.append(self.queries)
        return self.queries


@pytest.fixture
def job():
    return runner


def config(interval: str) -> GoldConfig:
    return GoldConfig.from_env({}, trigger="available-now-loop", trigger_interval=interval)


def test_runs_available_now_once_per_interval_until_stopped(job, monkeypatch):
    starts = Starts()
    monkeypatch.setattr(runner, "start_queries", starts)
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    assert job.run_streams(None, config("0.4 seconds"), stop) == job.EXIT_OK
    times = [t for t, _, _ in starts.calls]
    assert 3 <= len(times) <= 5
    # An interval counts from a run's start; stop.wait never returns early.
    assert all(b - a >= 0.4 for a, b in zip(times, times[1:]))
    assert {trigger for _, trigger, _ in starts.calls} == {"available-now"}
    assert [first for _, _, first in starts.calls] == [True] + [False] * (len(times) - 1)


def test_a_stop_during_a_run_stops_its_queries_and_starts_no_other(job, monkeypatch):
    stop = threading.Event()
    starts = Starts(stop_on_run=(2, stop))
    monkeypatch.setattr(runner, "start_queries", starts)
    began = time.monotonic()
    assert job.run_streams(None, config("0.1 seconds"), stop) == job.EXIT_OK
    assert time.monotonic() - began < 30
    assert len(starts.calls) == 2
    assert len(starts.queries) == 2 and all(q.stopped for q in starts.queries)


def test_a_failed_run_ends_the_loop_with_exit_code_1(job, monkeypatch):
    starts = Starts(fail_on_run=2)
    monkeypatch.setattr(runner, "start_queries", starts)
    assert job.run_streams(None, config("0.1 seconds"), threading.Event()) == job.EXIT_QUERY_FAILED
    assert len(starts.calls) == 2


def test_other_triggers_start_the_queries_once(job, monkeypatch):
    starts = Starts()
    monkeypatch.setattr(runner, "start_queries", starts)
    cfg = GoldConfig.from_env({}, trigger="available-now")
    assert job.run_streams(None, cfg, threading.Event()) == job.EXIT_OK
    assert [(trigger, first) for _, trigger, first in starts.calls] == [("available-now", True)]


def processing_time(**overrides) -> GoldConfig:
    return GoldConfig.from_env({}, trigger="processing-time", trigger_interval="1 second").replace(
        **overrides
    )


class FollowerRecorder:
    """Stands in for flight_gold.spark.silver_snapshot.SilverSnapshotFollower: when it followed."""

    spans: list[list[float]] = []

    def __init__(self, spark, files, table, every_s, busy, trigger_every_s) -> None:
        self.table, self.busy = table, busy

    def __enter__(self):
        FollowerRecorder.spans.append([time.monotonic()])
        return self

    def __exit__(self, *exc) -> None:
        FollowerRecorder.spans[-1].append(time.monotonic())


@pytest.fixture
def nothing_due(monkeypatch):
    """The checkpoints of the stand-in queries, as nothing_due_after_a_stop reads them: the names
    in the returned set have a window due (a stop now would strand it)."""
    due: set[str] = set()
    monkeypatch.setattr(runner, "HadoopFiles", lambda spark: None)
    monkeypatch.setattr(runner, "SilverSnapshotFollower", FollowerRecorder)
    FollowerRecorder.spans.clear()
    monkeypatch.setattr(
        runner,
        "nothing_due_after_a_stop",
        lambda files, checkpoint, silver: not any(checkpoint.endswith(name) for name in due),
    )
    return due


def test_a_processing_time_run_starts_with_small_batches_then_the_configured_limit(
    job, monkeypatch, nothing_due
):
    stop = threading.Event()
    # Stopped as the second start begins (a timer in case it never does).
    starts = Starts(runs_for=60, stop_on_run=(2, stop))
    monkeypatch.setattr(runner, "start_queries", starts)
    timer = threading.Timer(30, stop.set)
    timer.start()
    try:
        assert job.run_streams(None, processing_time(max_files_per_trigger=400), stop) == job.EXIT_OK
    finally:
        timer.cancel()
    assert [(trigger, first) for _, trigger, first in starts.calls] == [
        ("processing-time", True),
        ("processing-time", False),
    ]
    assert starts.limits == [runner.HEAD_START_FILES, 400]
    # Silver_ML's snapshot is followed during the real-time run only, not the head start.
    (followed,) = FollowerRecorder.spans
    assert starts.calls[1][0] <= followed[0] <= followed[1]
    head, main = starts.started
    # The head start's queries were stopped once each had completed its two batches (or a
    # batch more, between two polls).
    assert all(q.stopped and len(q.recentProgress) >= runner.HEAD_START_BATCHES for q in head)
    assert all(q.stopped for q in main)


def test_the_head_start_counts_batch_ids_and_waits_until_nothing_is_due(nothing_due):
    def query(name: str, batches: int):
        return SimpleNamespace(name=name, recentProgress=[SimpleNamespace(batchId=b) for b in range(batches)])

    over = runner.HeadStartOver(None, processing_time())
    assert not over(query("flight_phase_counts", 1))
    # Batch ids are counted, not progress reports: one batch reported three times is one batch.
    once = query("flight_phase_counts", 1).recentProgress[0]
    assert not over(SimpleNamespace(name="flight_phase_counts", recentProgress=[once] * 3))
    assert over(query("flight_phase_counts", 2))
    nothing_due.add("flight_phase_counts")
    assert not over(query("flight_phase_counts", 5))
    assert over(query("anomaly_alerts", 2))


def test_each_query_is_stopped_when_its_head_start_is_over_and_the_switch_waits_for_all(
    job, monkeypatch, nothing_due
):
    # anomaly_alerts has a window due until flight_phase_counts was stopped.
    stop = threading.Event()
    starts = Starts(runs_for=60, stop_on_run=(2, stop))
    monkeypatch.setattr(runner, "start_queries", starts)
    nothing_due.add("anomaly_alerts")
    cleared: list[float] = []

    def clear_once_the_other_is_stopped():
        while not (starts.started and starts.started[0][0].stopped) and not stop.is_set():
            time.sleep(0.01)
        cleared.append(time.monotonic())
        nothing_due.clear()

    threading.Thread(target=clear_once_the_other_is_stopped, daemon=True).start()
    timer = threading.Timer(60, stop.set)
    timer.start()
    try:
        assert job.run_streams(None, processing_time(), stop) == job.EXIT_OK
    finally:
        timer.cancel()
    assert starts.limits == [runner.HEAD_START_FILES, None]
    phases, alerts = starts.started[0]
    assert (phases.name, alerts.name) == ("flight_phase_counts", "anomaly_alerts")
    assert len(phases.recentProgress) >= runner.HEAD_START_BATCHES
    assert phases.stopped_at < cleared[0] <= alerts.stopped_at <= starts.calls[1][0]


def test_a_stop_during_the_head_start_starts_no_other(job, monkeypatch, nothing_due):
    # A batch every 30 s: the stop comes before the head start's first.
    starts = Starts(runs_for=60, batch_every=30)
    monkeypatch.setattr(runner, "start_queries", starts)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert job.run_streams(None, processing_time(), stop) == job.EXIT_OK
    assert starts.limits == [runner.HEAD_START_FILES]
    assert all(q.stopped for q in starts.queries)


def test_a_query_failing_in_the_head_start_fails_the_run(job, monkeypatch, nothing_due):
    starts = Starts(fail_on_run=1, runs_for=0.15)
    monkeypatch.setattr(runner, "start_queries", starts)
    assert job.run_streams(None, processing_time(), threading.Event()) == job.EXIT_QUERY_FAILED
    assert starts.limits == [runner.HEAD_START_FILES]


def test_other_triggers_and_small_configured_limits_have_no_head_start():
    config = processing_time()
    assert runner.head_start_config(config.replace(trigger="available-now")) is None
    assert runner.head_start_config(config.replace(trigger="available-now-loop")) is None
    assert runner.head_start_config(config.replace(max_files_per_trigger=runner.HEAD_START_FILES)) is None
    head = runner.head_start_config(config.replace(max_files_per_trigger=500, max_bytes_per_trigger="1g"))
    assert (head.max_files_per_trigger, head.max_bytes_per_trigger) == (runner.HEAD_START_FILES, "1g")
    assert runner.head_start_config(config).max_files_per_trigger == runner.HEAD_START_FILES


def test_the_storage_going_away_and_coming_back_is_said_once_each(monkeypatch, caplog):
    import socket

    monkeypatch.setattr(watch, "PROBE_EVERY_S", 0.05)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    cfg = GoldConfig.from_env({}, lakehouse_root="s3a://lake", s3_endpoint=f"http://127.0.0.1:{port}")
    assert watch.storage_address(cfg) == ("127.0.0.1", port)

    def said(text: str) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(text in m for m in caplog.messages):
                return True
            time.sleep(0.05)
        return False

    with caplog.at_level("WARNING", logger=watch.log.name), watch.StorageWatch(cfg):
        time.sleep(0.3)
        assert caplog.messages == []
        listener.close()
        assert said(
            f"storage unreachable: the S3 endpoint 127.0.0.1:{port} does not answer (Connection refused)"
        )
        listener = socket.create_server(("127.0.0.1", port))
        assert said(f"storage reachable again: the S3 endpoint 127.0.0.1:{port} answers after")
        time.sleep(0.3)
    listener.close()
    assert len(caplog.messages) == 2
    local = GoldConfig.from_env({}, lakehouse_root="/tmp/lake")
    assert watch.StorageWatch(local).address is None


class SlowToStop:
    """A query whose stop() returns once `together` queries are being stopped at the same time
    (its batch in flight takes that long to cut), or fails."""

    def __init__(self, together: threading.Barrier, error: Exception | None = None) -> None:
        self.together, self.error, self.stopped = together, error, False

    def stop(self) -> None:
        self.together.wait()
        self.stopped = True
        if self.error is not None:
            raise self.error


def test_a_stop_stops_every_query_at_the_same_time():
    # One after the other, the first stop() would wait for the second forever (here: 10 s, then
    # BrokenBarrierError).
    together = threading.Barrier(2, timeout=10)
    queries = [SlowToStop(together), SlowToStop(together)]
    runner.stop_all(queries)
    assert all(q.stopped for q in queries)

    together = threading.Barrier(2, timeout=10)
    queries = [SlowToStop(together, RuntimeError("cut on S3")), SlowToStop(together)]
    with pytest.raises(RuntimeError, match="cut on S3"):
        runner.stop_all(queries)
    assert all(q.stopped for q in queries)
