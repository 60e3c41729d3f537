"""What the supervisor of the Gold stream tells people, and how often.

Each event (an unplanned stop, a restart after one, a give-up, a lost task started again) makes
one message per channel (Slack, email): which DAG and run, what happened (the job's last error
line), what happens next. A restart storm does not flood: a channel gets at most one message per
`interval_s`; the events in between are counted and summarised in its next message ("and 6 more
events since 10:32: 3 unplanned stops, 3 restarts"), and `flush` sends the summary on its own
once the interval has passed. The throttle's state is a document beside the lakehouse
(`_control/gold_streaming_alerts.json`), so that it survives a restart of the task.

No Airflow here: a channel is anything with a `name` and `send(Notice)`.
"""

from __future__ import annotations

import html
import json
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flight_gold.core.config import GoldConfig
from flight_gold.core.errors import EXIT_BAD_INPUT, EXIT_CHECKPOINT_IN_USE, EXIT_OK, EXIT_QUERY_FAILED
from flight_gold.core.times import iso, parse_iso, utcnow
from flight_gold.lake.documents import DocumentStore

log = logging.getLogger(__name__)

THROTTLE_FILE = "gold_streaming_alerts.json"
THROTTLE_FORMAT = 1

UNPLANNED_STOP, RESTART, GAVE_UP, TASK_RESTARTED = "unplanned_stop", "restart", "gave_up", "task_restarted"
KINDS = {
    UNPLANNED_STOP: ("unplanned stop", "unplanned stops"),
    RESTART: ("restart", "restarts"),
    GAVE_UP: ("give-up", "give-ups"),
    TASK_RESTARTED: ("task restart", "task restarts"),
}


@dataclass(frozen=True)
class StreamEvent:
    kind: str
    at: datetime
    dag_id: str
    run_id: str | None
    headline: str  # a few words: the subject of the message
    what: str  # what happened, with the job's last error line
    next_step: str  # what happens next, and what to do if anything

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": iso(self.at),
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "headline": self.headline,
            "what": self.what,
            "next_step": self.next_step,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> StreamEvent:
        return cls(**{**doc, "at": parse_iso(doc["at"])})


@dataclass(frozen=True)
class Notice:
    """One message, in the forms the channels send."""

    subject: str
    text: str
    html: str

    @property
    def slack(self) -> dict[str, Any]:
        return {"text": self.text}


class TextChannel(Protocol):
    name: str

    def send(self, notice: Notice) -> None:
        """Delivers the message, or raises."""


# -- events ---------------------------------------------------------------------------------------


def exit_text(exit_code: int | None) -> str:
    """How a job ended, in words: 'killed by SIGKILL (exit code -9)'."""
    if exit_code is None:
        return "ended (exit code unknown)"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"was killed by {name} (exit code {exit_code})"
    if exit_code > 128 and exit_code - 128 in {s.value for s in signal.Signals}:
        return f"was killed by {signal.Signals(exit_code - 128).name} (exit code {exit_code})"
    meaning = {
        EXIT_OK: "exit code 0 although no stop was asked for",
        EXIT_QUERY_FAILED: "exit code 1: a query failed",
        EXIT_BAD_INPUT: "exit code 2: bad input or configuration",
        EXIT_CHECKPOINT_IN_USE: "exit code 3: another running instance holds the checkpoint",
    }
    return "ended with " + meaning.get(exit_code, f"exit code {exit_code}")


def _with_reason(text: str, reason: str | None) -> str:
    return f"{text}. Last error: {reason}" if reason else f"{text}."


def unplanned_stop(
    dag_id: str, run_id: str | None, exit_code: int | None, reason: str | None, delay_s: float, at: datetime
) -> StreamEvent:
    return StreamEvent(
        UNPLANNED_STOP,
        at,
        dag_id,
        run_id,
        f"the stream stopped unexpectedly; restarting in {delay_s:g} s",
        _with_reason(f"The Spark job {exit_text(exit_code)} without being asked to stop", reason),
        f"It starts again in {delay_s:g} s and resumes from its checkpoints: no window is lost or "
        "written twice. Nothing to do unless this repeats; the Flight Gold page shows the restarts.",
    )


def restarted(dag_id: str, run_id: str | None, restarts_24h: int, at: datetime) -> StreamEvent:
    return StreamEvent(
        RESTART,
        at,
        dag_id,
        run_id,
        "the stream was started again",
        f"The Spark job was started again after an unplanned stop ({restarts_24h} in the last 24 h).",
        "It resumes from its checkpoints. Nothing to do.",
    )


def gave_up(
    dag_id: str, run_id: str | None, exit_code: int | None, reason: str | None, at: datetime
) -> StreamEvent:
    if exit_code == EXIT_CHECKPOINT_IN_USE:
        todo = (
            "Not restarted: two jobs must never share a checkpoint. Find the other instance (the "
            "error names its pid and host); to run this one instead, stop the other first (DAG "
            "gold_streaming_stop), then trigger gold_streaming again."
        )
    else:
        todo = (
            "Not restarted: a restart would fail the same way. Fix what the error names (Silver_ML, "
            "a setting, a checkpoint), then trigger gold_streaming again."
        )
    return StreamEvent(
        GAVE_UP,
        at,
        dag_id,
        run_id,
        "the stream gave up and needs you",
        _with_reason(f"The Spark job {exit_text(exit_code)}", reason),
        todo,
    )


def task_restarted(dag_id: str, run_id: str | None, try_number: int, at: datetime) -> StreamEvent:
    return StreamEvent(
        TASK_RESTARTED,
        at,
        dag_id,
        run_id,
        "the stream was restarted after its task was lost",
        f"The supervising task run_gold_streams was lost (a scheduler or worker restart, an "
        f"upgrade, an API server outage) and Airflow started it again (try {try_number}).",
        "The job resumes from its checkpoints. Nothing to do unless this repeats.",
    )


