"""The Airflow side of the alerts: the channels (one Slack Incoming Webhook message and one email
per send, through the Slack and SMTP providers' hooks and the connections `slack_alerts` and
`smtp_alerts`), the task of `gold_anomaly_alerts`, and the plain-text channels that the stream's
supervisor and the freshness check send through (flight_gold.supervision)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flight_gold.alerting.breaches import Breach
from flight_gold.alerting.check import Channel
from flight_gold.alerting.messages import AlertContext, format_email, format_slack
from flight_gold.alerting.settings import (
    EMAIL,
    EMAIL_FROM_ENV,
    EMAIL_TO_ENV,
    SLACK,
    SLACK_CONN_ID,
    SMTP_CONN_ID,
    AlertConfigError,
    email_recipients,
)

log = logging.getLogger(__name__)


@dataclass
class SlackChannel:
    """One Incoming Webhook message through the Slack provider's hook."""

    conn_id: str = SLACK_CONN_ID
    name: str = SLACK

    def send(self, breaches: Sequence[Breach], context: AlertContext) -> None:
        send_slack(self.conn_id, format_slack(breaches, context))


@dataclass
class EmailChannel:
    """One email (plain text and HTML alternatives) through the SMTP provider's hook."""

    recipients: list[str]
    conn_id: str = SMTP_CONN_ID
    name: str = EMAIL

    def send(self, breaches: Sequence[Breach], context: AlertContext) -> None:
        content = format_email(breaches, context)
        send_email(self.conn_id, self.recipients, content.subject, content.text, content.html)


def send_slack(conn_id: str, payload: dict) -> None:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    # The hook raises on any status other than 200.
    SlackWebhookHook(slack_webhook_conn_id=conn_id).send_dict(payload)


def send_email(conn_id: str, recipients: Sequence[str], subject: str, text: str, html: str) -> None:
    """One email with plain-text and HTML alternatives through the SMTP provider's hook."""
    hook_class = _alternative_smtp_hook(text)
    with hook_class(smtp_conn_id=conn_id) as hook:
        from_email = hook.from_email or os.environ.get(EMAIL_FROM_ENV) or _airflow_from_email()
        if not from_email:
            raise AlertConfigError(
                f"no sender address: set from_email in the extra of connection {conn_id!r} "
                f"or the environment variable {EMAIL_FROM_ENV}"
            )
        hook.send_email_smtp(
            to=list(recipients),
            subject=subject,
            html_content=html,
            from_email=from_email,
            mime_subtype="alternative",
        )


@dataclass
class SlackTextChannel:
    """A plain message (flight_gold.supervision's Notice) to the Slack webhook."""

    conn_id: str = SLACK_CONN_ID
    name: str = SLACK

    def send(self, notice) -> None:
        send_slack(self.conn_id, notice.slack)


@dataclass
class EmailTextChannel:
    recipients: list[str]
    conn_id: str = SMTP_CONN_ID
    name: str = EMAIL

    def send(self, notice) -> None:
        send_email(self.conn_id, self.recipients, notice.subject, notice.text, notice.html)


def _alternative_smtp_hook(text: str):
    from email.mime.text import MIMEText

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class AlternativeSmtpHook(SmtpHook):
        # The provider builds an HTML-only message; a plain-text alternative goes before the HTML
        # part (the last alternative is the preferred one). tests/airflow checks both parts
        # arrive, so a provider change that breaks this fails there.
        def _build_mime_message(self, *args, **kwargs):
            message, recipients = super()._build_mime_message(*args, **kwargs)
            message.set_payload([MIMEText(text, "plain", "utf-8"), *message.get_payload()])
            return message, recipients

    return AlternativeSmtpHook


def _airflow_from_email() -> str | None:
    try:
        from airflow.configuration import conf

        return conf.get("email", "from_email", fallback=None)
    except Exception:
        return None


def airflow_channels(env: Mapping[str, str] | None = None, text: bool = False) -> list[Channel]:
    """The channels whose Airflow connection (and, for email, recipients) are set. A missing one
    is skipped with a warning; none at all is a configuration error. `text`: the plain-message
    channels (SlackTextChannel, EmailTextChannel) instead of the breach-list ones."""
    channels: list = []
    problems: list[str] = []

    slack = _connection(SLACK_CONN_ID)
    if slack is None:
        problems.append(f"Slack: no Airflow connection {SLACK_CONN_ID!r}")
    elif not (slack.password or "").strip():
        problems.append(f"Slack: connection {SLACK_CONN_ID!r} has no webhook URL (password field)")
    else:
        channels.append(SlackTextChannel() if text else SlackChannel())

    smtp = _connection(SMTP_CONN_ID)
    recipients = email_recipients(env)
    if smtp is None:
        problems.append(f"email: no Airflow connection {SMTP_CONN_ID!r}")
    elif not (smtp.host or "").strip():
        problems.append(f"email: connection {SMTP_CONN_ID!r} has no host")
    if not recipients:
        problems.append(f"email: {EMAIL_TO_ENV} is empty")
    if smtp is not None and (smtp.host or "").strip() and recipients:
        channels.append(EmailTextChannel(recipients) if text else EmailChannel(recipients=recipients))

    if not channels:
        raise AlertConfigError(
            "no alert channel is configured: " + "; ".join(problems) + " (see README, 'Anomaly alerts')"
        )
    for problem in problems:
        log.warning("Alert channel skipped: %s", problem)
    return channels


def _connection(conn_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def check_and_alert(params: Mapping | None = None, run_id: str | None = None) -> dict:
    """The task of `gold_anomaly_alerts`: one check with the environment's settings, the run's
    params over them, and the channels whose connections are set."""
    from flight_gold.alerting.check import run_check
    from flight_gold.alerting.settings import AlertSettings
    from flight_gold.core.config import GoldConfig

    settings = AlertSettings.from_env().with_params(params)
    return run_check(GoldConfig.from_env(), settings, airflow_channels(), run_id=run_id)


def stream_channels(env: Mapping[str, str] | None = None) -> list:
    """The plain-message channels for the stream's own events; none configured is a warning, not
    an error: the stream must run whether or not anyone is told about it."""
    try:
        return airflow_channels(env, text=True)
    except AlertConfigError as exc:
        log.warning("Stream notifications go nowhere: %s", exc)
        return []
