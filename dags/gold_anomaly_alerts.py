"""
### Anomaly-rate alerts (`gold_anomaly_alerts`)

Every few minutes (`GOLD_ALERTS_SCHEDULE`, default `*/5 * * * *`), reads the rows the Gold table
`anomaly_alerts` gained since the last successful check (with `deltalake`, no Spark) and alerts on
each window whose `anomaly_rate` is strictly above the threshold: **one Slack message** (connection
`slack_alerts`, an Incoming Webhook) and **one email** (connection `smtp_alerts`, recipients in
`ALERT_EMAIL_TO`) per run, listing the breaches by rate. A run with no breach sends nothing.

Each breach (window, country) is alerted once: the ledger `<LAKEHOUSE_ROOT>/_alerts/gold_anomaly_alerts.json`
records per channel what was sent and the Gold version checked up to. A failed send fails the task;
the retry sends only what each channel still lacks.

Params (defaults from the environment): `threshold` (`GOLD_ALERTS_THRESHOLD`, 0.1),
`min_observations` (`GOLD_ALERTS_MIN_OBSERVATIONS`, 1: windows with fewer observations are not
alerted), `max_rows` (`GOLD_ALERTS_MAX_ROWS`, 20: longer lists end with "and N more").

The task returns `breaches_found` and `breaches_sent` per channel. Logic: `flight_gold.alerting`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from flight_gold.airflow.defaults import ALERTS_DAG_ID, DEFAULT_ARGS, TAGS
from flight_gold.alerting.settings import MAX_ROWS_LIMIT, AlertSettings, schedule_from_env

# Environment only: connections, variables and files are read when the task runs.
_DEFAULTS = AlertSettings.from_env()


@dag(
    dag_id=ALERTS_DAG_ID,
    schedule=schedule_from_env(),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    # Two checks at once would both read the same new rows and alert twice.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "alerts"],
    doc_md=__doc__,
    params={
        "threshold": Param(
            _DEFAULTS.threshold,
            type="number",
            minimum=0,
            exclusiveMaximum=1,
            description="alert when anomaly_rate is strictly above this fraction",
        ),
        "min_observations": Param(
            _DEFAULTS.min_observations,
            type="integer",
            minimum=1,
            description="ignore windows with fewer observations",
        ),
        "max_rows": Param(
            _DEFAULTS.max_rows,
            type="integer",
            minimum=1,
            maximum=MAX_ROWS_LIMIT,
            description="breaches listed per message; the rest is 'and N more'",
        ),
    },
)
def gold_anomaly_alerts():
    @task(execution_timeout=timedelta(minutes=10))
    def check_and_alert(params=None, run_id=None) -> dict:
        from flight_gold.airflow import alerts

        return alerts.check_and_alert(params, run_id)

    check_and_alert()


gold_anomaly_alerts()
