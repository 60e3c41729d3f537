"""What every DAG of the project shares: owner, retries, tags. Kept free of Airflow imports so
that tests reach it without Airflow."""

from __future__ import annotations

from datetime import timedelta

OWNER = "flight-gold"
TAGS = ["flight-gold"]

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
