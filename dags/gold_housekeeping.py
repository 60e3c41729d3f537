"""
### Airflow housekeeping (`gold_housekeeping`)

Daily. Removes what Airflow keeps about itself beyond `GOLD_AIRFLOW_RETENTION_DAYS` (default 30):

1. **clean_metadata**: `airflow db clean --clean-before-timestamp <now - retention> --yes
   --skip-archive` (DAG runs, task instances, logs table, XComs, jobs...; Airflow keeps each DAG's
   latest run);
2. **clean_task_logs**: the files of the task log folder (`[logging] base_log_folder`) last
   written before the retention, and the folders left empty.

A gold_freshness check every 5 minutes makes about 9,000 runs a month, and the streaming task's
log grows with every restart: without this, the database and the log folder grow without end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from flight_gold.airflow.defaults import DEFAULT_ARGS, HOUSEKEEPING_DAG_ID, TAGS


def _retention_days() -> int:
    from flight_gold.airflow.submit import task_config

    return task_config().airflow_retention_days


@dag(
    dag_id=HOUSEKEEPING_DAG_ID,
    schedule="@daily",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "maintenance"],
    doc_md=__doc__,
)
def gold_housekeeping():
    @task(execution_timeout=timedelta(hours=1))
    def clean_metadata() -> dict:
        from flight_gold.airflow.housekeeping import clean_metadata

        return clean_metadata(_retention_days())

    @task(execution_timeout=timedelta(hours=1))
    def clean_task_logs() -> dict:
        from flight_gold.airflow.housekeeping import clean_task_logs

        return clean_task_logs(_retention_days())

    clean_metadata() >> clean_task_logs()


gold_housekeeping()
