"""What every DAG of the project shares: the DAG ids, owner, retries, tags. Free of Airflow
imports, so that the alert check, the dashboard and tests name the DAGs without Airflow."""

from __future__ import annotations

from datetime import timedelta

STREAMING_DAG_ID = "gold_streaming"
MAINTENANCE_DAG_ID = "gold_maintenance"
ALERTS_DAG_ID = "gold_anomaly_alerts"

OWNER = "flight-gold"
TAGS = ["flight-gold"]

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
