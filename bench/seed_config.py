"""The seed's configuration, written as the seed notebook (07_streaming_gold) runs it: two
queries, each with its own Delta readStream of Silver_ML with default options, Spark's defaults
(`spark.sql.shuffle.partitions=10`, the default state store and local file system, the default
trigger: a new micro-batch as soon as the previous one ends).

Only the Gold logic is the project's (clean_silver and the two aggregations), so that the
benchmark compares configurations, not formulas, and the two sets of Gold tables can be checked
for equality. The UI stays off on both sides and delta-rs-readable table defaults are kept: they
are not tuning, and the benchmark reads the Gold tables with delta-rs.

    python bench/seed_config.py --lakehouse-root DIR     # runs until Ctrl-C, like the notebook
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from flight_gold.core.config import GoldConfig
from flight_gold.spark.session import DELTA_EXCLUDES, packages
from flight_gold.spark.transforms import anomaly_alerts, clean_silver, flight_phase_counts

log = logging.getLogger("bench.seed_config")

SEED_SHUFFLE_PARTITIONS = 10


def seed_conf(config: GoldConfig) -> dict[str, str]:
    """The notebook's session: Delta enabled, everything else at Spark's defaults."""
    return {
        # Installation, not tuning: where the Delta jars come from.
        "spark.jars.packages": ",".join(packages(config)),
        "spark.jars.excludes": ",".join(DELTA_EXCLUDES),
        "spark.jars.ivy": config.jars_cache,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(SEED_SHUFFLE_PARTITIONS),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.properties.defaults.checkpointPolicy": "classic",
        "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    }


def seed_session(config: GoldConfig, overrides: dict[str, str] | None = None):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("seed-streaming-gold").master(config.spark_master)
    for key, value in {**seed_conf(config), **(overrides or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.log_level)
    return spark


def start_seed_queries(spark, config: GoldConfig) -> list:
    paths = config.paths
    # "Deux streams distincts : nécessaire car chaque stream a besoin de sa propre source"
    silver_for_phases = spark.readStream.format("delta").load(paths.silver_flights_ml)
    query_aggregations = (
        flight_phase_counts(clean_silver(silver_for_phases, config), config)
        .writeStream.format("delta")
        .outputMode("append")
        .queryName("flight_phase_counts")
        .option("checkpointLocation", paths.checkpoint("flight_phase_counts"))
        .start(paths.flight_phase_counts)
    )
    silver_for_anomalies = spark.readStream.format("delta").load(paths.silver_flights_ml)
    query_anomalies = (
        anomaly_alerts(clean_silver(silver_for_anomalies, config), config)
        .writeStream.format("delta")
        .outputMode("append")
        .queryName("anomaly_alerts")
        .option("checkpointLocation", paths.checkpoint("anomaly_alerts"))
        .start(paths.anomaly_alerts)
    )
    return [query_aggregations, query_anomalies]


def main(argv: list[str] | None = None) -> int:
    from flight_gold.core.logs import configure_logging
    from flight_gold.spark.progress import ProgressLogger

    parser = argparse.ArgumentParser(prog="seed_config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lakehouse-root", required=True)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)
    configure_logging()
    config = GoldConfig.from_env({}, lakehouse_root=args.lakehouse_root, spark_master=args.master)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    spark = seed_session(config)
    try:
        spark.streams.addListener(ProgressLogger())
        queries = start_seed_queries(spark, config)
        while not stop.wait(0.5) and all(q.isActive for q in queries):
            pass
        for q in queries:
            q.stop()
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
