"""The alert messages: one Slack Incoming Webhook payload and one email (plain text and HTML)
listing the breaches, highest rate first."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flight_gold.airflow.defaults import ALERTS_DAG_ID as DAG_ID
from flight_gold.alerting.breaches import Breach, sort_breaches
from flight_gold.core.times import as_utc


@dataclass(frozen=True)
class AlertContext:
    """What a message says about where the breaches come from."""

    threshold: float
    min_observations: int
    max_rows: int
    gold_table: str
    versions: str  # "versions 3–7", "version 7"
    run_id: str | None = None


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def threshold_text(threshold: float) -> str:
    return f"{threshold * 100:g}%"


def window_text(start: datetime, end: datetime) -> str:
    """'2024-05-01 10:00–10:05' (UTC); the end's date is written only when it differs."""
    start, end = as_utc(start), as_utc(end)
    clock = "%H:%M:%S" if start.second or end.second else "%H:%M"
    end_format = clock if end.date() == start.date() else f"%Y-%m-%d {clock}"
    return f"{start.strftime('%Y-%m-%d ' + clock)}–{end.strftime(end_format)}"


def _metres(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} m"


def _kmh(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} km/h"


def _headline(count: int, context: AlertContext) -> str:
    windows = "window" if count == 1 else "windows"
    text = f"{count} {windows} with anomaly_rate above {threshold_text(context.threshold)}"
    if context.min_observations > 1:
        text += f" (at least {context.min_observations} observations)"
    return text


def _source(context: AlertContext) -> str:
    text = f"Gold table {context.gold_table}, {context.versions}"
    return text + (f"; {DAG_ID} run {context.run_id}" if context.run_id else "")


def _more(hidden: int) -> str:
    return f"and {hidden} more"


def format_slack(breaches: Sequence[Breach], context: AlertContext) -> dict[str, Any]:
    """The Incoming Webhook payload: one mrkdwn text, one line per breach."""
    ordered = sort_breaches(breaches)
    shown = ordered[: context.max_rows]
    lines = [f":rotating_light: *Flight anomaly alert*: {_headline(len(ordered), context)}"]
    for b in shown:
        lines.append(
            f"• *{_slack_escape(b.origin_country)}* {window_text(b.window_start, b.window_end)} UTC: "
            f"*{percent(b.anomaly_rate)}* of {b.total_observations:,} observations "
            f"(altitude anomalies {b.altitude_anomalies:,}, velocity anomalies {b.velocity_anomalies:,}; "
            f"max altitude {_metres(b.max_altitude)}, max velocity {_kmh(b.max_velocity)})"
        )
    if len(ordered) > len(shown):
        lines.append(f"_{_more(len(ordered) - len(shown))}_")
    lines.append(f"_{_slack_escape(_source(context))}_")
    return {"text": "\n".join(lines)}


def _slack_escape(text: str) -> str:
    # The three characters Slack's mrkdwn reserves for links and mentions.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


EMAIL_COLUMNS = (
    "Country",
    "Window (UTC)",
    "Anomaly rate",
    "Observations",
    "Altitude anomalies",
    "Velocity anomalies",
    "Max altitude",
    "Max velocity",
)
_RIGHT_ALIGNED = {
    "Anomaly rate",
    "Observations",
    "Altitude anomalies",
    "Velocity anomalies",
    "Max altitude",
    "Max velocity",
}


def _email_cells(b: Breach) -> tuple[str, ...]:
    return (
        b.origin_country,
        window_text(b.window_start, b.window_end),
        percent(b.anomaly_rate),
        f"{b.total_observations:,}",
        f"{b.altitude_anomalies:,}",
        f"{b.velocity_anomalies:,}",
        _metres(b.max_altitude),
        _kmh(b.max_velocity),
    )


def format_email(breaches: Sequence[Breach], context: AlertContext) -> EmailContent:
    ordered = sort_breaches(breaches)
    shown = ordered[: context.max_rows]
    hidden = len(ordered) - len(shown)
    countries = list(dict.fromkeys(b.origin_country for b in ordered))
    named = ", ".join(countries[:3]) + (f" and {len(countries) - 3} more" if len(countries) > 3 else "")
    subject = f"[Flight Gold] Anomaly alert: {_headline(len(ordered), context)} ({named})"
    headline = f"Flight anomaly alert: {_headline(len(ordered), context)}."

    rows = [EMAIL_COLUMNS, *(_email_cells(b) for b in shown)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(EMAIL_COLUMNS))]
    table_lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if name in _RIGHT_ALIGNED else cell.ljust(width)
            for cell, width, name in zip(row, widths, EMAIL_COLUMNS)
        ]
        table_lines.append("  ".join(cells).rstrip())
    text_parts = [headline, "", *table_lines]
    if hidden:
        text_parts += ["", _more(hidden)]
    text_parts += ["", _source(context), ""]
    text = "\n".join(text_parts)

    head = "".join(
        f'<th style="text-align:{"right" if n in _RIGHT_ALIGNED else "left"}">{html.escape(n)}</th>'
        for n in EMAIL_COLUMNS
    )
    body_rows = []
    for b in shown:
        cells = "".join(
            f'<td style="text-align:{"right" if n in _RIGHT_ALIGNED else "left"}">{html.escape(cell)}</td>'
            for cell, n in zip(_email_cells(b), EMAIL_COLUMNS)
        )
        body_rows.append(f"<tr>{cells}</tr>")
    more = f"<p>{html.escape(_more(hidden))}</p>\n" if hidden else ""
    page = (
        '<html><body style="font-family: sans-serif">\n'
        f"<p><strong>{html.escape(headline)}</strong></p>\n"
        '<table border="1" cellpadding="4" cellspacing="0" style="border-collapse: collapse">\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body_rows) + "\n</tbody>\n</table>\n"
        f'{more}<p style="color: #666">{html.escape(_source(context))}</p>\n</body></html>\n'
    )
    return EmailContent(subject=subject, text=text, html=page)
