"""
### Gold freshness alerts (`gold_freshness`)

Every few minutes (`GOLD_FRESHNESS_SCHEDULE`, default `*/5 * * * *`), checks with `deltalake`
(file statistics, no Spark) that Gold keeps up with Silver_ML. Gold is **stale** when

- a Gold table's newest window ends more than `GOLD_FRESHNESS_THRESHOLD` (default 10 minutes)
  before the newest window Silver_ML's data closes (Silver_ML's newest event time minus the
  table's watermark, rounded down to its window step), or
- Silver_ML grew since the previous check while no *run_gold_streams* task of `gold_streaming`
  is running.

One Slack message (`slack_alerts`) and one email (`smtp_alerts`, `ALERT_EMAIL_TO`) per incident,
and one "fresh again" message when it is over; the ledger is
`<LAKEHOUSE_ROOT>/_alerts/gold_freshness.json`. A channel that failed gets what it lacks at the
next check. It runs apart from `gold_anomaly_alerts` so that each keeps its own history (a stale
stream does not paint the anomaly check red) and schedule.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from flight_gold.airflow.defaults import DEFAULT_ARGS, FRESHNESS_DAG_ID, TAGS

SCHEDULE_ENV = "GOLD_FRESHNESS_SCHEDULE"


@dag(
    dag_id=FRESHNESS_DAG_ID,
    schedule=os.environ.get(SCHEDULE_ENV, "").strip() or "*/5 * * * *",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    # Two checks at once would both open the same incident.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "alerts", "streaming"],
    doc_md=__doc__,
)
def gold_freshness():
    @task(execution_timeout=timedelta(minutes=10))
    def check_freshness(**context) -> dict:
        from flight_gold.airflow.control import check_freshness

        return check_freshness(context)

    check_freshness()


gold_freshness()
