"""The freshness alert: one message per incident and channel when Gold falls behind, one
"resolved" message when it is fresh again.

Gold is stale when a Gold table lags what Silver_ML's data closes by more than the threshold
(flight_gold.supervision.freshness), or when Silver_ML's version grew since the previous check
while no `run_gold_streams` task is running (a stopped stream falls behind before any lag shows).

The ledger `<root>/_alerts/gold_freshness.json` keeps Silver_ML's version at the last check and
the open incident with the channels that received it; a channel that failed is retried by the
next check (or the task's retry) without sending the others anything twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flight_gold.airflow.defaults import STREAMING_DAG_ID
from flight_gold.alerting.settings import AlertDeliveryError
from flight_gold.core.config import GoldConfig
from flight_gold.core.intervals import duration_seconds
from flight_gold.core.times import iso, parse_iso, utcnow
from flight_gold.lake.documents import DocumentStore
from flight_gold.supervision.events import Notice, TextChannel, notice_html
from flight_gold.supervision.freshness import Freshness, measure

log = logging.getLogger(__name__)

LEDGER_FILE = "gold_freshness.json"
LEDGER_FORMAT = 1
NOT_RUNNING = "stream_not_running"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _hhmm(value: str | None) -> str:
    return parse_iso(value).strftime("%Y-%m-%d %H:%M") if value else "none"


def stale_reasons(fresh: Freshness, previous_silver_version: int | None, stream_running: bool) -> list[str]:
    reasons = []
    for t in fresh.stale_tables:
        reasons.append(
            f"{t.table}: newest window ends {_hhmm(iso(t.newest_window_end))} UTC, Silver_ML's data "
            f"closes windows up to {_hhmm(iso(t.expected_window_end))} UTC: {_minutes(t.behind_s)} "
            f"behind (threshold {_minutes(fresh.threshold_s)})"
        )
    grew = (
        previous_silver_version is not None
        and fresh.silver_version is not None
        and fresh.silver_version > previous_silver_version
    )
    if grew and not stream_running:
        reasons.append(
            f"no {STREAMING_DAG_ID} stream is running while Silver_ML grew "
            f"(version {previous_silver_version} -> {fresh.silver_version} since the last check)"
        )
    return reasons


def alert_notice(reasons: Sequence[str], opened_at: datetime) -> Notice:
    subject = "[Flight Gold] Gold is falling behind Silver_ML"
    lines = [
        f"Since {opened_at.strftime('%Y-%m-%d %H:%M')} UTC:",
        *[f"- {r}" for r in reasons],
        f"Next: check the {STREAMING_DAG_ID} run in Airflow and the Flight Gold page (stream health); "
        f"trigger {STREAMING_DAG_ID} if no stream is running. You get one message when Gold is "
        "fresh again.",
    ]
    return Notice(subject, "\n".join([subject, *lines]), notice_html(subject, lines))


def resolved_notice(fresh: Freshness, opened_at: datetime, now: datetime) -> Notice:
    subject = "[Flight Gold] Gold is fresh again"
    lines = [
        f"Gold caught up with Silver_ML at {now.strftime('%Y-%m-%d %H:%M')} UTC, after "
        f"{_minutes((now - opened_at).total_seconds())} behind (since {opened_at.strftime('%H:%M')} UTC).",
        *[
            f"- {t.table}: newest window ends {_hhmm(iso(t.newest_window_end))} UTC"
            for t in fresh.tables
            if t.exists
        ],
    ]
    return Notice(subject, "\n".join([subject, *lines]), notice_html(subject, lines))


class FreshnessLedger:
    def __init__(self, config: GoldConfig, uri: str | None = None):
        self.uri = uri or config.paths.alerts(LEDGER_FILE)
        self._store = DocumentStore(self.uri, config)

    def load(self) -> dict[str, Any]:
        text = self._store.read_text()
        if text is None:
            return {"format": LEDGER_FORMAT, "silver_version": None, "incident": None}
        try:
            doc = json.loads(text)
            if doc.get("format") != LEDGER_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            return doc
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"freshness ledger {self.uri} is unreadable ({exc}): fix it or delete it"
            ) from None

    def save(self, doc: dict[str, Any]) -> None:
        self._store.write_json(doc)


def run_freshness_check(
    config: GoldConfig,
    channels: Sequence[TextChannel],
    stream_running: bool,
    now: datetime | None = None,
    threshold_s: float | None = None,
) -> dict[str, Any]:
    """One check: measures Gold's lag, opens, keeps or resolves the incident, and sends what each
    channel has not received yet. Raises AlertDeliveryError when a channel failed (after the
    ledger recorded what the others got)."""
    now = now or utcnow()
    threshold = duration_seconds(config.freshness_threshold) if threshold_s is None else threshold_s
    ledger = FreshnessLedger(config)
    doc = ledger.load()
    fresh = measure(config, threshold, now)
    reasons = stale_reasons(fresh, doc.get("silver_version"), stream_running)
    incident = doc.get("incident")
    sent: dict[str, str] = {}
    failures: dict[str, Exception] = {}

    if reasons and (incident is None or incident.get("resolved_at")):
        incident = {"opened_at": iso(now), "reasons": reasons, "alerted": [], "resolved_at": None}
        incident["resolved"] = []
    if incident is not None and reasons:
        incident["reasons"] = reasons
        notice = alert_notice(reasons, parse_iso(incident["opened_at"]))
        _deliver(channels, incident["alerted"], notice, "alert", sent, failures)
    elif incident is not None:
        incident["resolved_at"] = incident.get("resolved_at") or iso(now)
        notice = resolved_notice(fresh, parse_iso(incident["opened_at"]), parse_iso(incident["resolved_at"]))
        # Only the channels that were told about the incident hear that it is over.
        targets = [c for c in channels if c.name in incident["alerted"]]
        _deliver(targets, incident["resolved"], notice, "resolved", sent, failures)
        if set(incident["resolved"]) >= {c.name for c in targets}:
            incident = None

    doc.update(
        format=LEDGER_FORMAT,
        silver_version=fresh.silver_version,
        incident=incident,
        checked_at=iso(now),
        last_check=fresh.to_dict(),
        stream_running=stream_running,
    )
    ledger.save(doc)
    result = {
        "stale": bool(reasons),
        "reasons": reasons,
        "sent": sent,
        "incident_open": incident is not None,
        "freshness": fresh.to_dict(),
        "ledger": ledger.uri,
    }
    log.info("freshness: %s", json.dumps({k: result[k] for k in ("stale", "reasons", "sent")}))
    if failures:
        detail = "; ".join(f"{name}: {exc}" for name, exc in failures.items())
        raise AlertDeliveryError(
            f"{len(failures)} channel(s) failed ({detail}); the next check sends them what they lack"
        ) from next(iter(failures.values()))
    return result


def _deliver(
    channels: Sequence[TextChannel],
    done: list[str],
    notice: Notice,
    kind: str,
    sent: dict[str, str],
    failures: dict[str, Exception],
) -> None:
    for channel in channels:
        if channel.name in done:
            continue
        try:
            channel.send(notice)
        except Exception as exc:
            log.error("sending the freshness %s to %s failed: %s", kind, channel.name, exc)
            failures[channel.name] = exc
            continue
        done.append(channel.name)
        sent[channel.name] = kind
