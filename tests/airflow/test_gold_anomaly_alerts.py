"""The DAG gold_anomaly_alerts run by Airflow (dag.test()) against real receivers on loopback: an
SMTP server (aiosmtpd) and an HTTP server standing in for the Slack Incoming Webhook endpoint.
Connections come from AIRFLOW_CONN_* environment variables, as the README tells users."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from flight_gold import alerting as alerts
from flight_gold.airflow import alerts as airflow_alerts
from flight_gold.core.config import GoldConfig
from flight_gold.lake.schemas import GOLD_ARROW_SCHEMAS
from support.receivers import SENDER, SmtpReceiver, WebhookServer, connection_env

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "gold_anomaly_alerts.py"
TASK_ID = "check_and_alert"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
RECIPIENTS = ["ops@example.com", "oncall@example.com"]


# -- receivers (tests/support/receivers.py) ----------------------------------------------------


@pytest.fixture
def webhook():
    server = WebhookServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver()
    inbox = receiver.start()
    yield inbox
    receiver.stop()


@pytest.fixture
def env(monkeypatch, tmp_path, webhook, smtp, airflow_db):
    """Both channels configured the README's way, a lakehouse in tmp_path."""
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(tmp_path / "lakehouse"))
    for name, value in connection_env(webhook, smtp, RECIPIENTS).items():
        monkeypatch.setenv(name, value)
    for name in (
        alerts.THRESHOLD_ENV,
        alerts.MIN_OBSERVATIONS_ENV,
        alerts.MAX_ROWS_ENV,
        alerts.SCHEDULE_ENV,
        alerts.LEDGER_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    return GoldConfig.from_env()


# -- helpers ------------------------------------------------------------------------------------


def load_dag(retries: int | None = None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.get_dag("gold_anomaly_alerts")
    if retries is not None:
        # DEFAULT_ARGS waits 30 s and more between tries; a test needs seconds.
        task = dag.get_task(TASK_ID)
        task.retries = retries
        task.retry_delay = timedelta(seconds=1)
        task.retry_exponential_backoff = 0
    return dag


def run(dag, **kwargs):
    """dag.test(), then (run state, task state, try number, return value)."""
    from airflow.utils.session import create_session

    dag_run = dag.test(**kwargs)
    with create_session() as session:
        ti = dag_run.get_task_instance(TASK_ID, session=session)
        value = ti.xcom_pull(task_ids=TASK_ID, session=session)
        return str(dag_run.state), str(ti.state), ti.try_number, value


def gold(config, rows) -> None:
    """Appends rows (minute, country, total, anomalous, altitude, velocity, max_alt, max_vel) to the
    Gold table, as one commit."""
    schema = GOLD_ARROW_SCHEMAS["anomaly_alerts"]
    records = []
    for minute, country, total, anomalous, altitude, velocity, max_alt, max_vel in rows:
        start = T0 + timedelta(minutes=minute)
        records.append(
            dict(
                window_start=start,
                window_end=start + timedelta(minutes=5),
                origin_country=country,
                total_observations=total,
                altitude_anomalies=altitude,
                velocity_anomalies=velocity,
                anomaly_rate=anomalous / total,
                max_altitude=max_alt,
                min_altitude=0.0,
                max_velocity=max_vel,
                avg_altitude=5000.0,
                avg_velocity=600.0,
                stddev_altitude=1.0,
                stddev_velocity=1.0,
            )
        )
    write_deltalake(config.paths.anomaly_alerts, pa.Table.from_pylist(records, schema=schema), mode="append")


def slack_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("• ")]


def email_parts(message):
    return (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content())


ROWS = [
    (0, "France", 40, 12, 8, 5, 13150.0, 1104.4),  # 30%
    (0, "Spain", 10, 1, 1, 0, 12500.0, 800.0),  # exactly 10%: no alert
    (1, "Italy", 50, 2, 0, 2, 9000.0, 1010.0),  # 4%
    (1, "Germany", 8, 2, 2, 0, 12800.0, 850.0),  # 25%
    (2, "Belgium", 20, 3, 0, 3, 9500.0, 1050.0),  # 15%
    (2, "Spain", 30, 3, 3, 0, 12100.0, 700.0),  # exactly 10% again
]
# Worked out by hand from ROWS, by rate.
EXPECTED_SLACK = [
    "• *France* 2024-05-01 10:00–10:05 UTC: *30.0%* of 40 observations (altitude anomalies 8, "
    "velocity anomalies 5; max altitude 13,150 m, max velocity 1,104.4 km/h)",
    "• *Germany* 2024-05-01 10:01–10:06 UTC: *25.0%* of 8 observations (altitude anomalies 2, "
    "velocity anomalies 0; max altitude 12,800 m, max velocity 850.0 km/h)",
    "• *Belgium* 2024-05-01 10:02–10:07 UTC: *15.0%* of 20 observations (altitude anomalies 0, "
    "velocity anomalies 3; max altitude 9,500 m, max velocity 1,050.0 km/h)",
]
EXPECTED_EMAIL_ROWS = [
    ("France", "2024-05-01 10:00–10:05", "30.0%", "40", "8", "5", "13,150 m", "1,104.4 km/h"),
    ("Germany", "2024-05-01 10:01–10:06", "25.0%", "8", "2", "0", "12,800 m", "850.0 km/h"),
    ("Belgium", "2024-05-01 10:02–10:07", "15.0%", "20", "0", "3", "9,500 m", "1,050.0 km/h"),
]


# -- the DAG ------------------------------------------------------------------------------------


def test_dag_shape(env):
    dag = load_dag()
    assert dag.dag_id == "gold_anomaly_alerts"
    assert set(dag.tags) >= {"flight-gold", "alerts"}
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.timetable.expression == "*/5 * * * *"
    assert list(dag.task_dict) == [TASK_ID]
    assert dag.get_task(TASK_ID).retries == 2 and dag.get_task(TASK_ID).owner == "flight-gold"
    assert {k: dag.params[k] for k in ("threshold", "min_observations", "max_rows")} == {
        "threshold": 0.1,
        "min_observations": 1,
        "max_rows": 20,
    }
    assert "slack_alerts" in dag.doc_md and "smtp_alerts" in dag.doc_md


def test_schedule_and_defaults_come_from_the_environment(env, monkeypatch):
    monkeypatch.setenv("GOLD_ALERTS_SCHEDULE", "*/2 * * * *")
    monkeypatch.setenv("GOLD_ALERTS_THRESHOLD", "0.2")
    dag = load_dag()
    assert dag.timetable.expression == "*/2 * * * *"
    assert dag.params["threshold"] == 0.2


def test_one_email_and_one_slack_message_then_only_new_breaches(env, webhook, smtp):
    gold(env, ROWS)
    dag = load_dag()

    assert run(dag)[:2] == ("success", "success")
    assert len(webhook.requests) == 1 and len(smtp.messages) == 1
    request = webhook.requests[0]
    assert (request["path"], request["status"]) == ("/services/T000/B000/placeholder", 200)
    assert slack_lines(request["body"]["text"]) == EXPECTED_SLACK
    assert "Spain" not in request["body"]["text"] and "Italy" not in request["body"]["text"]
    assert (
        request["body"]["text"]
        .splitlines()[-1]
        .startswith(f"_Gold table {env.paths.anomaly_alerts}, version 0; gold_anomaly_alerts run manual__")
    )

    mail = smtp.messages[0]
    assert (mail["from"], mail["to"]) == (SENDER, RECIPIENTS)
    message = mail["message"]
    assert message["Subject"] == (
        "[Flight Gold] Anomaly alert: 3 windows with anomaly_rate above 10% (France, Germany, Belgium)"
    )
    assert message.get_content_type() == "multipart/alternative"
    text, page = email_parts(message)
    for row in EXPECTED_EMAIL_ROWS:
        assert (
            "<tr>"
            + "".join(
                f'<td style="text-align:{"left" if i < 2 else "right"}">{cell}</td>'
                for i, cell in enumerate(row)
            )
            + "</tr>"
            in page
        )
        assert any(line.split() == " ".join(row).split() for line in text.splitlines())
    assert page.count("<tr>") == 1 + 3 and "Spain" not in page and "Spain" not in text

    # Second run, no new Gold rows: nothing sent.
    state, _, _, value = run(dag)
    assert state == "success"
    assert value["breaches_found"] == 0 and value["breaches_sent"] == {"slack": 0, "email": 0}
    assert len(webhook.requests) == 1 and len(smtp.messages) == 1

    # A new breach (and a non-breach) appended: the third run sends only that one.
    gold(env, [(3, "Norway", 10, 3, 3, 0, 14000.0, 600.0), (3, "Spain", 10, 1, 1, 0, 12001.0, 600.0)])
    state, _, _, value = run(dag)
    assert state == "success"
    assert value["breaches_found"] == 1 and value["breaches_sent"] == {"slack": 1, "email": 1}
    assert len(webhook.requests) == 2 and len(smtp.messages) == 2
    assert "anomaly_alerts, version 1; " in webhook.requests[1]["body"]["text"]
    assert slack_lines(webhook.requests[1]["body"]["text"]) == [
        "• *Norway* 2024-05-01 10:03–10:08 UTC: *30.0%* of 10 observations (altitude anomalies 3, "
        "velocity anomalies 0; max altitude 14,000 m, max velocity 600.0 km/h)"
    ]
    text, page = email_parts(smtp.messages[1]["message"])
    assert page.count("<tr>") == 2 and ">Norway<" in page and "Norway" in text
    assert "France" not in page


def test_return_value_counts_found_and_sent(env):
    gold(env, ROWS)
    state, task_state, tries, value = run(load_dag())
    assert (state, task_state, tries) == ("success", "success", 1)
    assert value["breaches_found"] == 3
    assert value["breaches_sent"] == {"slack": 3, "email": 3}
    assert (value["gold_version_from"], value["gold_version_to"], value["read"]) == (None, 0, "snapshot")


def test_slack_500_fails_the_try_and_the_retry_sends_each_breach_once(env, webhook, smtp):
    gold(env, ROWS)
    ledger_path = Path(alerts.AlertSettings().ledger_location(env))
    # What the ledger says when each POST arrives.
    webhook.on_post = lambda: json.loads(ledger_path.read_text()) if ledger_path.exists() else None
    webhook.failures = 1

    state, task_state, tries, value = run(load_dag(retries=1))

    assert (state, task_state, tries) == ("success", "success", 2)
    assert [r["status"] for r in webhook.requests] == [500, 200]
    # When the retry posted, the failed try had recorded the email only, and no version.
    seen = webhook.requests[1]["seen"]
    assert seen["version"] is None and seen["sent_after_version"]["slack"] == []
    assert len(seen["sent_after_version"]["email"]) == 3
    # Slack got every breach exactly once, in the message that succeeded; email went out once.
    assert [slack_lines(text) for text in webhook.delivered()] == [EXPECTED_SLACK]
    assert len(smtp.messages) == 1
    assert value["breaches_sent"] == {"slack": 3, "email": 0}
    ledger = json.loads(ledger_path.read_text())
    assert (ledger["version"], ledger["sent_after_version"]) == (0, {})


def test_a_run_that_gives_up_leaves_the_marker_and_the_next_run_catches_up(env, webhook, smtp):
    gold(env, ROWS)
    ledger_path = Path(alerts.AlertSettings().ledger_location(env))
    webhook.failures = 1
    dag = load_dag(retries=0)

    state, task_state, _, _ = run(dag)
    assert (state, task_state) == ("failed", "failed")
    ledger = json.loads(ledger_path.read_text())
    assert ledger["version"] is None and ledger["sent_after_version"]["slack"] == []
    assert len(smtp.messages) == 1

    state, _, _, value = run(dag)
    assert state == "success"
    assert [slack_lines(text) for text in webhook.delivered()] == [EXPECTED_SLACK]
    assert len(smtp.messages) == 1
    assert value["breaches_sent"] == {"slack": 3, "email": 0}


def test_params_override_threshold_and_list_length(env, webhook, smtp):
    gold(env, ROWS)
    run(load_dag(), run_conf={"threshold": 0.2, "max_rows": 1})
    text = webhook.requests[0]["body"]["text"]
    assert slack_lines(text) == EXPECTED_SLACK[:1]
    assert "2 windows with anomaly_rate above 20%" in text and "_and 1 more_" in text
    _, page = email_parts(smtp.messages[0]["message"])
    assert page.count("<tr>") == 2 and "<p>and 1 more</p>" in page


def test_a_missing_channel_is_skipped_with_a_warning(env, monkeypatch, webhook, smtp, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_ALERTS")
    with caplog.at_level(logging.WARNING, logger="flight_gold.alerting"):
        channels = airflow_alerts.airflow_channels()
    assert [c.name for c in channels] == ["slack"]
    assert "email: no Airflow connection 'smtp_alerts'" in caplog.text

    gold(env, ROWS)
    state, _, _, value = run(load_dag())
    assert state == "success" and value["breaches_sent"] == {"slack": 3}
    assert len(webhook.requests) == 1 and smtp.messages == []


def test_recipients_missing_skips_email(env, monkeypatch, caplog):
    monkeypatch.delenv("ALERT_EMAIL_TO")
    with caplog.at_level(logging.WARNING, logger="flight_gold.alerting"):
        assert [c.name for c in airflow_alerts.airflow_channels()] == ["slack"]
    assert "email: ALERT_EMAIL_TO is empty" in caplog.text


def test_no_channel_at_all_is_a_configuration_error(env, monkeypatch, webhook, smtp):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_ALERTS")
    # A connection without a webhook URL, like the one the compose stack creates empty.
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "slackwebhook"}))
    with pytest.raises(alerts.AlertConfigError) as error:
        airflow_alerts.airflow_channels()
    assert str(error.value) == (
        "no alert channel is configured: Slack: connection 'slack_alerts' has no webhook URL "
        "(password field); email: no Airflow connection 'smtp_alerts' (see README, 'Anomaly alerts')"
    )

    gold(env, ROWS)
    state, task_state, _, _ = run(load_dag(retries=0))
    assert (state, task_state) == ("failed", "failed")
    assert webhook.requests == [] and smtp.messages == []
    assert not Path(alerts.AlertSettings().ledger_location(env)).exists()
