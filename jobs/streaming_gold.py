"""Gold streaming job: Silver_ML -> flight_phase_counts (1-min tumbling) and anomaly_alerts
(5-min sliding) Delta tables.

    python jobs/streaming_gold.py --trigger available-now
    spark-submit --py-files flight_gold.zip jobs/streaming_gold.py --trigger processing-time

Exit codes: 0 done or stopped by SIGTERM/SIGINT; 1 a query failed; 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from flight_gold.config import ConfigError, GoldConfig
from flight_gold.logs import configure_logging

log = logging.getLogger("flight_gold.jobs.streaming_gold")

EXIT_OK, EXIT_QUERY_FAILED, EXIT_BAD_INPUT = 0, 1, 2


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
    from flight_gold.streaming import ProgressLogger, SilverNotReadyError, check_silver, start_queries

    spark = build_spark_session(config, "flight-gold-streaming")
    try:
        try:
            check_silver(spark, config)
        except SilverNotReadyError as exc:
            log.error("%s", exc)
            print(f"streaming_gold: error: {exc}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        listener = ProgressLogger()
        spark.streams.addListener(listener)
        queries = start_queries(spark, config)
        return await_queries(queries, stop)
    finally:
        spark.stop()


def await_queries(queries, stop: threading.Event) -> int:
    def failed():
        return [q for q in queries if q.exception() is not None]

    while not stop.wait(0.5):
        if failed() or not any(q.isActive for q in queries):
            break
    if stop.is_set():
        for q in queries:
            q.stop()
        log.info("stopped cleanly: every query ended at a batch boundary; the next start resumes "
                 "from its checkpoint")
        return EXIT_OK
    broken = failed()
    for q in queries:
        q.stop()
    for q in broken:
        cause = str(q.exception()).strip().splitlines()[0]
        log.error("query %s failed: %s", q.name, cause)
        print(f"streaming_gold: query {q.name} failed: {cause}", file=sys.stderr, flush=True)
    if broken:
        return EXIT_QUERY_FAILED
    log.info("all queries finished: every window the watermark closed is written")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
