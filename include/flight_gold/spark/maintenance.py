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

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from flight_gold.core.config import ConfigError, GoldConfig, parse_table_list
from flight_gold.core.contract import GOLD_TABLE_NAMES
from flight_gold.core.errors import EXIT_ALL_MISSING, EXIT_BAD_INPUT, EXIT_OK, EXIT_TABLE_FAILED, one_line
from flight_gold.core.intervals import delta_interval_hours

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

# Keys of one table's report, in the order the JSON line shows them.
REPORT_KEYS = (
    "table",
    "status",
    "reason",
    "mode",
    "version_before",
    "version_after",
    "files_before",
    "bytes_before",
    "files_after",
    "bytes_after",
    "optimize_files_removed",
    "optimize_files_added",
    "vacuum_files_removed",
    "retention_hours",
    "duration_s",
)


class MaintenanceInputError(ConfigError):
    """A maintenance request that cannot run as asked (exit code 2); nothing was changed."""


class RetentionTooShortError(MaintenanceInputError):
    """VACUUM retention below what the table promises its readers and writers."""


@dataclass(frozen=True)
class MaintenanceRequest:
    tables: tuple[str, ...] = GOLD_TABLE_NAMES
    mode: str = "both"
    retention_hours: int = DEFAULT_RETENTION_HOURS
    allow_unsafe_retention: bool = False

    def __post_init__(self) -> None:
        unknown = [t for t in self.tables if t not in GOLD_TABLE_NAMES]
        if unknown or not self.tables:
            raise MaintenanceInputError(
                f"tables must be among {', '.join(GOLD_TABLE_NAMES)}, got {','.join(self.tables)!r}"
            )
        if len(set(self.tables)) != len(self.tables):
            raise MaintenanceInputError(f"tables listed twice: {','.join(self.tables)!r}")
        if self.mode not in MODES:
            raise MaintenanceInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if (
            isinstance(self.retention_hours, bool)
            or not isinstance(self.retention_hours, int)
            or self.retention_hours < 0
        ):
            raise MaintenanceInputError(
                f"retention_hours must be a whole number of hours >= 0, got {self.retention_hours!r}"
            )

    @property
    def optimize(self) -> bool:
        return self.mode in ("optimize", "both")

    @property
    def vacuum(self) -> bool:
        return self.mode in ("vacuum", "both")


def minimum_retention_hours(properties: dict[str, str] | None) -> float:
    """The retention Delta's safety check demands for a table with these properties."""
    hours = delta_interval_hours((properties or {}).get(RETENTION_PROPERTY))
    return DEFAULT_RETENTION_HOURS if hours is None else hours


def check_retention(
    table: str, retention_hours: float, properties: dict[str, str] | None, allow_unsafe_retention: bool
) -> bool:
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
            f"writer is running and losing time travel is intended."
        )
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
    return {
        "version": after,
        "files": int(detail["numFiles"]),
        "bytes": int(detail["sizeInBytes"]),
        "properties": dict(detail["properties"] or {}),
    }


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
        dry_run = (
            None
            if logged
            else spark.sql(f"VACUUM {_sql_path(path)} RETAIN {int(retention_hours)} HOURS DRY RUN").count()
        )
        DeltaTable.forPath(spark, path).vacuum(int(retention_hours))
    if not logged:
        return int(dry_run)
    end = latest_version(spark, path)
    history = DeltaTable.forPath(spark, path).history(max(end - start, 1))
    ends = (
        history.where(f"version > {start} AND operation = 'VACUUM END'")
        .orderBy("version")
        .select("operationMetrics")
        .collect()
    )
    if not ends:
        raise RuntimeError(f"VACUUM of {path} left no VACUUM END commit after version {start}")
    return int(ends[0][0].get("numDeletedFiles", 0))


# -- one run -----------------------------------------------------------------------------------


