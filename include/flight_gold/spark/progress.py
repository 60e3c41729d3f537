"""What the job says about each micro-batch: a structured log line (gold_progress) per batch and
query, with cumulative counters, and a summary line when the job ends; and a row per batch and
query for the metrics table (flight_gold.lake.metrics).

A continuous run would write a line every trigger interval and query for weeks: there the lines
are sampled. Per query, a batch is logged when it wrote Gold (the watermark closed windows: the
state operators removed rows), when it dropped rows (late, null or future timestamps, NaN
nulled), or when the query logged nothing for `progress_log_every` (default 1 minute); a batch
held back is logged when its query goes idle or the job stops, so the newest state of each
query always reaches the log. A one-shot run (available-now) logs every batch: its log is bounded
by its input, not by time."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQueryListener

from flight_gold.core.config import GoldConfig
from flight_gold.core.intervals import duration_seconds
from flight_gold.core.times import epoch_ms, parse_iso
from flight_gold.spark.transforms import (
    EVENT_TIME_BUCKET_LIMIT,
    EVENT_TIME_BUCKETS,
    GOLD_TRANSFORMS,
    QUALITY_COUNTERS,
    SILVER_QUALITY_METRICS,
    bucket_ms,
    window_step_ms,
)

log = logging.getLogger("flight_gold.streaming")

PROGRESS_PREFIX = "gold_progress"
# One line when the job ends: the cumulative counters of each query (DAG task log, benchmarks).
SUMMARY_PREFIX = "gold_summary"


@dataclass
class QueryCounters:
    """Cumulative since the job started, per query."""

    batches: int = 0
    input_rows: int = 0
    late_rows_dropped: int = 0
    quality: dict = field(default_factory=lambda: {k: 0 for k in QUALITY_COUNTERS})

    def as_dict(self) -> dict:
        return {
            "batches": self.batches,
            "input_rows": self.input_rows,
            "late_rows_dropped": self.late_rows_dropped,
            **{k: v for k, v in self.quality.items() if k != "rows_in"},
        }


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

    def __init__(
        self,
        config: GoldConfig | None = None,
        watermarks: dict[str, dict[int, int]] | None = None,
        skipped_commits=None,
        metrics=None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or GoldConfig()
        # flight_gold.spark.upstream.SkippedCommitLog, or None.
        self.skipped_commits = skipped_commits
        self.counters: dict[str, QueryCounters] = {}
        self.metrics = metrics  # a MetricsWriter, or anything with add(row)
        self._lock = threading.Lock()
        self._bucket_ms = bucket_ms()
        self._watermarks = {name: dict(marks) for name, marks in (watermarks or {}).items()}
        self._started: set[str] = set()
        one_shot = self.config.trigger == "available-now"
        self._every_s = 0.0 if one_shot else duration_seconds(self.config.progress_log_every)
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._held: dict[str, dict] = {}
        self._names: dict[str, str] = {}
        self.lines_logged = 0

    def onQueryStarted(self, event) -> None:
        # available-now-loop starts each query every interval: the first start says it all.
        with self._lock:
            first = event.name not in self._started
            self._started.add(event.name)
            self._names[str(event.id)] = event.name
        log.log(
            logging.INFO if first else logging.DEBUG,
            "query %s started (id %s, run %s)",
            event.name,
            event.id,
            event.runId,
        )

    def onQueryProgress(self, event) -> None:
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
                marks[p.batchId] = epoch_ms(watermark)
                for old in [b for b in marks if b < p.batchId - 1]:
                    del marks[old]
        late = spark_late
        if observed is not None and name in GOLD_TRANSFORMS and previous is not None:
            # A Row: `in` asks for a field, and there is no .get().
            buckets = observed[EVENT_TIME_BUCKETS] if EVENT_TIME_BUCKETS in observed else None  # noqa: SIM401
            if buckets and len(buckets) >= EVENT_TIME_BUCKET_LIMIT:
                log.warning(
                    "batch %s of %s spans more than %s event-time buckets: its late-row count is approximate",
                    p.batchId,
                    name,
                    EVENT_TIME_BUCKET_LIMIT,
                )
            late = late_rows(buckets, previous, window_step_ms(name), self._bucket_ms)
        gold_rows = sum(op.numRowsRemoved for op in p.stateOperators)
        batch_quality = {k: 0 for k in QUALITY_COUNTERS}
        if observed is not None:
            for key in QUALITY_COUNTERS:
                value = observed[key] if key in observed else None  # noqa: SIM401
                batch_quality[key] = int(value or 0)
        with self._lock:
            c = self.counters.setdefault(name, QueryCounters())
            c.batches += 1
            c.input_rows += p.numInputRows
            c.late_rows_dropped += late
            for key, value in batch_quality.items():
                c.quality[key] += value
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
                "gold_rows_written": gold_rows,
                "cumulative": c.as_dict(),
            }
            dropped = late or any(batch_quality[k] for k in QUALITY_COUNTERS if k != "rows_in")
            now = self._clock()
            last = self._last_logged.get(name)
            due = self._every_s == 0 or last is None or now - last >= self._every_s
            if gold_rows or dropped or due:
                self._last_logged[name] = now
                self._held.pop(name, None)
                self.lines_logged += 1
            else:
                self._held[name] = record
                record = None
        if record is not None:
            log.info("%s %s", PROGRESS_PREFIX, json.dumps(record, sort_keys=False))
        if self.metrics is not None:
            self.metrics.add(
                metrics_row(p, name, late, spark_late, state_rows, gold_rows, batch_quality, watermark)
            )
        if self.skipped_commits is not None and p.sources:
            try:
                self.skipped_commits.observe(p.sources[0].startOffset, p.sources[0].endOffset)
            except Exception as exc:  # a log line must never stop the listener
                log.debug("could not inspect the Silver_ML commits of batch %s: %s", p.batchId, exc)

    def onQueryIdle(self, event) -> None:
        # The query has caught up: the batch it held back is its newest state, logged now.
        with self._lock:
            name = self._names.get(str(event.id))
            record = self._held.pop(name, None) if name else None
            if record is not None:
                self._last_logged[name] = self._clock()
                self.lines_logged += 1
        if record is not None:
            log.info("%s %s", PROGRESS_PREFIX, json.dumps(record, sort_keys=False))

    def flush_held(self) -> None:
        """Logs every batch still held back (the job is stopping)."""
        with self._lock:
            held, self._held = self._held, {}
            self.lines_logged += len(held)
        for record in held.values():
            log.info("%s %s", PROGRESS_PREFIX, json.dumps(record, sort_keys=False))

    def onQueryTerminated(self, event) -> None:
        if event.exception and interrupted(event.exception):
            # A stop that cut a read Spark does not recognise as one (the S3A analytics stream
            # wraps the interrupt in a plain IOException). A failure is still reported by the
            # job itself, with its exit code.
            log.warning(
                "query %s stopped mid-batch (%s); its next start replays the batch",
                event.id,
                event.exception.splitlines()[0],
            )
        elif event.exception:
            log.error("query %s terminated with an error: %s", event.id, event.exception.splitlines()[0])
        else:
            log.log(
                logging.INFO if self.config.trigger != "available-now-loop" else logging.DEBUG,
                "query %s terminated",
                event.id,
            )

    def summary(self) -> dict:
        with self._lock:
            return {name: c.as_dict() for name, c in self.counters.items()}

    def log_summary(self) -> None:
        self.flush_held()
        log.info("%s %s", SUMMARY_PREFIX, json.dumps(self.summary(), sort_keys=False))


# An exception or a cause of it in a Java stack trace that is a thread interrupt's.
INTERRUPT = re.compile(
    r"^(?:Caused by: )?(?:java\.lang\.InterruptedException|java\.io\.InterruptedIOException"
    r"|java\.nio\.channels\.ClosedByInterruptException)\b",
    re.MULTILINE,
)


def interrupted(trace: str) -> bool:
    """A query's termination trace is a thread interrupt's (a stop), whatever wraps it."""
    return INTERRUPT.search(trace) is not None


def metrics_row(p, name, late, spark_late, state_rows, gold_rows, quality, watermark) -> dict:
    """The metrics table's row (flight_gold.lake.metrics.SCHEMA) of one progress event."""
    return {
        "batch_time": parse_iso(p.timestamp),
        "query": name,
        "run_id": str(p.runId),
        "batch_id": p.batchId,
        "input_rows": p.numInputRows,
        "input_rows_per_second": float(p.inputRowsPerSecond or 0.0),
        "processed_rows_per_second": float(p.processedRowsPerSecond or 0.0),
        "batch_duration_ms": p.batchDuration,
        "watermark": parse_iso(watermark) if watermark else None,
        "state_rows": state_rows,
        "state_memory_bytes": sum(op.memoryUsedBytes for op in p.stateOperators),
        "gold_rows_written": gold_rows,
        "late_rows_dropped": late,
        "spark_rows_dropped_by_watermark": spark_late,
        "dropped_null_timestamp": quality["dropped_null_timestamp"],
        "dropped_future_timestamp": quality["dropped_future_timestamp"],
        "nan_values_nulled": quality["nan_values_nulled"],
    }


def flush_listener_events(spark: SparkSession, timeout_ms: int = 10_000) -> None:
    """Waits until the listener bus has delivered every event (the last batches' progress) so
    that the final counters are complete before the session stops."""
    try:
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(timeout_ms)
    except Exception as exc:
        log.debug("could not flush the listener bus: %s", exc)
