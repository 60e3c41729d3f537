"""Delta maintenance of the Gold tables: OPTIMIZE (bin-packing compaction of the small files every
micro-batch appends) then VACUUM (deletes the files no version inside the retention needs).

The Gold stream is the only writer of a Gold table's log, on every root (see
flight_gold.spark.compaction): it compacts its tables itself. So:

- OPTIMIZE here runs only where it cannot be a second writer: on a local root, while it holds
  the table's checkpoint lock (the lock the stream holds for its whole run; a stream that starts
  meanwhile waits for it). With a stream running, OPTIMIZE of that table is skipped ("the running
  Gold stream compacts this table itself every ..."). On an s3a:// root the lock only covers one
  host, so OPTIMIZE is always skipped there. A skip is no failure: the report names it.
- VACUUM writes nothing to the log (VACUUM START/END commits off, see
  flight_gold.spark.delta_ops), so it runs beside the stream on every root. It deletes a file
  only when it is unreferenced *and* older than the retention: a file removed by a commit older
  than the retention, or a file no commit knows (a write that failed, or the micro-batch still
  being written) whose modification time is older than the retention. The files of a batch in
  flight are seconds old, and every version younger than the retention stays readable (time
  travel). The retention may go below the table's `delta.deletedFileRetentionDuration` (7 days
  by default) only with the explicit `allow_unsafe_retention`, which lifts Delta's own safety
  check for that one call.
- The streams' checkpoints live under `_checkpoints/`, outside the table folders VACUUM lists.

Functions take a SparkSession and a GoldConfig and return plain dicts, so that the job
(jobs/maintenance.py), the DAG (dags/gold_maintenance.py) and the tests share them.
"""

from __future__ import annotations

import argparse
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
from flight_gold.spark.compaction import optimize
from flight_gold.spark.delta_ops import (  # noqa: F401 - the constants are part of this module's interface
    RETENTION_CHECK_CONF,
    RETENTION_WINDOW_IGNORE_CONF,
    VACUUM_LOGGING_CONF,
    table_exists,
    table_stats,
    vacuum_table,
)
from flight_gold.spark.guards import MAINTENANCE_ROLE, CheckpointInUseError, CheckpointLock

log = logging.getLogger("flight_gold.maintenance")

MODES = ("optimize", "vacuum", "both")
DEFAULT_RETENTION_HOURS = 168
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"

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
    # Why OPTIMIZE did not run on this table (the stream compacts it), or null.
    "optimize_skipped",
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
                lock, skip = claim_for_optimize(config, table)
                if lock is None:
                    log.warning("%s: OPTIMIZE skipped: %s", table, skip)
                    row["optimize_skipped"] = skip
                else:
                    try:
                        compaction = optimize(spark, path)
                    finally:
                        lock.release()
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
            if request.vacuum or not row["optimize_skipped"]:
                row["status"] = OK
            else:
                row.update(status=SKIPPED, reason=row["optimize_skipped"])
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


def claim_for_optimize(config: GoldConfig, table: str) -> tuple[CheckpointLock | None, str | None]:
    """(the table's checkpoint lock, None) when this job may OPTIMIZE it; (None, why not)
    when the table has another writer: its Gold stream, which then compacts it itself."""
    if config.compact_interval_s is None:
        itself = "would compact it itself, but its compaction is off (GOLD_COMPACT_INTERVAL=off)"
    else:
        itself = f"compacts this table itself every {config.compact_interval}"
    if config.is_s3:
        return None, (
            f"on object storage the Gold stream is the only writer of {table}'s log (a second "
            f"driver could overwrite one of its commits) and {itself}"
        )
    lock = CheckpointLock(config.paths.checkpoint(table), local=True, role=MAINTENANCE_ROLE)
    try:
        lock.acquire()
    except CheckpointInUseError as exc:
        if exc.role == MAINTENANCE_ROLE:
            return None, f"another maintenance job is compacting {table} now"
        return None, f"the running Gold stream {itself}"
    return lock, None


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
    # 99 says every table is missing; OPTIMIZE left to the stream is no reason to skip the task.
    if report and all(r["status"] == SKIPPED and not r.get("optimize_skipped") for r in report):
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
    if row.get("optimize_skipped"):
        text += f", OPTIMIZE skipped ({row['optimize_skipped']})"
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
