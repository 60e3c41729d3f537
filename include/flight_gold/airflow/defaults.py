"""What every DAG of the project shares: the DAG ids, owner, retries, tags. Free of Airflow
imports, so that the alert check, the dashboard and tests name the DAGs without Airflow."""

from __future__ import annotations

from datetime import timedelta

STREAMING_DAG_ID = "gold_streaming"
MAINTENANCE_DAG_ID = "gold_maintenance"
ALERTS_DAG_ID = "gold_anomaly_alerts"
STOP_DAG_ID = "gold_streaming_stop"
FRESHNESS_DAG_ID = "gold_freshness"
HOUSEKEEPING_DAG_ID = "gold_housekeeping"

# The tasks of gold_streaming, in order.
STREAMING_GUARD_TASK = "check_not_streaming"
STREAMING_SENSOR_TASK = "wait_for_silver_ml"
STREAMING_TASK = "run_gold_streams"

OWNER = "flight-gold"
TAGS = ["flight-gold"]

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}

# run_gold_streams supervises a continuous stream itself (restarts after unplanned stops); these
# retries are for the death of the task process (scheduler or worker restart, upgrade, API server
# outage): practically no limit, at most 5 minutes apart.
STREAMING_TASK_RETRIES = {
    "retries": 1000,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=5),
}
