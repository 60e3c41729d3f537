"""The driver JVM's JIT compilers moved to the idle time between triggers once a real-time run has
caught up (flight_gold.spark.jit): that a HotSpot JVM's compiler threads are found by name (this
fails if a JVM upgrade names them otherwise) and niced, nothing else of the JVM, and that the
watch waits for batches that leave half the interval idle, in every query."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

import pytest

from flight_gold.spark.jit import (
    QUICK_BATCHES,
    CaughtUpWatch,
    compile_in_background,
    compiler_threads,
    jvm_pid,
)
from flight_gold.spark.runner import compilers_in_gaps_when_caught_up
from support.jobs import wait_for

SLEEPER = """
public class Sleeper {
    public static void main(String[] args) throws Exception {
        System.out.println("up");
        System.out.flush();
        Thread.sleep(120_000);
    }
}
"""


@pytest.fixture
def java_process(tmp_path):
    """A JVM of its own: the test session's compilers are left as they are."""
    source = tmp_path / "Sleeper.java"
    source.write_text(SLEEPER)
    proc = subprocess.Popen(["java", "-Xshare:auto", str(source)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=30)


def nice_of(pid: int, tid: int) -> int:
    # Field 19 of /proc/<pid>/task/<tid>/stat, after the command in parentheses.
    stat = open(f"/proc/{pid}/task/{tid}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])


def all_threads(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def test_the_compiler_threads_of_a_hotspot_jvm_and_only_they_are_niced(java_process, caplog):
    pid = java_process
    compilers = compiler_threads(pid)
    assert len(compilers) >= 2, "no C1/C2 compiler threads by HotSpot's names: see flight_gold.spark.jit"
    others = [t for t in all_threads(pid) if t not in compilers]
    assert {nice_of(pid, t) for t in compilers + others} == {0}

    with caplog.at_level(logging.INFO, logger="flight_gold.spark.jit"):
        assert compile_in_background(pid, 10) == len(compilers)
    assert {nice_of(pid, t) for t in compilers} == {10}
    assert {nice_of(pid, t) for t in others if t in all_threads(pid)} == {0}
    assert f"JIT compilers of JVM {pid} ({len(compilers)} threads) at nice 10" in caplog.text
    # Already there: nothing to change; a lower value is never set back (not allowed unprivileged).
    assert compile_in_background(pid, 10) == 0
    assert compile_in_background(pid, 5) == 0
    assert {nice_of(pid, t) for t in compilers} == {10}


def test_nice_zero_leaves_the_jvm_alone(java_process):
    assert compile_in_background(java_process, 0) == 0
    assert {nice_of(java_process, t) for t in compiler_threads(java_process)} == {0}


def test_a_process_without_compiler_threads_is_logged_not_an_error(caplog):
    with caplog.at_level(logging.WARNING, logger="flight_gold.spark.jit"):
        assert compile_in_background(os.getpid(), 10) == 0
    assert f"no JIT compiler threads found in JVM {os.getpid()}" in caplog.text


def test_the_driver_jvm_is_the_sessions(spark):
    pid = jvm_pid(spark)
    assert "java" in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode()
    assert compiler_threads(pid)


class Query:
    """lastProgress as a StreamingQuery gives it: the newest report, or None before any."""

    def __init__(self, name: str) -> None:
        self.id, self.lastProgress = name, None

    def batch(self, batch_id: int, took_ms: int) -> None:
        self.lastProgress = {"batchId": batch_id, "durationMs": {"triggerExecution": took_ms}}


def test_caught_up_takes_quick_batches_in_a_row_in_every_query():
    counts, alerts = Query("counts"), Query("alerts")
    watch = CaughtUpWatch([counts, alerts], interval_s=10, on_caught_up=None)
    assert not watch.caught_up()
    counts.batch(0, 4_000)
    alerts.batch(0, 9_000)  # a catch-up batch: more than half the interval
    assert not watch.caught_up()
    counts.batch(1, 5_000)
    alerts.batch(1, 800)
    assert not watch.caught_up()
    # The same report seen twice counts once.
    assert not watch.caught_up()
    alerts.batch(2, 12_000)  # a slow one resets the streak
    assert not watch.caught_up()
    for batch_id in range(3, 3 + QUICK_BATCHES - 1):
        alerts.batch(batch_id, 700)
        assert not watch.caught_up()
    alerts.batch(3 + QUICK_BATCHES - 1, 700)
    assert watch.caught_up()


def run_stream(spark, tmp_path, seconds_per_batch: float, interval_s: float):
    def sink(batch, batch_id):
        batch.count()
        time.sleep(seconds_per_batch)

    return (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 5)
        .load()
        .writeStream.foreachBatch(sink)
        .trigger(processingTime=f"{interval_s} seconds")
        .option("checkpointLocation", str(tmp_path / f"checkpoint-{seconds_per_batch}"))
        .start()
    )


def test_the_watch_fires_once_a_real_stream_keeps_up_and_not_while_it_lags(spark, tmp_path):
    lagging = run_stream(spark, tmp_path, seconds_per_batch=1.5, interval_s=2)
    fired = threading.Event()
    try:
        with CaughtUpWatch([lagging], interval_s=2, on_caught_up=fired.set) as watch:
            wait_for(lambda: len(lagging.recentProgress) >= 2 + QUICK_BATCHES, 120, what="lagging batches")
            assert not fired.is_set() and not watch.done.is_set()
    finally:
        lagging.stop()

    keeping_up = run_stream(spark, tmp_path, seconds_per_batch=0, interval_s=2)
    calls = []
    try:
        with CaughtUpWatch([keeping_up], interval_s=2, on_caught_up=lambda: calls.append(1)) as watch:
            wait_for(watch.done.is_set, 120, what="the caught-up watch")
            time.sleep(2.5)
    finally:
        keeping_up.stop()
    assert calls == [1]


def test_only_real_time_runs_with_a_nice_value_watch(spark, lakehouse):
    real_time = lakehouse.replace(trigger="processing-time")
    assert isinstance(compilers_in_gaps_when_caught_up(spark, real_time), CaughtUpWatch)
    assert not isinstance(
        compilers_in_gaps_when_caught_up(spark, real_time, until=lambda q: True), CaughtUpWatch
    )
    assert not isinstance(
        compilers_in_gaps_when_caught_up(spark, lakehouse.replace(trigger="available-now")), CaughtUpWatch
    )
    assert not isinstance(
        compilers_in_gaps_when_caught_up(spark, real_time.replace(jit_nice=0)), CaughtUpWatch
    )


def test_a_failing_action_is_logged_and_the_watch_ends(caplog):
    def fails():
        raise RuntimeError("no JVM")

    query = Query("counts")
    watch = CaughtUpWatch([query], interval_s=1, on_caught_up=fails)
    for batch_id in range(QUICK_BATCHES):
        query.batch(batch_id, 100)
        watch.caught_up()
    with caplog.at_level(logging.WARNING, logger="flight_gold.spark.jit"), watch:
        wait_for(watch.done.is_set, 30, what="the caught-up watch")
    assert "the JIT compilers were left as they are: no JVM" in caplog.text
