"""Wiring of the Gold streams: Silver_ML Delta source -> transformation -> Gold Delta sink.

The job script only parses arguments and calls these; tests and benchmarks call them too.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from flight_gold.config import GoldConfig
from flight_gold.guards import (
    CheckpointInUseError,
    CheckpointLock,
    CheckpointMismatchError,
    DeltaLogError,
    GuardError,
    HadoopFiles,
    check_checkpoint_source,
    clear_unborn_delta_log,
    checkpoint_watermarks,
    latest_source_offset,
    lock_checkpoints,
    validate_delta_log,
)
from flight_gold.schemas import GOLD_SCHEMAS, validate_silver_schema
from flight_gold.transforms import (
    EVENT_TIME_BUCKET_LIMIT,
    EVENT_TIME_BUCKETS,
    GOLD_TRANSFORMS,
    QUALITY_COUNTERS,
    SILVER_QUALITY_METRICS,
    bucket_ms,
    clean_silver,
    window_step_ms,
)

log = logging.getLogger("flight_gold.streaming")

PROGRESS_PREFIX = "gold_progress"
# One line when the job ends: the cumulative counters of each query (DAG task log, benchmarks).
SUMMARY_PREFIX = "gold_summary"

__all__ = [
    "PROGRESS_PREFIX", "SUMMARY_PREFIX", "ProgressLogger", "SilverNotReadyError", "GuardError",
    "CheckpointInUseError", "CheckpointMismatchError", "CheckpointLock", "check_silver",
    "check_checkpoints", "lock_checkpoints", "recorded_watermarks", "start_queries", "flush_listener_events",
]


class SilverNotReadyError(RuntimeError):
    """Silver_ML is missing, is no Delta table, or lacks a needed column: bad input, exit code 2."""


def check_silver(spark: SparkSession, config: GoldConfig) -> None:
    """Fails with a one-line reason naming the path, the log entry or the column, before anything
    is written: the table is there, is Delta, every `_delta_log` entry Delta is about to read
    parses, and the five columns the Gold tables need have usable types."""
    from delta.tables import DeltaTable

    path = config.paths.silver_flights_ml
    files = HadoopFiles(spark)
    if files.list(path) is None:
        raise SilverNotReadyError(f"Silver_ML table not found: {path} does not exist")
    if not files.list(f"{path}/_delta_log"):
        raise SilverNotReadyError(f"Silver_ML at {path} is not a Delta table (no commit in {path}/_delta_log)")
    try:
        validate_delta_log(files, path, from_version=_resume_version(files, config))
    except (DeltaLogError, GuardError) as exc:
        raise SilverNotReadyError(str(exc)) from None
    try:
        if not DeltaTable.isDeltaTable(spark, path):
            raise SilverNotReadyError(f"Silver_ML at {path} is not a Delta table (no commit in {path}/_delta_log)")
        schema = spark.read.format("delta").load(path).schema
    except SilverNotReadyError:
        raise
    except Exception as exc:  # noqa: BLE001 - Delta's errors come as Py4J/Analysis exceptions
        raise SilverNotReadyError(f"Silver_ML table {path} cannot be read: {_first_line(exc)}") from None
    try:
        validate_silver_schema(schema, path)
    except ValueError as exc:
        raise SilverNotReadyError(str(exc)) from None


def _resume_version(files: HadoopFiles, config: GoldConfig) -> int | None:
    """The oldest Silver_ML version a query resumes from (its commits are replayed), if any."""
    versions = []
    for name in config.queries:
        offset = latest_source_offset(files, config.paths.checkpoint(name))
        if offset and isinstance(offset.get("reservoirVersion"), int):
            versions.append(offset["reservoirVersion"])
    return min(versions, default=None)


def silver_table_id(spark: SparkSession, config: GoldConfig) -> str:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, config.paths.silver_flights_ml).detail().select("id").first()[0]


def recorded_watermarks(spark: SparkSession, config: GoldConfig) -> dict[str, dict[int, int]]:
    """The watermarks of each query's newest batches in its checkpoint (for ProgressLogger)."""
    files = HadoopFiles(spark)
    return {name: checkpoint_watermarks(files, config.paths.checkpoint(name)) for name in config.queries}


