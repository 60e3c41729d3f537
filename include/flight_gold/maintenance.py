"""Delta maintenance of the Gold tables: OPTIMIZE (bin-packing compaction of the small files every
micro-batch appends) then VACUUM (deletes the files no version inside the retention needs).

Why it is safe next to the running Gold stream:

- Compaction rewrites files with dataChange=false. Delta checks its commit against every commit
  that landed meanwhile, and the stream's sink only adds files (a blind append), so neither side
  conflicts: each one retries its commit on top of the other's without failing.
  tests/e2e/test_maintenance_concurrent.py checks this on Delta 4.4 from the transaction log.
- VACUUM deletes a file only when it is unreferenced *and* older than the retention: a file
  removed by a commit older than the retention, or a file no commit knows (a write that failed,
  or the micro-batch still being written) whose modification time is older than the retention.
  The files of a batch in flight are seconds old, and every version younger than the retention
  stays readable (time travel). The retention may go below the table's
  `delta.deletedFileRetentionDuration` (7 days by default) only with the explicit
  `allow_unsafe_retention`, which lifts Delta's own safety check for that one call.
- The streams' checkpoints live under `_checkpoints/`, outside the table folders VACUUM lists.

Delta 4.4 ignores VACUUM's `RETAIN n HOURS` unless n is 0 (internal setting
`spark.databricks.delta.vacuum.retentionWindowIgnore.enabled`, on by default) and uses the
table's `delta.deletedFileRetentionDuration` instead: a retention asked above the table's would
silently delete more than asked. `vacuum_table` turns that setting off for its one call, so the
retention asked is the retention applied (the VACUUM START commit records it as
`specifiedRetentionMillis`), still under Delta's safety check. Delta rounds it to whole hours,
hence an integer here.

Functions take a SparkSession and a GoldConfig and return plain dicts, so that the job
(jobs/maintenance.py), the DAG (dags/gold_maintenance.py) and the tests share them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable

from flight_gold.config import ConfigError, GoldConfig
from flight_gold.paths import GOLD_TABLES

log = logging.getLogger("flight_gold.maintenance")

MODES = ("optimize", "vacuum", "both")
DEFAULT_RETENTION_HOURS = 168
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"
RETENTION_WINDOW_IGNORE_CONF = "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled"
VACUUM_LOGGING_CONF = "spark.databricks.delta.vacuum.logging.enabled"
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
# Delta writes VACUUM START/END commits (with numDeletedFiles) on these file systems only, unless
# VACUUM_LOGGING_CONF says otherwise (VacuumCommandImpl.supportedFsForLogging).
_VACUUM_LOGGED_SCHEMES = ("wasbs", "wasbss", "abfs", "abfss", "adl", "gs", "file", "hdfs")

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
EXIT_OK, EXIT_TABLE_FAILED, EXIT_BAD_INPUT, EXIT_ALL_MISSING = 0, 1, 2, 99

# Keys of one table's report, in the order the JSON line shows them.
REPORT_KEYS = (
    "table", "status", "reason", "mode", "version_before", "version_after", "files_before",
    "bytes_before", "files_after", "bytes_after", "optimize_files_removed", "optimize_files_added",
    "vacuum_files_removed", "retention_hours", "duration_s",
)


class MaintenanceInputError(ConfigError):
    """A maintenance request that cannot run as asked (exit code 2); nothing was changed."""


class RetentionTooShortError(MaintenanceInputError):
    """VACUUM retention below what the table promises its readers and writers."""


@dataclass(frozen=True)
class MaintenanceRequest:
    tables: tuple[str, ...] = GOLD_TABLES
    mode: str = "both"
    retention_hours: int = DEFAULT_RETENTION_HOURS
    allow_unsafe_retention: bool = False

    def __post_init__(self) -> None:
        unknown = [t for t in self.tables if t not in GOLD_TABLES]
        if unknown or not self.tables:
            raise MaintenanceInputError(
                f"tables must be among {', '.join(GOLD_TABLES)}, got {','.join(self.tables)!r}")
        if len(set(self.tables)) != len(self.tables):
            raise MaintenanceInputError(f"tables listed twice: {','.join(self.tables)!r}")
        if self.mode not in MODES:
            raise MaintenanceInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if isinstance(self.retention_hours, bool) or not isinstance(self.retention_hours, int) \
                or self.retention_hours < 0:
            raise MaintenanceInputError(
                f"retention_hours must be a whole number of hours >= 0, got {self.retention_hours!r}")

    @property
    def optimize(self) -> bool:
        return self.mode in ("optimize", "both")

    @property
    def vacuum(self) -> bool:
        return self.mode in ("vacuum", "both")


def parse_tables(raw: str | Iterable[str]) -> tuple[str, ...]:
    """'a,b', 'both' / 'all', or a list -> table names (validated by MaintenanceRequest)."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = tuple(str(item).strip() for item in items if str(item).strip())
    return GOLD_TABLES if names in (("both",), ("all",)) else names


