"""What the job says about each micro-batch: one structured log line per batch and query, with
cumulative counters, and a summary line when the job ends."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQueryListener

from flight_gold.core.config import GoldConfig
from flight_gold.core.times import epoch_ms
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
    ) -> None:
        self.config = config or GoldConfig()
        # flight_gold.spark.upstream.SkippedCommitLog, or None.
        self.skipped_commits = skipped_commits
        self.counters: dict[str, QueryCounters] = {}
        self._lock = threading.Lock()
        self._bucket_ms = bucket_ms()
        self._watermarks = {name: dict(marks) for name, marks in (watermarks or {}).items()}
        self._started: set[str] = set()

    def onQueryStarted(self, event) -> None:
        # available-now-loop starts each query every interval: the first start says it all.
        with self._lock:
            first = event.name not in self._started
            self._started.add(event.name)
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
        with self._lock:
            c = self.counters.setdefault(name, QueryCounters())
            c.batches += 1
            c.input_rows += p.numInputRows
            c.late_rows_dropped += late
            if observed is not None:
                for key in QUALITY_COUNTERS:
                    value = observed[key] if key in observed else None  # noqa: SIM401
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
        if self.skipped_commits is not None and p.sources:
            try:
                self.skipped_commits.observe(p.sources[0].startOffset, p.sources[0].endOffset)
            except Exception as exc:  # a log line must never stop the listener
                log.debug("could not inspect the Silver_ML commits of batch %s: %s", p.batchId, exc)

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        if event.exception:
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
        log.info("%s %s", SUMMARY_PREFIX, json.dumps(self.summary(), sort_keys=False))


def flush_listener_events(spark: SparkSession, timeout_ms: int = 10_000) -> None:
    """Waits until the listener bus has delivered every event (the last batches' progress) so
    that the final counters are complete before the session stops."""
    try:
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(timeout_ms)
    except Exception as exc:
        log.debug("could not flush the listener bus: %s", exc)
