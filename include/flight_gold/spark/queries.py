"""Wiring of the Gold streams: Silver_ML Delta source -> transformation -> Gold sink, one
query per Gold table, each with its own checkpoint."""

from __future__ import annotations

import logging
import threading

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from flight_gold.core.config import GoldConfig
from flight_gold.spark.compaction import Compactor
from flight_gold.spark.files import HadoopFiles
from flight_gold.spark.sink import GoldTableWriter, ensure_gold_table
from flight_gold.spark.transforms import GOLD_TRANSFORMS, clean_silver

log = logging.getLogger("flight_gold.spark.queries")


# maxFilesPerTrigger that admits any Silver_ML table's initial snapshot in one batch (without
# the option Delta admits 1,000 files a batch, not everything).
ALL_FILES = 1_000_000_000


def silver_stream(spark: SparkSession, config: GoldConfig):
    # skipChangeCommits: a commit that removes or rewrites rows (a GDPR purge, a retention job)
    # is skipped whole instead of stopping the stream for good. Gold holds aggregates of windows
    # already final by contract: rows removed upstream stay counted where they were counted,
    # and rows such a commit adds are not read (upstream appends new rows in commits of their
    # own). flight_gold.spark.upstream logs each skipped commit.
    reader = spark.readStream.format("delta").option("skipChangeCommits", "true")
    if config.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", config.max_files_per_trigger)
    if config.max_bytes_per_trigger:
        reader = reader.option("maxBytesPerTrigger", config.max_bytes_per_trigger)
    return reader.load(config.paths.silver_flights_ml)


def start_queries(
    spark: SparkSession, config: GoldConfig, first_start: bool = True, stop: threading.Event | None = None
) -> list[StreamingQuery]:
    """Starts one streaming query per configured Gold table, each with its own checkpoint.
    `first_start=False` (the later runs of available-now-loop) skips creating the Gold tables and
    logs the starts at debug level. Once `stop` is set no further query is started: a stop asked
    for while the queries start (SIGTERM, which a supervisor follows with SIGKILL seconds later)
    then has fewer first batches to cut."""

    def stopping() -> bool:
        return stop is not None and stop.is_set()

    queries: list[StreamingQuery] = []
    if stopping():
        return queries
    silver = clean_silver(silver_stream(spark, config), config)
    files = HadoopFiles(spark)
    for name in config.queries:
        if stopping():
            break
        if first_start:
            ensure_gold_table(spark, config, name)
        path = config.paths.gold_table(name)
        sink = GoldTableWriter(path, Compactor(spark, files, path, name, config.compact_interval_s))
        writer = (
            GOLD_TRANSFORMS[name](silver, config)
            .writeStream.foreachBatch(sink)
            .outputMode("append")
            .queryName(name)
            .option("checkpointLocation", config.paths.checkpoint(name))
        )
        if config.trigger == "processing-time":
            writer = writer.trigger(processingTime=config.trigger_interval)
        else:
            writer = writer.trigger(availableNow=True)
        query = writer.start()
        sink.bind(query)
        queries.append(query)
        log.log(
            logging.INFO if first_start else logging.DEBUG,
            "started query %s -> %s (checkpoint %s, trigger %s)",
            name,
            config.paths.gold_table(name),
            config.paths.checkpoint(name),
            config.trigger_interval if config.trigger == "processing-time" else config.trigger,
        )
    return queries
