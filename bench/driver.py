"""One benchmarked Spark driver, run by bench/run.py as its own process (a fresh JVM per run):

- `--variant job`: the Gold job as jobs/streaming_gold.py runs it (build_spark_session, the
  job's ProgressLogger, start_queries, the job's run loop), with its flags;
- `--variant seed`: the seed's configuration (bench/seed_config.py).

Besides the job's own `gold_progress` log lines, every StreamingQueryProgress is written in full
(JSON, one a line) to `--progress-out`, which is what the benchmark reads. `--conf k=v` adds or
overrides Spark settings, for trying a tuning before it goes into flight_gold/spark.py.
Runs until the queries end (available-now) or SIGTERM/SIGINT, then stops them at a batch boundary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from pyspark.sql.streaming import StreamingQueryListener

from flight_gold.core.config import JOB_TRIGGERS, GoldConfig

log = logging.getLogger("bench.driver")


class ProgressFile(StreamingQueryListener):
    """Appends each progress event, as Spark's JSON, to a file (flushed: the harness tails it)."""

    def __init__(self, path: str) -> None:
        self._out = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's API)
        pass

    def onQueryProgress(self, event) -> None:  # noqa: N802
        line = json.dumps(
            {"received_ms": int(time.time() * 1000), "progress": json.loads(event.progress.json)}
        )
        with self._lock:
            self._out.write(line + "\n")

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        pass


def set_loggers(spark, items: list[str]) -> None:
    jvm = spark.sparkContext._jvm
    for name, level in parse_conf(items).items():
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            name, jvm.org.apache.logging.log4j.Level.toLevel(level)
        )


def parse_conf(items: list[str]) -> dict[str, str]:
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"driver: --conf wants key=value, got {item!r}")
        conf[key.strip()] = value.strip()
    return conf


def main(argv: list[str] | None = None) -> int:
    from flight_gold.core.logs import configure_logging

    parser = argparse.ArgumentParser(prog="bench/driver.py")
    parser.add_argument("--variant", choices=("job", "seed"), required=True)
    parser.add_argument("--lakehouse-root", required=True)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--trigger",
        choices=JOB_TRIGGERS,
        default="processing-time",
        help="job only; the seed always runs Spark's default trigger",
    )
    parser.add_argument("--trigger-interval", default="10 seconds")
    parser.add_argument("--shuffle-partitions", type=int, default=None)
    parser.add_argument("--max-files-per-trigger", type=int, default=None)
    parser.add_argument("--max-bytes-per-trigger", default=None)
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--progress-out", required=True)
    parser.add_argument(
        "--logger",
        action="append",
        default=[],
        metavar="NAME=LEVEL",
        help="a JVM logger's level, for diagnosis (e.g. the code generator's compile times)",
    )
    args = parser.parse_args(argv)
    configure_logging()
    overrides = parse_conf(args.conf)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    config = GoldConfig.from_env(
        # The job's own defaults, but for the JIT compilers' nice value when a trial sets it
        # (docs/performance.md, the JIT compilers in the gaps).
        {k: os.environ[k] for k in ("GOLD_JIT_NICE",) if k in os.environ},
        lakehouse_root=args.lakehouse_root,
        spark_master=args.master,
        trigger=args.trigger,
        trigger_interval=args.trigger_interval,
        shuffle_partitions=args.shuffle_partitions,
        max_files_per_trigger=args.max_files_per_trigger,
        max_bytes_per_trigger=args.max_bytes_per_trigger,
    )

    if args.variant == "job":
        from flight_gold.spark.preflight import check_silver
        from flight_gold.spark.progress import ProgressLogger
        from flight_gold.spark.session import build_spark_session, spark_conf

        if overrides:
            # The session is made here with the overrides, then handed to the job's own builder,
            # which reuses it (static settings such as the JVM's must be there at launch).
            from pyspark.sql import SparkSession

            builder = SparkSession.builder.appName("flight-gold-streaming").master(config.spark_master)
            for key, value in {**spark_conf(config), **overrides}.items():
                builder = builder.config(key, value)
            builder.getOrCreate()
        spark = build_spark_session(config, "flight-gold-streaming")
        for key, value in overrides.items():
            try:  # runtime SQL settings the job's builder may have set back
                spark.conf.set(key, value)
            except Exception:
                pass
        set_loggers(spark, args.logger)
        check_silver(spark, config)
        spark.streams.addListener(ProgressLogger(config))
        spark.streams.addListener(ProgressFile(args.progress_out))
        log.info("bench: starting the queries")
        try:
            from flight_gold.spark.runner import run_streams

            code = run_streams(spark, config, stop)
        finally:
            spark.stop()
        return code

    from bench.seed_config import seed_session, start_seed_queries
    from flight_gold.spark.progress import ProgressLogger

    spark = seed_session(config, overrides)
    set_loggers(spark, args.logger)
    try:
        spark.streams.addListener(ProgressLogger())
        spark.streams.addListener(ProgressFile(args.progress_out))
        queries = start_seed_queries(spark, config)
        while not stop.wait(0.5):
            if not all(q.isActive for q in queries):
                break
        failed = [q for q in queries if q.exception() is not None]
        for q in queries:
            q.stop()
        for q in failed:
            print(
                f"driver: seed query {q.name} failed: {str(q.exception()).splitlines()[0]}",
                file=sys.stderr,
                flush=True,
            )
        return 1 if failed else 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
