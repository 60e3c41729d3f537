"""The Airflow side of Gold table maintenance (DAG `gold_maintenance`): the schedule, the trigger
form, what a run does (`plan_request`), the per-table existence check, and the operator that runs
jobs/maintenance.py with spark-submit and returns its report.

Nothing here touches the lakehouse, a connection or a variable when the DAG file is parsed: the
schedules are the only environment read then (a schedule has to be known to the scheduler).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from flight_gold.airflow.submit import (
    JOBS_DIR,
    JobFailedError,
    ProjectSparkSubmitOperator,
    check_spark_connection,
    ship_project,
    task_config,
)
from flight_gold.core.config import ConfigError, parse_table_list
from flight_gold.core.contract import GOLD_TABLE_NAMES
from flight_gold.core.errors import EXIT_ALL_MISSING, EXIT_BAD_INPUT, EXIT_TABLE_FAILED
from flight_gold.spark import maintenance as m

log = logging.getLogger(__name__)

MAINTENANCE_JOB = str(JOBS_DIR / "maintenance.py")
OPTIMIZE_SCHEDULE_ENV = "GOLD_OPTIMIZE_SCHEDULE"
VACUUM_SCHEDULE_ENV = "GOLD_VACUUM_SCHEDULE"
DEFAULT_OPTIMIZE_SCHEDULE = "@hourly"
DEFAULT_VACUUM_SCHEDULE = "@daily"
OPERATIONS = ("auto", *m.MODES)


# -- schedule and form ----------------------------------------------------------------------------


def schedules_from_env(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(compaction cron, VACUUM cron) from GOLD_OPTIMIZE_SCHEDULE / GOLD_VACUUM_SCHEDULE."""
    from croniter import croniter

    env = os.environ if env is None else env
    crons = (
        env.get(OPTIMIZE_SCHEDULE_ENV, "").strip() or DEFAULT_OPTIMIZE_SCHEDULE,
        env.get(VACUUM_SCHEDULE_ENV, "").strip() or DEFAULT_VACUUM_SCHEDULE,
    )
    for name, cron in zip((OPTIMIZE_SCHEDULE_ENV, VACUUM_SCHEDULE_ENV), crons):
        if not croniter.is_valid(cron):
            raise ConfigError(
                f"{name} must be a cron expression such as '@hourly' or '0 3 * * *', got {cron!r}"
            )
    return crons


def maintenance_timetable(env: Mapping[str, str] | None = None):
    """One run at every time either cron fires (one run when both fire together)."""
    from airflow.sdk import MultipleCronTriggerTimetable

    return MultipleCronTriggerTimetable(*schedules_from_env(env), timezone="UTC")


def maintenance_params() -> dict[str, Param]:
    return {
        "operation": Param(
            "auto",
            "auto: a scheduled run compacts at the compaction schedule and runs OPTIMIZE then "
            "VACUUM at the VACUUM schedule; a run triggered by hand runs both. Or force optimize, "
            "vacuum or both.",
            type="string",
            enum=list(OPERATIONS),
            title="Operation",
        ),
        "tables": Param(
            list(GOLD_TABLE_NAMES),
            "The Gold tables to maintain.",
            type="array",
            items={"type": "string", "enum": list(GOLD_TABLE_NAMES)},
            minItems=1,
            uniqueItems=True,
            examples=list(GOLD_TABLE_NAMES),
            title="Tables",
        ),
        "retention_hours": Param(
            m.DEFAULT_RETENTION_HOURS,
            "VACUUM keeps every file younger than this, and every version younger than this stays "
            "readable. Below the table's delta.deletedFileRetentionDuration (7 days by default) "
            "only with 'Allow unsafe retention'.",
            type="integer",
            minimum=0,
            title="Retention (hours)",
        ),
        "allow_unsafe_retention": Param(
            False,
            "Lift Delta's retention safety check for this run. Only when no writer (the Gold "
            "stream) is running: VACUUM could delete the files of a batch being written.",
            type="boolean",
            title="Allow unsafe retention",
        ),
    }


