"""Wiring of the Gold streams: Silver_ML Delta source -> transformation -> Gold Delta sink.

The job script only parses arguments and calls these; tests and benchmarks call them too.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from flight_gold.config import GoldConfig
from flight_gold.schemas import GOLD_SCHEMAS, validate_silver_schema
from flight_gold.transforms import GOLD_TRANSFORMS, QUALITY_COUNTERS, SILVER_QUALITY_METRICS, clean_silver

log = logging.getLogger("flight_gold.streaming")

PROGRESS_PREFIX = "gold_progress"


class SilverNotReadyError(RuntimeError):
    """Silver_ML is missing, is no Delta table, or lacks a needed column: bad input, exit code 2."""


def check_silver(spark: SparkSession, config: GoldConfig) -> None:
    """Fails with a one-line reason naming the path or the column, before anything is written."""
    from delta.tables import DeltaTable

    path = config.paths.silver_flights_ml
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hadoop_path):
        raise SilverNotReadyError(f"Silver_ML table not found: {path} does not exist")
    if not DeltaTable.isDeltaTable(spark, path):
        raise SilverNotReadyError(f"Silver_ML at {path} is not a Delta table (no commit in {path}/_delta_log)")
    try:
        validate_silver_schema(spark.read.format("delta").load(path).schema, path)
    except ValueError as exc:
        raise SilverNotReadyError(str(exc)) from None


def ensure_gold_table(spark: SparkSession, config: GoldConfig, name: str) -> None:
    """Creates the Gold table with its contract schema if it is not there, so that readers
    (dashboard, alerts) find an empty table rather than nothing before the first window closes."""
    from delta.tables import DeltaTable

    (DeltaTable.createIfNotExists(spark)
     .location(config.paths.gold_table(name))
     .addColumns(GOLD_SCHEMAS[name])
     .execute())


def silver_stream(spark: SparkSession, config: GoldConfig):
    reader = spark.readStream.format("delta")
    if config.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", config.max_files_per_trigger)
    if config.max_bytes_per_trigger:
        reader = reader.option("maxBytesPerTrigger", config.max_bytes_per_trigger)
    return reader.load(config.paths.silver_flights_ml)


def start_queries(spark: SparkSession, config: GoldConfig) -> list[StreamingQuery]:
    """Starts one streaming query per configured Gold table, each with its own checkpoint."""
    silver = clean_silver(silver_stream(spark, config), config)
    queries = []
    for name in config.queries:
        ensure_gold_table(spark, config, name)
        writer = (
            GOLD_TRANSFORMS[name](silver, config)
            .writeStream.format("delta")
            .outputMode("append")
            .queryName(name)
            .option("checkpointLocation", config.paths.checkpoint(name))
        )
        if config.trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=config.trigger_interval)
        queries.append(writer.start(config.paths.gold_table(name)))
        log.info("started query %s -> %s (checkpoint %s, trigger %s)", name,
                 config.paths.gold_table(name), config.paths.checkpoint(name),
                 config.trigger if config.trigger == "available-now" else config.trigger_interval)
    return queries


@dataclass
class QueryCounters:
    """Cumulative since the job started, per query."""

    batches: int = 0
    input_rows: int = 0
    late_rows_dropped: int = 0
    quality: dict = field(default_factory=lambda: {k: 0 for k in QUALITY_COUNTERS})


class ProgressLogger(StreamingQueryListener):
    """One structured log line per micro-batch and query, with cumulative counters."""

    def __init__(self) -> None:
        self.counters: dict[str, QueryCounters] = {}
        self._lock = threading.Lock()

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's API)
        log.info("query %s started (id %s, run %s)", event.name, event.id, event.runId)

    def onQueryProgress(self, event) -> None:  # noqa: N802
        p = event.progress
        name = p.name or str(p.id)
        late = sum(op.numRowsDroppedByWatermark for op in p.stateOperators)
        state_rows = sum(op.numRowsTotal for op in p.stateOperators)
        observed = p.observedMetrics.get(SILVER_QUALITY_METRICS) if p.observedMetrics else None
        with self._lock:
            c = self.counters.setdefault(name, QueryCounters())
            c.batches += 1
            c.input_rows += p.numInputRows
            c.late_rows_dropped += late
            if observed is not None:
                for key in QUALITY_COUNTERS:
                    value = observed[key] if key in observed else None
                    c.quality[key] += int(value or 0)
            record = {
                "query": name,
                "batch_id": p.batchId,
                "input_rows": p.numInputRows,
                "rows_per_second": round(p.processedRowsPerSecond or 0.0, 1),
                "batch_duration_ms": p.batchDuration,
                "watermark": (p.eventTime or {}).get("watermark"),
                "late_rows_dropped": late,
                "state_rows": state_rows,
                "cumulative": {
                    "batches": c.batches,
                    "input_rows": c.input_rows,
                    "late_rows_dropped": c.late_rows_dropped,
                    **{k: v for k, v in c.quality.items() if k != "rows_in"},
                },
            }
        log.info("%s %s", PROGRESS_PREFIX, json.dumps(record, sort_keys=False))

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        if event.exception:
            log.error("query %s terminated with an error: %s", event.id, event.exception.splitlines()[0])
        else:
            log.info("query %s terminated", event.id)