def check_checkpoints(spark: SparkSession, config: GoldConfig) -> None:
    """CheckpointMismatchError when a query's checkpoint was written for another Silver_ML table
    (deleted and re-created at the same path). Run it with the checkpoints locked."""
    check_checkpoint_source(HadoopFiles(spark), config, silver_table_id(spark, config))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("An error occurred while calling"):
            return line.lstrip(": ")
    return text.splitlines()[0] if text else type(exc).__name__


def ensure_gold_table(spark: SparkSession, config: GoldConfig, name: str) -> None:
    """Creates the Gold table with its contract schema if it is not there, so that readers
    (dashboard, alerts) find an empty table rather than nothing before the first window closes."""
    from delta.tables import DeltaTable

    path = config.paths.gold_table(name)
    if clear_unborn_delta_log(HadoopFiles(spark), path):
        log.warning("%s: removed an empty _delta_log left by a creation stopped before its first "
                    "commit; creating the table", path)
    (DeltaTable.createIfNotExists(spark)
     .location(path)
     .addColumns(GOLD_SCHEMAS[name])
     .execute())


def silver_stream(spark: SparkSession, config: GoldConfig):
    reader = spark.readStream.format("delta")
    if config.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", config.max_files_per_trigger)
    if config.max_bytes_per_trigger:
        reader = reader.option("maxBytesPerTrigger", config.max_bytes_per_trigger)
    return reader.load(config.paths.silver_flights_ml)


