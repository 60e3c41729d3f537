"""
### Gold table maintenance: OPTIMIZE (compaction) and VACUUM (`gold_maintenance`)

Every micro-batch of the Gold stream appends a few small files. The Gold stream compacts its own
tables (Delta `OPTIMIZE`, every `GOLD_COMPACT_INTERVAL`, default 1 hour): it is the only process
that commits to a Gold table's log. Two drivers committing to one table on S3 can overwrite each
other's commit and silently lose a micro-batch, so this DAG never adds a second writer:

- **VACUUM** (deletes the files no recent version needs) runs beside the stream on every root: it
  writes nothing to the table's log (Delta's VACUUM START/END commits are turned off).
- **OPTIMIZE** runs only on a local lakehouse while no stream runs (it takes the table's
  checkpoint lock; a stream starting meanwhile waits for it). While a stream runs, and always on
  an `s3a://` lakehouse, the table's OPTIMIZE is **skipped**, and the report says why ("the
  running Gold stream compacts this table itself every 1 hour"). A skip is not a failure.

**Schedule**: compaction at `GOLD_OPTIMIZE_SCHEDULE` (default `@hourly`), OPTIMIZE then VACUUM at
`GOLD_VACUUM_SCHEDULE` (default `@daily`), in UTC; one run when both fire together; no catch-up.
A run triggered by hand does both.

**Tasks**

1. **plan** resolves what the run does (form and schedule).
2. **check_table** (one per table) skips, with its reason in the log, a table that is not a Delta
   table yet (the Gold job has not started), and fails when the VACUUM retention is below what the
   table keeps.
3. **maintain** submits `jobs/maintenance.py` with spark-submit (connection `spark_default`) on the
   tables that exist. Its log has one line per table (active files and bytes before and after,
   files compacted or why OPTIMIZE was skipped, files removed by VACUUM, table version) and its
   return value (XCom) is the same report as a dict (`optimize_skipped` holds the reason). It is
   skipped when every table was missing. On a `spark://` master it asks for
   `GOLD_MAINTENANCE_CORES_MAX` cores (default 1), leaving the stream its own.

**Trigger form**: *Operation* (`auto`, `optimize`, `vacuum`, `both`), *Tables* (both by default),
*Retention (hours)* (168: VACUUM keeps every file younger than 7 days, so a running stream and
time travel to any version of the last 7 days are safe), *Allow unsafe retention* (needed below
the table's `delta.deletedFileRetentionDuration`; only when no writer runs).

The streams' checkpoints live under `_checkpoints/`, outside the tables: VACUUM never sees them.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import TriggerRule, dag, task

from flight_gold.airflow.defaults import DEFAULT_ARGS, MAINTENANCE_DAG_ID, TAGS
from flight_gold.airflow.maintenance import (
    GoldMaintenanceSubmitOperator,
    maintenance_params,
    maintenance_timetable,
)


@dag(
    dag_id=MAINTENANCE_DAG_ID,
    description="Delta OPTIMIZE (hourly) and VACUUM (daily) of the Gold tables",
    schedule=maintenance_timetable(),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # Two maintenance runs on one table would only compete for the same files.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "maintenance"],
    params=maintenance_params(),
    doc_md=__doc__,
)
def gold_maintenance():
    @task
    def plan(params=None, dag_run=None, logical_date=None) -> list[dict]:
        from flight_gold.airflow.maintenance import plan_request

        return plan_request(params, getattr(dag_run, "run_type", None), logical_date)

    @task(doc_md="Skips a table that is not a Delta table yet, with the reason in its log.")
    def check_table(request: dict) -> str:
        from flight_gold.airflow.maintenance import check_table as check

        return check(request)

    planned = plan()
    found = check_table.expand(request=planned)
    GoldMaintenanceSubmitOperator(
        task_id="maintain",
        conn_id="spark_default",
        tables=found,
        request=planned,
        # Runs when no check failed; skips itself when every check skipped.
        trigger_rule=TriggerRule.NONE_FAILED,
        execution_timeout=timedelta(hours=2),
        doc_md="spark-submit jobs/maintenance.py; returns the per-table report.",
    )


gold_maintenance()
