"""Gold streaming job: Silver_ML -> flight_phase_counts (1-min tumbling) and anomaly_alerts
(5-min sliding) Delta tables.

    python jobs/streaming_gold.py --trigger available-now
    spark-submit --py-files flight_gold.zip jobs/streaming_gold.py --trigger processing-time
    python jobs/streaming_gold.py --trigger available-now-loop --trigger-interval "10 seconds"

Exit codes: 0 done or stopped by SIGTERM/SIGINT; 1 a query failed (retry: it resumes from its
checkpoint); 2 bad input or configuration (Silver_ML missing, unreadable or of the wrong schema, a
checkpoint written for another Silver_ML table): nothing was written, a retry fails the same way
until it is fixed; 3 another running instance holds the checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from flight_gold.config import ConfigError, GoldConfig
from flight_gold.logs import configure_logging

log = logging.getLogger("flight_gold.jobs.streaming_gold")

EXIT_OK, EXIT_QUERY_FAILED, EXIT_BAD_INPUT, EXIT_CHECKPOINT_IN_USE = 0, 1, 2, 3


def parse_args(argv: list[str] | None = None) -> GoldConfig:
    parser = argparse.ArgumentParser(
        prog="streaming_gold", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    GoldConfig.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return GoldConfig.from_args(args)
    except ConfigError as exc:
        parser.exit(EXIT_BAD_INPUT, f"streaming_gold: configuration error: {exc}\n")


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    config = parse_args(argv)

    # Signals are only recorded here; the main loop stops the queries between two waits, so a
    # micro-batch is never cut in the middle by Python code.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: (log.warning("received %s, stopping the queries",
                                                         signal.Signals(s).name), stop.set()))

    from flight_gold.spark import build_spark_session
    from flight_gold.streaming import (
        CheckpointInUseError,
        GuardError,
        ProgressLogger,
        SilverNotReadyError,
        check_checkpoints,
        check_silver,
        flush_listener_events,
        lock_checkpoints,
        recorded_watermarks,
    )

    spark = build_spark_session(config, "flight-gold-streaming")
    locks = []
    try:
        # Every guard runs before the first query starts: a refusal writes nothing.
        try:
            check_silver(spark, config)
            locks = lock_checkpoints(config)
            check_checkpoints(spark, config)
        except CheckpointInUseError as exc:
            return _refuse(exc, EXIT_CHECKPOINT_IN_USE)
        except (SilverNotReadyError, GuardError) as exc:
            return _refuse(exc, EXIT_BAD_INPUT)
        listener = ProgressLogger(config, recorded_watermarks(spark, config))
        spark.streams.addListener(listener)
        code = run_streams(spark, config, stop)
        flush_listener_events(spark)
        listener.log_summary()
        return code
    finally:
        spark.stop()
        for lock in locks:
            lock.release()


def _refuse(exc: Exception, code: int) -> int:
    log.error("%s", exc)
    print(f"streaming_gold: error: {exc}", file=sys.stderr, flush=True)
    return code


def run_streams(spark, config: GoldConfig, stop: threading.Event) -> int:
    """Starts the queries and waits for them; in available-now-loop mode, runs them available-now
    once per trigger interval (an interval counts from a run's start) until `stop` is set or a run
    fails. A stop between two runs has nothing in flight."""
    from flight_gold.streaming import start_queries

    if config.trigger != "available-now-loop":
        return await_queries(start_queries(spark, config), stop, config)
    from flight_gold.transforms import interval_ms

    interval_s = interval_ms(config.trigger_interval) / 1000
    run_config = config.replace(trigger="available-now")
    runs = 0
    log.info("available-now-loop: an available-now run of %s every %s", ", ".join(config.queries),
             config.trigger_interval)
    while True:
        began = time.monotonic()
        code = await_queries(start_queries(spark, run_config, first_start=runs == 0), stop, config,
                             quiet=True)
        runs += 1
        if code != EXIT_OK or stop.is_set():
            log.info("available-now-loop: %d runs", runs)
            return code
        if stop.wait(max(0.0, interval_s - (time.monotonic() - began))):
            log.info("stopped cleanly between two runs (%d runs): every window the watermark "
                     "closed is written", runs)
            return EXIT_OK


def await_queries(queries, stop: threading.Event, config: GoldConfig | None = None,
                  quiet: bool = False) -> int:
    def failed():
        return [q for q in queries if q.exception() is not None]

    while not stop.wait(0.2):
        if failed() or not any(q.isActive for q in queries):
            break
    if stop.is_set():
        for q in queries:
            q.stop()
        # stop() cancels a micro-batch in flight; it was not committed, and the next start
        # replays it from the offset log (the Delta sink skips a batch it already holds).
        log.info("stopped cleanly: the queries are stopped; the next start resumes from the "
                 "checkpoints, replaying any batch that was cut")
        return EXIT_OK
    broken = failed()
    for q in queries:
        q.stop()
    for q in broken:
        cause = describe_failure(q.exception(), q.name, config)
        log.error("query %s failed: %s", q.name, cause)
        print(f"streaming_gold: query {q.name} failed: {cause}", file=sys.stderr, flush=True)
    if broken:
        return EXIT_QUERY_FAILED
    log.log(logging.DEBUG if quiet else logging.INFO,
            "all queries finished: every window the watermark closed is written")
    return EXIT_OK


def describe_failure(exc, name: str, config: GoldConfig | None) -> str:
    """One line: out of space gets its own message (a full disk is an operations problem, not a
    bug), anything else Spark's first line."""
    text = "\n".join(_cause_chain(exc))
    if "No space left on device" in text or "ENOSPC" in text:
        where = (f"{config.paths.gold_table(name)} or {config.paths.checkpoint(name)}" if config
                 else "the Gold table or its checkpoint")
        return (f"out of space: no space left on device while writing {where}. The batch was not "
                f"committed; free space, then start the job again: it resumes from its checkpoint "
                f"and writes every window exactly once")
    return str(exc).strip().splitlines()[0]


def _cause_chain(exc, limit: int = 20) -> list[str]:
    """The messages of an exception and of its causes (PySpark keeps the JVM causes in `_cause`):
    Spark's top message of a failed write says which file, the innermost cause says why."""
    texts = []
    while exc is not None and len(texts) < limit:
        texts.append(str(getattr(exc, "_desc", None) or exc))
        exc = getattr(exc, "_cause", None) or exc.__cause__
    return texts


if __name__ == "__main__":
    sys.exit(main())
