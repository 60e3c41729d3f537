"""The Gold job's per-batch metrics, kept in a small Delta table that the job itself writes
(`<root>/_metrics/gold_stream_progress`), so that the task log can stay small (gold_progress lines
are sampled) while every batch stays on record for the dashboard's charts.

The job's driver is the table's only writer (one job per checkpoint): rows are buffered and
appended with `deltalake` about once a minute and when the job stops, as one commit each; a job
killed with kill -9 loses at most that minute. About hourly the job deletes the rows older than
GOLD_METRICS_RETENTION (default 7 days), compacts the small files, vacuums the removed ones and
checkpoints the log, whose old entries then expire after a day: the table stays a few files.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from flight_gold.core.config import GoldConfig
from flight_gold.core.intervals import duration_seconds
from flight_gold.core.times import iso, utcnow
from flight_gold.lake.tables import open_table, storage_options, table_uri

log = logging.getLogger("flight_gold.metrics")

METRICS_TABLE = "gold_stream_progress"
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("batch_time", TS),  # when the micro-batch started (its trigger)
        ("query", pa.string()),
        ("run_id", pa.string()),  # the query run (a new one at each start of the job)
        ("batch_id", pa.int64()),
        ("input_rows", pa.int64()),
        ("input_rows_per_second", pa.float64()),
        ("processed_rows_per_second", pa.float64()),
        ("batch_duration_ms", pa.int64()),
        ("watermark", TS),
        ("state_rows", pa.int64()),
        ("state_memory_bytes", pa.int64()),
        ("gold_rows_written", pa.int64()),  # windows the watermark closed in this batch
        ("late_rows_dropped", pa.int64()),
        ("spark_rows_dropped_by_watermark", pa.int64()),
        ("dropped_null_timestamp", pa.int64()),
        ("dropped_future_timestamp", pa.int64()),
        ("nan_values_nulled", pa.int64()),
    ]
)
TABLE_PROPERTIES = {
    # Log entries older than a day go at each hourly checkpoint; removed files an hour after.
    "delta.logRetentionDuration": "interval 1 days",
    "delta.deletedFileRetentionDuration": "interval 1 hours",
}
# Files an upkeep removed are deleted by the next one: a dashboard read of the version before it
# never finds its files gone.
VACUUM_RETENTION_HOURS = 1
FLUSH_EVERY_S = 60.0
UPKEEP_EVERY_S = 3600.0
# Rows kept in memory while the table cannot be written (storage down); older ones are dropped,
# counted and logged.
MAX_BUFFERED = 100_000


def metrics_path(config: GoldConfig) -> str:
    return config.paths.metrics(METRICS_TABLE)


class MetricsWriter:
    """Buffers one row per micro-batch and query and appends them to the metrics table."""

    def __init__(
        self,
        config: GoldConfig,
        flush_every_s: float = FLUSH_EVERY_S,
        upkeep_every_s: float = UPKEEP_EVERY_S,
    ) -> None:
        self.config = config
        self.path = metrics_path(config)
        self.retention = timedelta(seconds=duration_seconds(config.metrics_retention))
        self.flush_every_s, self.upkeep_every_s = flush_every_s, upkeep_every_s
        self.rows_written = self.rows_dropped = 0
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_upkeep: float | None = None

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._rows.append(row)
            if len(self._rows) > MAX_BUFFERED:
                overflow = len(self._rows) - MAX_BUFFERED
                del self._rows[:overflow]
                self.rows_dropped += overflow

    def start(self) -> MetricsWriter:
        self._last_upkeep = self._last_upkeep_from_log()
        self._thread = threading.Thread(target=self._run, name="gold-metrics", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops the thread and writes what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()
        if self.rows_dropped:
            log.warning("metrics: %d row(s) could not be written and were dropped", self.rows_dropped)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every_s):
            self.flush()
            if self._last_upkeep is None or time.monotonic() - self._last_upkeep >= self.upkeep_every_s:
                self.upkeep()

    def flush(self) -> int:
        """Appends the buffered rows as one commit; the number written (0 on failure: kept)."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                self._append(pa.Table.from_pylist(rows, schema=SCHEMA))
            except Exception as exc:
                log.warning("metrics: could not append %d row(s) to %s: %s", len(rows), self.path, exc)
                with self._lock:
                    self._rows[:0] = rows
                return 0
            self.rows_written += len(rows)
            return len(rows)

    def _append(self, table: pa.Table) -> None:
        from deltalake import write_deltalake

        existing = open_table(self.path, self.config)
        if existing is None:
            write_deltalake(
                table_uri(self.path),
                table,
                mode="append",
                storage_options=storage_options(self.config),
                configuration=TABLE_PROPERTIES,
            )
        else:
            write_deltalake(existing, table, mode="append")

    def upkeep(self, now: datetime | None = None) -> dict[str, Any] | None:
        """Deletes rows older than the retention, compacts, vacuums, checkpoints the log."""
        self._last_upkeep = time.monotonic()
        now = now or utcnow()
        with self._write_lock:
            dt = open_table(self.path, self.config)
            if dt is None:
                return None
            try:
                cutoff = now - self.retention
                deleted = dt.delete(f"batch_time < '{iso(cutoff)}'")
                compacted = dt.optimize.compact()
                vacuumed = dt.vacuum(
                    retention_hours=VACUUM_RETENTION_HOURS, enforce_retention_duration=False, dry_run=False
                )
                dt.create_checkpoint()
                dt.cleanup_metadata()
            except Exception as exc:
                log.warning("metrics: upkeep of %s failed: %s", self.path, exc)
                return None
        report = {
            "rows_deleted": deleted.get("num_deleted_rows", 0),
            "files_compacted": compacted.get("numFilesRemoved", 0),
            "files_vacuumed": len(vacuumed),
            "version": dt.version(),
        }
        log.info("metrics: upkeep of %s: %s", self.path, report)
        return report

    def _last_upkeep_from_log(self) -> float | None:
        """When the last upkeep ran (its OPTIMIZE or VACUUM commit: an upkeep with nothing to compact
        or vacuum commits neither), in this process's monotonic clock, so that a job restarted more
        often than hourly still keeps the table small."""
        try:
            dt = open_table(self.path, self.config)
            if dt is None:
                return time.monotonic()  # nothing to keep up for an hour
            for commit in dt.history(200):
                if commit.get("operation") in ("OPTIMIZE", "VACUUM END"):
                    age = time.time() - commit["timestamp"] / 1000
                    return time.monotonic() - max(0.0, age)
        except Exception as exc:
            log.debug("metrics: no upkeep history (%s)", exc)
        return None


def read_metrics(config: GoldConfig, start: datetime, end: datetime) -> pa.Table | None:
    """Rows with batch_time in [start, end), oldest first; None when the table does not exist."""
    dt = open_table(metrics_path(config), config)
    if dt is None:
        return None
    predicate = f"batch_time >= '{iso(start)}' AND batch_time < '{iso(end)}'"
    table = pa.RecordBatchReader.from_stream(dt.scan(predicate=predicate)).read_all()
    plain = [f.with_type(pa.string()) if pa.types.is_string_view(f.type) else f for f in table.schema]
    table = table.cast(pa.schema(plain))
    return table.sort_by([("batch_time", "ascending"), ("query", "ascending")])