def _row(table: str, request: MaintenanceRequest, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(REPORT_KEYS)
    row.update(
        table=table, mode=request.mode, retention_hours=request.retention_hours if request.vacuum else None
    )
    row.update(values)
    return row


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
                lift[table] = check_retention(
                    table,
                    request.retention_hours,
                    before[table]["properties"],
                    request.allow_unsafe_retention,
                )

    report = []
    for table in request.tables:
        path = paths[table]
        if not existing[table]:
            reason = (
                f"{path} is not a Delta table yet (no commit in its _delta_log): the Gold "
                f"job has not created it"
            )
            log.warning("%s skipped: %s", table, reason)
            report.append(_row(table, request, status=SKIPPED, reason=reason))
            continue
        started = time.monotonic()
        stats = before[table]
        row = _row(
            table,
            request,
            version_before=stats["version"],
            files_before=stats["files"],
            bytes_before=stats["bytes"],
        )
        try:
            if request.optimize:
                compaction = optimize_table(spark, path)
                row.update(
                    optimize_files_removed=compaction["files_removed"],
                    optimize_files_added=compaction["files_added"],
                )
            if request.vacuum:
                if lift[table]:
                    log.warning(
                        "%s: VACUUM with %g h, below the table's %g h, allowed explicitly",
                        table,
                        request.retention_hours,
                        minimum_retention_hours(stats["properties"]),
                    )
                row["vacuum_files_removed"] = vacuum_table(spark, path, request.retention_hours, lift[table])
            row["status"] = OK
        except Exception as exc:
            log.error("%s failed: %s", table, one_line(exc))
            row.update(status=FAILED, reason=one_line(exc))
        try:
            after = table_stats(spark, path)
            row.update(version_after=after["version"], files_after=after["files"], bytes_after=after["bytes"])
        except Exception as exc:
            if row["status"] == OK:
                row.update(status=FAILED, reason=f"could not read the table afterwards: {one_line(exc)}")
        row["duration_s"] = round(time.monotonic() - started, 3)
        log.info("%s", format_row(row))
        report.append(row)
    return report


def summary(report: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {status: sum(1 for r in report if r["status"] == status) for status in (OK, SKIPPED, FAILED)}
    return {
        "summary": True,
        "tables": len(report),
        "ok": counts[OK],
        "skipped": counts[SKIPPED],
        "failed": counts[FAILED],
        "exit_code": exit_code(report),
    }


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
    text = (
        f"{row['table']}: {row['status']}, mode {row['mode']}, version {row['version_before']} -> "
        f"{row['version_after']}, active files {row['files_before']} -> {row['files_after']}, "
        f"bytes {row['bytes_before']} -> {row['bytes_after']}"
    )
    if row.get("optimize_files_removed") is not None:
        text += f", compacted {row['optimize_files_removed']} files into {row['optimize_files_added']}"
    if row.get("vacuum_files_removed") is not None:
        text += f", VACUUM ({row['retention_hours']:g} h) removed {row['vacuum_files_removed']} files"
    if row["status"] == FAILED:
        text += f": {row['reason']}"
    return text


# -- the job's command line ----------------------------------------------------------------------

APP_NAME = "flight-gold-maintenance"
# Prefix of the job's refusal on stderr, which the Airflow task quotes.
ERROR_PREFIX = "maintenance:"


def parse_args(argv: list[str] | None, doc: str) -> tuple[GoldConfig, MaintenanceRequest, str | None]:
    parser = argparse.ArgumentParser(
        prog="maintenance",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--lakehouse-root",
        metavar="URI",
        default=None,
        help="storage root: a local folder or s3a://bucket/prefix (env LAKEHOUSE_ROOT)",
    )
    parser.add_argument(
        "--master",
        dest="spark_master",
        default=None,
        help="Spark master URL when not run by spark-submit (env SPARK_MASTER)",
    )
    parser.add_argument("--s3-endpoint", default=None, help="S3A endpoint (env S3_ENDPOINT)")
    parser.add_argument(
        "--tables",
        default="both",
        help="comma-separated Gold tables: flight_phase_counts, anomaly_alerts, or both",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="both",
        help="optimize (compaction), vacuum, or both (OPTIMIZE then VACUUM)",
    )
    parser.add_argument(
        "--retention-hours",
        type=int,
        default=DEFAULT_RETENTION_HOURS,
        help="VACUUM keeps files younger than this many hours",
    )
    parser.add_argument(
        "--allow-unsafe-retention",
        action="store_true",
        help="allow a retention below the table's delta.deletedFileRetentionDuration "
        "(7 days by default): only when no writer runs and time travel may be lost",
    )
    parser.add_argument(
        "--report-file", default=None, help="also write the report as one JSON document to this local file"
    )
    args = parser.parse_args(argv)
    try:
        config = GoldConfig.from_env(
            lakehouse_root=args.lakehouse_root, spark_master=args.spark_master, s3_endpoint=args.s3_endpoint
        )
        request = MaintenanceRequest(
            tables=parse_table_list(args.tables),
            mode=args.mode,
            retention_hours=args.retention_hours,
            allow_unsafe_retention=args.allow_unsafe_retention,
        )
    except ConfigError as exc:
        parser.exit(EXIT_BAD_INPUT, f"{ERROR_PREFIX} error: {exc}\n")
    return config, request, args.report_file


def run_job(spark, config: GoldConfig, request: MaintenanceRequest, report_file: str | None) -> int:
    """Maintains the tables, prints one JSON line per table and a summary line on stdout (and
    the whole report into `report_file`), and returns the exit code."""
    try:
        report = run_maintenance(spark, config, request)
    except MaintenanceInputError as exc:
        print(f"{ERROR_PREFIX} error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    total = summary(report)
    for row in report:
        print(json.dumps(row), flush=True)
    print(json.dumps(total), flush=True)
    if report_file:
        write_report(report_file, {"tables": report, "summary": total})
    return total["exit_code"]


def write_report(path: str, document: dict) -> None:
    """Atomic, so that a reader never sees half a report."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report-")
    with os.fdopen(fd, "w") as out:
        json.dump(document, out)
    os.replace(tmp, path)