def resolve_mode(
    operation: str, run_type: str | None, logical_date: datetime | None, schedules: tuple[str, str]
) -> str:
    """What a run does: the operation asked, or for `auto` what the schedule says."""
    if operation != "auto":
        return operation
    if str(run_type or "").lower().split(".")[-1] != "scheduled" or logical_date is None:
        return "both"
    from croniter import croniter

    optimize_cron, vacuum_cron = schedules
    if croniter.match(vacuum_cron, logical_date):
        return "both"
    return "optimize" if croniter.match(optimize_cron, logical_date) else "both"


def plan_request(
    params: Mapping[str, Any],
    run_type: str | None = None,
    logical_date: datetime | None = None,
    env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The run's request, validated, as one item per table (what `check_table` maps over):
    {table, mode, retention_hours, allow_unsafe_retention}."""
    operation = params.get("operation", "auto")
    if operation not in OPERATIONS:
        raise AirflowFailException(f"operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")
    try:
        request = m.MaintenanceRequest(
            tables=parse_table_list(params.get("tables") or GOLD_TABLE_NAMES),
            mode=resolve_mode(operation, run_type, logical_date, schedules_from_env(env)),
            retention_hours=params.get("retention_hours", m.DEFAULT_RETENTION_HOURS),
            allow_unsafe_retention=bool(params.get("allow_unsafe_retention", False)),
        )
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    log.info(
        "maintenance of %s: %s%s",
        ", ".join(request.tables),
        request.mode,
        f", VACUUM retention {request.retention_hours} h" if request.vacuum else "",
    )
    return [
        {
            "table": table,
            "mode": request.mode,
            "retention_hours": request.retention_hours,
            "allow_unsafe_retention": request.allow_unsafe_retention,
        }
        for table in request.tables
    ]


def check_table(request: Mapping[str, Any]) -> str:
    """Returns the request's table when it can be maintained. Skips (AirflowSkipException) when it is not a
    Delta table yet, fails without retry when VACUUM's retention is below what it keeps. With
    delta-rs: no JVM for a table that is not there."""
    from flight_gold.lake.tables import open_table

    table = request["table"]
    config = task_config()
    path = config.paths.gold_table(table)
    delta_table = open_table(path, config)
    if delta_table is None:
        reason = (
            f"{table} skipped: {path} is not a Delta table yet (no commit in its _delta_log); "
            f"the Gold job creates it when it starts"
        )
        log.warning("%s", reason)
        raise AirflowSkipException(reason)
    if request.get("mode") in ("vacuum", "both"):
        properties = dict(delta_table.metadata().configuration or {})
        try:
            m.check_retention(
                table,
                int(request["retention_hours"]),
                properties,
                bool(request.get("allow_unsafe_retention")),
            )
        except m.RetentionTooShortError as exc:
            raise AirflowFailException(str(exc)) from None
    log.info(
        "%s: Delta table at version %s, %d active files",
        table,
        delta_table.version(),
        len(delta_table.file_uris()),
    )
    return table


# -- the operator ---------------------------------------------------------------------------------


class GoldMaintenanceSubmitOperator(ProjectSparkSubmitOperator):
    """Runs jobs/maintenance.py with spark-submit on the tables `check_table` found (`tables`) as
    `plan` asked (`request`: its items, one per requested table), and returns the
    job's report: {"mode", "retention_hours", "tables": {table: row}, "summary"}, one row per
    requested table (a table the check skipped is there as "skipped", with its reason).

    Like the streaming DAG's operator it ships the `flight_gold` package with --py-files and the
    project's Spark settings (`flight_gold.spark.spark_conf`) as --conf, read from the worker's
    environment when the task runs. The job writes its report to a file in the task's working
    folder (client deploy mode: the driver runs on the worker), which is read back here.

    Job exit codes: 2 (bad input) fails without retry; 99 (every table missing) skips; 1 (a table
    failed) fails after logging the report, and is retried.
    """

    template_fields: Sequence[str] = (*ProjectSparkSubmitOperator.template_fields, "tables", "request")
    ui_color = "#e8f5e9"
    job_error_prefix = m.ERROR_PREFIX
    spark_role = "maintenance"

    def __init__(
        self,
        *,
        tables: Any = None,
        request: Any = None,
        application: str = MAINTENANCE_JOB,
        name: str = m.APP_NAME,
        **kwargs: Any,
    ) -> None:
        super().__init__(application=application, name=name, **kwargs)
        self.tables = tables
        self.request = request

    def execute(self, context: Any) -> dict[str, Any]:
        items = list(self.request or [])
        if not items:
            raise AirflowFailException("no maintenance request: the plan task returned nothing")
        request = dict(items[0])
        requested = [item["table"] for item in items]
        found = self.tables if self.tables is not None else requested
        # By index up to the count: the XComs of the mapped checks that were skipped do not exist.
        tables = [t for t in (found[i] for i in range(len(found))) if t]
        if not tables:
            raise AirflowSkipException(
                f"none of {', '.join(requested)} is a Delta table yet: nothing to maintain (see check_table)"
            )
        config = task_config()
        check_spark_connection(self._conn_id)
        workdir = tempfile.mkdtemp(prefix="flight-gold-maintenance-")
        report_file = os.path.join(workdir, "report.json")
        try:
            ship_project(self, config, workdir)
            mode = request.get("mode", "both")
            retention = int(request.get("retention_hours", m.DEFAULT_RETENTION_HOURS))
            self.application_args = [
                "--lakehouse-root",
                config.lakehouse_root,
                "--tables",
                ",".join(tables),
                "--mode",
                mode,
                "--retention-hours",
                str(retention),
                *(["--allow-unsafe-retention"] if request.get("allow_unsafe_retention") else []),
                "--report-file",
                report_file,
                *(self.application_args or []),
            ]
            self.log.info("Gold maintenance: %s of %s in %s", mode, ", ".join(tables), config.lakehouse_root)
            try:
                self.submit_local_driver(self.new_handle())
            except JobFailedError as failure:
                if failure.returncode == EXIT_BAD_INPUT:
                    raise AirflowFailException(
                        f"the maintenance job rejected its input (exit code 2, not retried): {failure.reason}"
                    ) from None
                if failure.returncode == EXIT_ALL_MISSING:
                    raise AirflowSkipException(
                        f"none of {', '.join(tables)} is a Delta table (exit code 99): nothing to maintain"
                    ) from None
                if failure.returncode == EXIT_TABLE_FAILED and os.path.exists(report_file):
                    report = self._report(report_file, requested, tables, request)
                    failed = [
                        f"{t}: {r['reason']}" for t, r in report["tables"].items() if r["status"] == m.FAILED
                    ]
                    raise AirflowException(f"maintenance failed on {'; '.join(failed)}") from None
                raise AirflowException(failure.message) from None
            if not os.path.exists(report_file):
                self.log.warning(
                    "the job wrote no report to %s (cluster deploy mode runs the driver "
                    "elsewhere): the return value is empty",
                    report_file,
                )
                return {}
            return self._report(report_file, requested, tables, request)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _report(
        self, report_file: str, requested: list[str], tables: list[str], request: Mapping[str, Any]
    ) -> dict[str, Any]:
        with open(report_file) as handle:
            document = json.load(handle)
        rows = {row["table"]: row for row in document["tables"]}
        for table in requested:
            if table not in tables:
                rows[table] = dict.fromkeys(m.REPORT_KEYS) | {
                    "table": table,
                    "status": m.SKIPPED,
                    "mode": request.get("mode"),
                    "reason": "not a Delta table yet: check_table skipped it",
                }
        ordered = {t: rows[t] for t in requested if t in rows}
        for row in ordered.values():
            self.log.info("%s", m.format_row(row))
        summary = m.summary(list(ordered.values()))
        return {
            "mode": request.get("mode"),
            "retention_hours": request.get("retention_hours"),
            "tables": ordered,
            "summary": summary,
        }
