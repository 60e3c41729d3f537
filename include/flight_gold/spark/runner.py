"""The Gold job's run: the start-up guards, the progress listener, the queries, and the wait
until they end, fail or are asked to stop. jobs/streaming_gold.py is its command line.

Exit codes (flight_gold.core.errors): 0 done or stopped by SIGTERM/SIGINT; 1 a query failed
(a retry resumes from its checkpoint); 2 bad input or configuration (nothing written); 3 another
running instance holds the checkpoint.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from pyspark.sql import SparkSession

from flight_gold.core.config import GoldConfig
from flight_gold.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECKPOINT_IN_USE,
    EXIT_OK,
    EXIT_QUERY_FAILED,
    cause_chain,
)
from flight_gold.core.intervals import interval_seconds
from flight_gold.spark.guards import CheckpointInUseError, GuardError, lock_checkpoints
from flight_gold.spark.preflight import (
    SilverNotReadyError,
    check_checkpoints,
    check_silver,
    recorded_watermarks,
)
from flight_gold.spark.progress import ProgressLogger, flush_listener_events
from flight_gold.spark.queries import start_queries
from flight_gold.spark.watch import StorageWatch

log = logging.getLogger("flight_gold.jobs.streaming_gold")

APP_NAME = "flight-gold-streaming"
# Prefix of the lines the job prints to stderr when it refuses to start or a query fails: the
# Airflow task quotes the last one as the reason.
ERROR_PREFIX = "streaming_gold:"


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT only set the returned event: the wait loop stops the queries between
    two waits, so a micro-batch is never cut in the middle by Python code."""
    stop = threading.Event()

    def handler(signum, _frame) -> None:
        log.warning("received %s, stopping the queries", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    return stop


def run_gold_streams(spark: SparkSession, config: GoldConfig, stop: threading.Event) -> int:
    """Runs the configured Gold streams until they end, fail or `stop` is set; the exit code."""
    locks = []
    try:
        # Every guard runs before the first query starts: a refusal writes nothing.
        try:
            check_silver(spark, config)
            locks = lock_checkpoints(config)
            check_checkpoints(spark, config)
        except CheckpointInUseError as exc:
            return refuse(exc, EXIT_CHECKPOINT_IN_USE)
        except (SilverNotReadyError, GuardError) as exc:
            return refuse(exc, EXIT_BAD_INPUT)
        listener = ProgressLogger(config, recorded_watermarks(spark, config))
        spark.streams.addListener(listener)
        code = run_streams(spark, config, stop)
        flush_listener_events(spark)
        listener.log_summary()
        return code
    finally:
        for lock in locks:
            lock.release()


def refuse(exc: Exception, code: int) -> int:
    log.error("%s", exc)
    print(f"{ERROR_PREFIX} error: {exc}", file=sys.stderr, flush=True)
    return code


def run_streams(spark: SparkSession, config: GoldConfig, stop: threading.Event) -> int:
    """Starts the queries and waits for them; in available-now-loop mode, runs them available-now
    once per trigger interval (an interval counts from a run's start) until `stop` is set or a run
    fails. A stop between two runs has nothing in flight."""
    if config.trigger != "available-now-loop":
        return await_queries(start_queries(spark, config), stop, config)
    interval_s = interval_seconds(config.trigger_interval)
    run_config = config.replace(trigger="available-now")
    runs = 0
    log.info(
        "available-now-loop: an available-now run of %s every %s",
        ", ".join(config.queries),
        config.trigger_interval,
    )
    while True:
        began = time.monotonic()
        code = await_queries(
            start_queries(spark, run_config, first_start=runs == 0), stop, config, quiet=True
        )
        runs += 1
        if code != EXIT_OK or stop.is_set():
            log.info("available-now-loop: %d runs", runs)
            return code
        if stop.wait(max(0.0, interval_s - (time.monotonic() - began))):
            log.info(
                "stopped cleanly between two runs (%d runs): every window the watermark closed is written",
                runs,
            )
            return EXIT_OK


def await_queries(
    queries, stop: threading.Event, config: GoldConfig | None = None, quiet: bool = False
) -> int:
    def failed():
        return [q for q in queries if q.exception() is not None]

    with StorageWatch(config):
        while not stop.wait(0.2):
            if failed() or not any(q.isActive for q in queries):
                break
    if stop.is_set():
        for q in queries:
            q.stop()
        # stop() cancels a micro-batch in flight; it was not committed, and the next start
        # replays it from the offset log (the Gold writer skips a batch it already holds).
        log.info(
            "stopped cleanly: the queries are stopped; the next start resumes from the "
            "checkpoints, replaying any batch that was cut"
        )
        return EXIT_OK
    broken = failed()
    for q in queries:
        q.stop()
    for q in broken:
        cause = describe_failure(q.exception(), q.name, config)
        log.error("query %s failed: %s", q.name, cause)
        print(f"{ERROR_PREFIX} query {q.name} failed: {cause}", file=sys.stderr, flush=True)
    if broken:
        return EXIT_QUERY_FAILED
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "all queries finished: every window the watermark closed is written",
    )
    return EXIT_OK


def describe_failure(exc, name: str, config: GoldConfig | None) -> str:
    """One line: out of space gets its own message (a full disk is an operations problem, not a
    bug), anything else Spark's first line."""
    text = "\n".join(cause_chain(exc))
    if "No space left on device" in text or "ENOSPC" in text:
        where = (
            f"{config.paths.gold_table(name)} or {config.paths.checkpoint(name)}"
            if config
            else "the Gold table or its checkpoint"
        )
        return (
            f"out of space: no space left on device while writing {where}. The batch was not "
            f"committed; free space, then start the job again: it resumes from its checkpoint "
            f"and writes every window exactly once"
        )
    return str(exc).strip().splitlines()[0]