_INTERVAL_PART = re.compile(
    r"(\d+(?:\.\d+)?)\s*(week|day|hour|minute|second|millisecond|microsecond)s?\b", re.IGNORECASE)
_HOURS_PER_UNIT = {"week": 168.0, "day": 24.0, "hour": 1.0, "minute": 1 / 60, "second": 1 / 3600,
                   "millisecond": 1 / 3_600_000, "microsecond": 1 / 3_600_000_000}


def interval_hours(value: str | None) -> float | None:
    """Hours of a Delta interval property such as 'interval 1 week' or 'interval 2 days 12 hours';
    None when absent or not understood (Delta's own check still applies then)."""
    if not value:
        return None
    text = value.strip().lower()
    text = text[len("interval"):] if text.startswith("interval") else text
    parts = _INTERVAL_PART.findall(text)
    if not parts or _INTERVAL_PART.sub("", text).strip():
        return None
    return sum(float(n) * _HOURS_PER_UNIT[unit.lower()] for n, unit in parts)


def minimum_retention_hours(properties: dict[str, str] | None) -> float:
    """The retention Delta's safety check demands for a table with these properties."""
    hours = interval_hours((properties or {}).get(RETENTION_PROPERTY))
    return DEFAULT_RETENTION_HOURS if hours is None else hours


def check_retention(table: str, retention_hours: float, properties: dict[str, str] | None,
                    allow_unsafe_retention: bool) -> bool:
    """True when the retention needs Delta's safety check lifted (allowed explicitly); raises
    RetentionTooShortError when it would need it and is not allowed."""
    minimum = minimum_retention_hours(properties)
    if retention_hours >= minimum:
        return False
    if not allow_unsafe_retention:
        raise RetentionTooShortError(
            f"VACUUM retention {retention_hours:g} h is below the {minimum:g} h that {table} keeps "
            f"({RETENTION_PROPERTY}): files a running stream or a reader of a recent version still "
            f"needs could be deleted. Raise the retention, or pass allow_unsafe_retention if no "
            f"writer is running and losing time travel is intended.")
    return True


# -- reading a table's state -------------------------------------------------------------------