class GoldTableWriter:
    """The Gold tables' streaming sink (foreachBatch): appends a micro-batch's closed windows to
    the Delta table, exactly once.

    Spark's Delta sink commits every micro-batch, also the five in six (10 s trigger, 1-minute
    windows) that close no window; each such empty commit still costs a state reconstruction of
    the Gold table (Delta 4.4 reads the SetTransactions that way). This writer commits only the
    batches that have rows, with the Delta sink's own idempotency keys (txnAppId = the query's
    id, txnVersion = the batch id): a batch replayed after a crash that had already committed is
    skipped by Delta, and tables written by the Delta sink carry on with the same records."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._query_id: str | None = None
        self._bound = threading.Event()

    def bind(self, query: StreamingQuery) -> None:
        self._query_id = str(query.id)
        self._bound.set()

    def __call__(self, batch, batch_id: int) -> None:
        # The first batch may start before start() has returned the query that bind() needs.
        if not self._bound.wait(timeout=120):
            raise RuntimeError(f"the Gold writer of {self.path} was never bound to its query")
        # count() runs the batch's stateful plan once, into the cache the write then reads: a
        # second run would apply the batch to the state store twice.
        batch.persist()
        try:
            if batch.count() == 0:
                return
            (batch.write.format("delta").mode("append")
             .option("txnAppId", self._query_id)
             .option("txnVersion", batch_id)
             .save(self.path))
        finally:
            batch.unpersist()


def start_queries(spark: SparkSession, config: GoldConfig, first_start: bool = True) -> list[StreamingQuery]:
    """Starts one streaming query per configured Gold table, each with its own checkpoint.
    `first_start=False` (the later runs of available-now-loop) skips creating the Gold tables and
    logs the starts at debug level."""
    silver = clean_silver(silver_stream(spark, config), config)
    queries = []
    for name in config.queries:
        if first_start:
            ensure_gold_table(spark, config, name)
        sink = GoldTableWriter(config.paths.gold_table(name))
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
        log.log(logging.INFO if first_start else logging.DEBUG,
                "started query %s -> %s (checkpoint %s, trigger %s)", name,
                config.paths.gold_table(name), config.paths.checkpoint(name),
                config.trigger_interval if config.trigger == "processing-time" else config.trigger)
    return queries


@dataclass
class QueryCounters:
    """Cumulative since the job started, per query."""

    batches: int = 0
    input_rows: int = 0
    late_rows_dropped: int = 0
    quality: dict = field(default_factory=lambda: {k: 0 for k in QUALITY_COUNTERS})

    def as_dict(self) -> dict:
        return {"batches": self.batches, "input_rows": self.input_rows,
                "late_rows_dropped": self.late_rows_dropped,
                **{k: v for k, v in self.quality.items() if k != "rows_in"}}


def _epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def late_rows(buckets, late_watermark_ms: int, step_ms: int, bucket_width_ms: int) -> int:
    """Input rows of a micro-batch that a closed window refused.

    Spark filters late rows with the watermark of the *previous* micro-batch (and closes windows
    with the current one): a row is dropped from a window whose end is at or before that
    watermark. Windows align to the epoch, so a row's first window ends at the next multiple of the
    step after it: the row is refused by at least one window iff its event time is before that
    watermark rounded down to the step (for a sliding window it may still count in later ones)."""
    if not buckets:
        return 0
    threshold = (late_watermark_ms // step_ms) * step_ms // bucket_width_ms
    return sum(int(b["y"]) for b in buckets if b["x"] < threshold)


class ProgressLogger(StreamingQueryListener):
    """One structured log line per micro-batch and query, with cumulative counters.

    `late_rows_dropped` counts input rows, from the batch's event-time histogram and the previous
    batch's watermark; `spark_rows_dropped_by_watermark` is Spark's own metric, which counts rows
    after partial aggregation (one per window, key and partition), kept for comparison.
    `watermarks` ({query: {batch id: watermark ms}}, see checkpoint_watermarks) gives the
    watermarks of the batches before a restart."""

    def __init__(self, config: GoldConfig | None = None,
                 watermarks: dict[str, dict[int, int]] | None = None) -> None:
        self.config = config or GoldConfig()
        self.counters: dict[str, QueryCounters] = {}
        self._lock = threading.Lock()
        self._bucket_ms = bucket_ms(self.config)
        self._watermarks = {name: dict(marks) for name, marks in (watermarks or {}).items()}
        self._started: set[str] = set()

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's API)
        # available-now-loop starts each query every interval: the first start says it all.
        with self._lock:
            first = event.name not in self._started
            self._started.add(event.name)
        log.log(logging.INFO if first else logging.DEBUG,
                "query %s started (id %s, run %s)", event.name, event.id, event.runId)

    def onQueryProgress(self, event) -> None:  # noqa: N802
        p = event.progress
        name = p.name or str(p.id)
        spark_late = sum(op.numRowsDroppedByWatermark for op in p.stateOperators)
        state_rows = sum(op.numRowsTotal for op in p.stateOperators)
        observed = p.observedMetrics.get(SILVER_QUALITY_METRICS) if p.observedMetrics else None
        watermark = (p.eventTime or {}).get("watermark")
        with self._lock:
            marks = self._watermarks.setdefault(name, {})
            previous = marks.get(p.batchId - 1, 0 if p.batchId == 0 else None)
            if watermark:
                marks[p.batchId] = _epoch_ms(watermark)
                for old in [b for b in marks if b < p.batchId - 1]:
                    del marks[old]
        late = spark_late
        if observed is not None and name in GOLD_TRANSFORMS and previous is not None:
            buckets = observed[EVENT_TIME_BUCKETS] if EVENT_TIME_BUCKETS in observed else None
            if buckets and len(buckets) >= EVENT_TIME_BUCKET_LIMIT:
                log.warning("batch %s of %s spans more than %s event-time buckets: its late-row count "
                            "is approximate", p.batchId, name, EVENT_TIME_BUCKET_LIMIT)
            late = late_rows(buckets, previous, window_step_ms(name, self.config), self._bucket_ms)
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
                "watermark": watermark,
                "late_rows_dropped": late,
                "spark_rows_dropped_by_watermark": spark_late,
                "state_rows": state_rows,
                "cumulative": c.as_dict(),
            }
        log.info("%s %s", PROGRESS_PREFIX, json.dumps(record, sort_keys=False))

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        if event.exception:
            log.error("query %s terminated with an error: %s", event.id, event.exception.splitlines()[0])
        else:
            log.log(logging.INFO if self.config.trigger != "available-now-loop" else logging.DEBUG,
                    "query %s terminated", event.id)

    def summary(self) -> dict:
        with self._lock:
            return {name: c.as_dict() for name, c in self.counters.items()}

    def log_summary(self) -> None:
        log.info("%s %s", SUMMARY_PREFIX, json.dumps(self.summary(), sort_keys=False))


def flush_listener_events(spark: SparkSession, timeout_ms: int = 10_000) -> None:
    """Waits until the listener bus has delivered every event (the last batches' progress) so
    that the final counters are complete before the session stops."""
    try:
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(timeout_ms)
    except Exception as exc:  # noqa: BLE001 - best effort: a private Spark API
        log.debug("could not flush the listener bus: %s", exc)