# -- messages -------------------------------------------------------------------------------------


def count_text(counts: dict[str, int]) -> str:
    parts = []
    for kind, (one, many) in KINDS.items():
        n = counts.get(kind, 0)
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts)


def _clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _summary_line(pending: dict[str, Any] | None) -> str | None:
    if not pending:
        return None
    total = sum(pending["counts"].values())
    since = parse_iso(pending["since"]).strftime("%H:%M")
    events_word = "event" if total == 1 else "events"
    return f"And {total} more {events_word} since {since} UTC: {count_text(pending['counts'])}."


def compose(event: StreamEvent, pending: dict[str, Any] | None = None) -> Notice:
    """The message of one event, with the summary of the events held back before it."""
    where = f"{event.dag_id}" + (f" · run {event.run_id}" if event.run_id else "") + f" · {_clock(event.at)}"
    lines = [where, f"What happened: {event.what}", f"Next: {event.next_step}"]
    summary = _summary_line(pending)
    if summary:
        lines.append(summary)
    subject = f"[Flight Gold] {event.dag_id}: {event.headline}"
    return Notice(subject, "\n".join([subject, *lines]), notice_html(subject, lines))


def compose_summary(pending: dict[str, Any]) -> Notice:
    """The message that sends a held-back summary on its own, ending with the latest event."""
    last = StreamEvent.from_dict(pending["last"])
    total = sum(pending["counts"].values())
    since = parse_iso(pending["since"]).strftime("%H:%M")
    subject = (
        f"[Flight Gold] {last.dag_id}: {total} event{'s' if total != 1 else ''} since {since} UTC "
        f"({count_text(pending['counts'])})"
    )
    lines = [
        f"{last.dag_id}" + (f" · run {last.run_id}" if last.run_id else ""),
        f"Latest, {_clock(last.at)}: {last.headline}. {last.what}",
        f"Next: {last.next_step}",
    ]
    return Notice(subject, "\n".join([subject, *lines]), notice_html(subject, lines))


def notice_html(subject: str, lines: Sequence[str]) -> str:
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f"<html><body><h3>{html.escape(subject)}</h3>{body}</body></html>"


# -- the throttle ---------------------------------------------------------------------------------


class StreamNotifier:
    """Sends each event to every channel, at most one message per channel per `interval_s`
    (0: no limit), summarising the events held back. A failed send is logged and its event held
    back like a throttled one, to go out with the next message: alerts never stop the stream."""

    def __init__(self, config: GoldConfig, channels: Sequence[TextChannel], interval_s: float):
        self.channels = list(channels)
        self.interval = timedelta(seconds=interval_s)
        self.uri = config.paths.control(THROTTLE_FILE)
        self._store = DocumentStore(self.uri, config)

    def notify(self, event: StreamEvent, now: datetime | None = None) -> dict[str, str]:
        """What became of the event on each channel: 'sent', 'held' or 'failed'."""
        now = now or event.at
        state = self._load()
        outcome = {}
        for channel in self.channels:
            entry = state.setdefault(channel.name, {"last_sent_at": None, "pending": None})
            if self._due(entry, now):
                outcome[channel.name] = self._send(channel, entry, compose(event, entry["pending"]), now)
                if outcome[channel.name] == "sent":
                    continue
            else:
                outcome[channel.name] = "held"
            entry["pending"] = _hold(entry["pending"], event)
        self._save(state)
        return outcome

    def flush(self, now: datetime | None = None) -> dict[str, str]:
        """Sends each channel's held-back summary once its interval has passed."""
        now = now or utcnow()
        state = self._load()
        outcome = {}
        for channel in self.channels:
            entry = state.get(channel.name)
            if entry and entry.get("pending") and self._due(entry, now):
                outcome[channel.name] = self._send(channel, entry, compose_summary(entry["pending"]), now)
        if outcome:
            self._save(state)
        return outcome

    def pending(self) -> dict[str, dict[str, Any] | None]:
        return {name: entry.get("pending") for name, entry in self._load().items()}

    def _due(self, entry: dict[str, Any], now: datetime) -> bool:
        last = entry.get("last_sent_at")
        return not self.interval or last is None or now - parse_iso(last) >= self.interval

    def _send(self, channel: TextChannel, entry: dict[str, Any], notice: Notice, now: datetime) -> str:
        try:
            channel.send(notice)
        except Exception as exc:
            log.warning("could not send %r to %s: %s", notice.subject, channel.name, exc)
            return "failed"
        log.info("sent to %s: %s", channel.name, notice.subject)
        entry["last_sent_at"], entry["pending"] = iso(now), None
        return "sent"

    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self._store.read_text() or "{}")
            return dict(doc.get("channels") or {}) if doc.get("format") == THROTTLE_FORMAT else {}
        except (ValueError, TypeError, AttributeError, OSError) as exc:
            log.warning("alert throttle state %s unreadable (%s): starting afresh", self.uri, exc)
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        try:
            self._store.write_json({"format": THROTTLE_FORMAT, "channels": state})
        except OSError as exc:
            log.warning("could not save the alert throttle state %s: %s", self.uri, exc)


def _hold(pending: dict[str, Any] | None, event: StreamEvent) -> dict[str, Any]:
    pending = pending or {"since": iso(event.at), "counts": {}}
    pending["counts"][event.kind] = pending["counts"].get(event.kind, 0) + 1
    pending["last"] = event.to_dict()
    return pending