def table_exists(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def latest_version(spark, path: str) -> int:
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def table_stats(spark, path: str) -> dict[str, Any]:
    """Version, active files and bytes of one snapshot (DESCRIBE DETAIL), and the properties.

    DESCRIBE DETAIL does not say which version it describes; reading the latest version before
    and after it, and retrying when a concurrent commit slipped in between, ties the two."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    before = latest_version(spark, path)
    for _ in range(5):
        detail = table.detail().first()
        after = latest_version(spark, path)
        if after == before:
            break
        before = after
    return {"version": after, "files": int(detail["numFiles"]), "bytes": int(detail["sizeInBytes"]),
            "properties": dict(detail["properties"] or {})}


# -- the two operations ---------------------------------------------------------------------------


def optimize_table(spark, path: str) -> dict[str, int]:
    """Bin-packing compaction (OPTIMIZE); returns the files and bytes it removed and added."""
    from delta.tables import DeltaTable

    metrics = DeltaTable.forPath(spark, path).optimize().executeCompaction().first()["metrics"]
    return {
        "files_removed": int(metrics["numFilesRemoved"]),
        "files_added": int(metrics["numFilesAdded"]),
        "bytes_removed": int(metrics["filesRemoved"]["totalSize"] or 0),
        "bytes_added": int(metrics["filesAdded"]["totalSize"] or 0),
    }


def _vacuum_is_logged(spark, path: str) -> bool:
    explicit = spark.conf.get(VACUUM_LOGGING_CONF, None)
    if explicit is not None:
        return explicit.strip().lower() == "true"
    scheme = path.split("://", 1)[0].lower() if "://" in path else "file"
    return scheme in _VACUUM_LOGGED_SCHEMES


def _sql_path(path: str) -> str:
    return "delta.`" + path.replace("`", "``") + "`"


@contextlib.contextmanager
def session_conf(spark, settings: dict[str, str]):
    """Spark settings for the duration of a block: the session may be shared (tests, a longer
    job), and an override must not outlive the one call it was meant for."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def vacuum_table(spark, path: str, retention_hours: int, lift_retention_check: bool = False) -> int:
    """VACUUM with the given retention; returns how many files it deleted.

    The count is Delta's own (numDeletedFiles of the VACUUM END commit) where Delta logs VACUUM;
    on object stores where it does not (s3a), it is the DRY RUN list taken just before."""
    from delta.tables import DeltaTable

    logged = _vacuum_is_logged(spark, path)
    start = latest_version(spark, path)
    settings = {RETENTION_WINDOW_IGNORE_CONF: "false"}
    if lift_retention_check:
        settings[RETENTION_CHECK_CONF] = "false"
    with session_conf(spark, settings):
        dry_run = None if logged else spark.sql(
            f"VACUUM {_sql_path(path)} RETAIN {int(retention_hours)} HOURS DRY RUN").count()
        DeltaTable.forPath(spark, path).vacuum(int(retention_hours))
    if not logged:
        return int(dry_run)
    end = latest_version(spark, path)
    history = DeltaTable.forPath(spark, path).history(max(end - start, 1))
    ends = (history.where(f"version > {start} AND operation = 'VACUUM END'")
            .orderBy("version").select("operationMetrics").collect())
    if not ends:
        raise RuntimeError(f"VACUUM of {path} left no VACUUM END commit after version {start}")
    return int(ends[0][0].get("numDeletedFiles", 0))


# -- one run -----------------------------------------------------------------------------------


def _row(table: str, request: MaintenanceRequest, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(REPORT_KEYS)
    row.update(table=table, mode=request.mode,
               retention_hours=request.retention_hours if request.vacuum else None)
    row.update(values)
    return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def run_maintenance(spark, config: GoldConfig, request: MaintenanceRequest) -> list[dict[str, Any]]:
    """OPTIMIZE then VACUUM (as the mode says) on each requested Gold table; one report dict per
    table, in the requested order. A missing table is skipped with its reason; a failure on one
    table is reported and the next table still runs. The retention is checked on every existing
    table before anything runs, so a refused request changes nothing."""
    paths = {t: config.paths.gold_table(t) for t in request.tables}
    existing = {t: table_exists(spark, p) for t, p in paths.items()}
    before: dict[str, dict] = {}
    lift: dict[str, bool] = {}
    for table in request.tables:
        if existing[table]:
            before[table] = table_stats(spark, paths[table])
            if request.vacuum:
                lift[table] = check_retention(table, request.retention_hours,
                                              before[table]["properties"], request.allow_unsafe_retention)

    report = []
    for table in request.tables:
        path = paths[table]
        if not existing[table]:
            reason = (f"{path} is not a Delta table yet (no commit in its _delta_log): the Gold "
                      f"job has not created it")
            log.warning("%s skipped: %s", table, reason)
            report.append(_row(table, request, status=SKIPPED, reason=reason))
            continue
        started = time.monotonic()
        stats = before[table]
        row = _row(table, request, version_before=stats["version"], files_before=stats["files"],
                   bytes_before=stats["bytes"])
        try:
            if request.optimize:
                compaction = optimize_table(spark, path)
                row.update(optimize_files_removed=compaction["files_removed"],
                           optimize_files_added=compaction["files_added"])
            if request.vacuum:
                if lift[table]:
                    log.warning("%s: VACUUM with %g h, below the table's %g h, allowed explicitly",
                                table, request.retention_hours,
                                minimum_retention_hours(stats["properties"]))
                row["vacuum_files_removed"] = vacuum_table(spark, path, request.retention_hours, lift[table])
            row["status"] = OK
        except Exception as exc:  # noqa: BLE001 - reported per table; the next table still runs
            log.error("%s failed: %s", table, _first_line(exc))
            row.update(status=FAILED, reason=_first_line(exc))
        try:
            after = table_stats(spark, path)
            row.update(version_after=after["version"], files_after=after["files"], bytes_after=after["bytes"])
        except Exception as exc:  # noqa: BLE001
            if row["status"] == OK:
                row.update(status=FAILED, reason=f"could not read the table afterwards: {_first_line(exc)}")
        row["duration_s"] = round(time.monotonic() - started, 3)
        log.info("%s", format_row(row))
        report.append(row)
    return report


def summary(report: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {status: sum(1 for r in report if r["status"] == status) for status in (OK, SKIPPED, FAILED)}
    return {"summary": True, "tables": len(report), "ok": counts[OK], "skipped": counts[SKIPPED],
            "failed": counts[FAILED], "exit_code": exit_code(report)}


def exit_code(report: list[dict[str, Any]]) -> int:
    if any(r["status"] == FAILED for r in report):
        return EXIT_TABLE_FAILED
    if report and all(r["status"] == SKIPPED for r in report):
        return EXIT_ALL_MISSING
    return EXIT_OK


def format_row(row: dict[str, Any]) -> str:
    """One human line per table for the task log."""
    if row["status"] == SKIPPED:
        return f"{row['table']}: skipped, {row['reason']}"
    text = (f"{row['table']}: {row['status']}, mode {row['mode']}, version {row['version_before']} -> "
            f"{row['version_after']}, active files {row['files_before']} -> {row['files_after']}, "
            f"bytes {row['bytes_before']} -> {row['bytes_after']}")
    if row.get("optimize_files_removed") is not None:
        text += f", compacted {row['optimize_files_removed']} files into {row['optimize_files_added']}"
    if row.get("vacuum_files_removed") is not None:
        text += f", VACUUM ({row['retention_hours']:g} h) removed {row['vacuum_files_removed']} files"
    if row["status"] == FAILED:
        text += f": {row['reason']}"
    return text
