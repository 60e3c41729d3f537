"""Anomaly-rate alerts on the Gold table `anomaly_alerts`: find the windows whose anomaly_rate is
above a threshold and send each one, exactly once, to Slack and by email.

Everything here runs without Airflow except the two channel classes at the bottom, which import
the Slack and SMTP providers only when they are used; the DAG `gold_anomaly_alerts` is the thin
wiring around `run_check`.

How "each breach once" holds:

- The Gold table is append-only (Spark's append output mode writes a window once, when the
  watermark passes its end). The ledger keeps `version`: every breach in Gold commits up to that
  version has been delivered on every channel. A run reads only the rows added after it, with the
  Delta change feed of `deltalake` (`load_cdf`), which on a table without CDF enabled returns the
  rows of the files appended with dataChange=true: OPTIMIZE's rewritten files are not new rows and
  do not come back.
- Delivery is tracked per channel. `sent_after_version` holds, for each channel, the breaches it
  already received from commits after `version`; it is written as soon as a channel succeeded.
  `version` moves forward (and `sent_after_version` empties) only once every configured channel
  has everything. A channel that failed makes the run fail, and the retry sends it what it still
  lacks while the other channel, already served, sends nothing again.
- When the commits after `version` cannot be read any more (VACUUM removed their files, the log
  was cleaned up, or the table was recreated), the run falls back to the current snapshot and
  keeps the windows ending after `max_window_end`, the latest window end seen so far: append mode
  writes windows in the order of their end, so those are the ones not yet seen.

The ledger is a small JSON file beside the lakehouse tables (`<root>/_alerts/...`, local or S3),
rewritten atomically; `cat` shows where alerting stands.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, NamedTuple, Protocol, Sequence

from flight_gold.config import ConfigError, GoldConfig
from flight_gold.paths import join

log = logging.getLogger(__name__)

DAG_ID = "gold_anomaly_alerts"
SLACK_CONN_ID = "slack_alerts"
SMTP_CONN_ID = "smtp_alerts"
EMAIL_TO_ENV = "ALERT_EMAIL_TO"
EMAIL_FROM_ENV = "ALERT_EMAIL_FROM"
SCHEDULE_ENV = "GOLD_ALERTS_SCHEDULE"
THRESHOLD_ENV = "GOLD_ALERTS_THRESHOLD"
MIN_OBSERVATIONS_ENV = "GOLD_ALERTS_MIN_OBSERVATIONS"
MAX_ROWS_ENV = "GOLD_ALERTS_MAX_ROWS"
LEDGER_ENV = "GOLD_ALERTS_LEDGER"

DEFAULT_SCHEDULE = "*/5 * * * *"
DEFAULT_THRESHOLD = 0.1
DEFAULT_MIN_OBSERVATIONS = 1
DEFAULT_MAX_ROWS = 20
# Keeps a Slack message far below its 40,000-character limit.
MAX_ROWS_LIMIT = 100
LEDGER_RELATIVE_PATH = "_alerts/gold_anomaly_alerts.json"
LEDGER_FORMAT = 1

SLACK = "slack"
EMAIL = "email"

KEY_COLUMNS = ("window_start", "window_end", "origin_country")
ALERT_COLUMNS = (*KEY_COLUMNS, "total_observations", "altitude_anomalies", "velocity_anomalies",
                 "anomaly_rate", "max_altitude", "max_velocity")


class AlertConfigError(ConfigError):
    """The alert settings or channels are missing or malformed; the message says which."""


class AlertDeliveryError(RuntimeError):
    """At least one channel failed to send; the ledger kept what the others delivered."""


class LedgerError(RuntimeError):
    """The ledger file exists but cannot be understood."""


# -- settings -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertSettings:
    threshold: float = DEFAULT_THRESHOLD
    min_observations: int = DEFAULT_MIN_OBSERVATIONS
    max_rows: int = DEFAULT_MAX_ROWS
    # None: <lakehouse root>/_alerts/gold_anomaly_alerts.json
    ledger_uri: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0 <= self.threshold < 1:
            raise AlertConfigError(
                f"threshold must be a fraction in [0, 1) (0.1 means 10%), got {self.threshold!r}")
        if isinstance(self.min_observations, bool) or not isinstance(self.min_observations, int) \
                or self.min_observations < 1:
            raise AlertConfigError(f"min_observations must be an integer >= 1, got {self.min_observations!r}")
        if isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int) \
                or not 1 <= self.max_rows <= MAX_ROWS_LIMIT:
            raise AlertConfigError(
                f"max_rows must be an integer in [1, {MAX_ROWS_LIMIT}], got {self.max_rows!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AlertSettings":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get(THRESHOLD_ENV, "").strip():
            values["threshold"] = _number(env[THRESHOLD_ENV], THRESHOLD_ENV)
        if env.get(MIN_OBSERVATIONS_ENV, "").strip():
            values["min_observations"] = _integer(env[MIN_OBSERVATIONS_ENV], MIN_OBSERVATIONS_ENV)
        if env.get(MAX_ROWS_ENV, "").strip():
            values["max_rows"] = _integer(env[MAX_ROWS_ENV], MAX_ROWS_ENV)
        if env.get(LEDGER_ENV, "").strip():
            values["ledger_uri"] = env[LEDGER_ENV].strip()
        try:
            return cls(**values)
        except AlertConfigError as exc:
            raise AlertConfigError(f"{exc} (from the environment: {THRESHOLD_ENV}, "
                                   f"{MIN_OBSERVATIONS_ENV}, {MAX_ROWS_ENV})") from None

    def with_params(self, params: Mapping[str, Any] | None) -> "AlertSettings":
        """The DAG run's params (threshold, min_observations, max_rows) over these settings."""
        params = params or {}
        changes: dict[str, Any] = {}
        if params.get("threshold") is not None:
            changes["threshold"] = _number(params["threshold"], "param threshold")
        for name in ("min_observations", "max_rows"):
            if params.get(name) is not None:
                changes[name] = _integer(params[name], f"param {name}")
        return replace(self, **changes)

    def ledger_location(self, config: GoldConfig) -> str:
        return self.ledger_uri or join(config.lakehouse_root, LEDGER_RELATIVE_PATH)


def schedule_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(SCHEDULE_ENV, "").strip() or DEFAULT_SCHEDULE


def email_recipients(env: Mapping[str, str] | None = None) -> list[str]:
    """ALERT_EMAIL_TO, comma-separated; [] when unset."""
    env = os.environ if env is None else env
    recipients = [item.strip() for item in env.get(EMAIL_TO_ENV, "").split(",") if item.strip()]
    bad = [item for item in recipients if not re.fullmatch(r"[^@\s]+@[^@\s]+", item)]
    if bad:
        raise AlertConfigError(f"{EMAIL_TO_ENV} holds something that is not an email address: {bad[0]!r}")
    return recipients


def _number(raw: Any, name: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise AlertConfigError(f"{name} must be a number, got {raw!r}") from None


def _integer(raw: Any, name: str) -> int:
    try:
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        return int(str(raw).strip())
    except (TypeError, ValueError):
        raise AlertConfigError(f"{name} must be an integer, got {raw!r}") from None


# -- breaches -----------------------------------------------------------------------------------

class BreachKey(NamedTuple):
    """What "alerted once" is about: one window of one country."""
    window_start: datetime
    window_end: datetime
    origin_country: str

    def to_json(self) -> list[str]:
        return [iso(self.window_start), iso(self.window_end), self.origin_country]

    @classmethod
    def from_json(cls, item: Sequence[str]) -> "BreachKey":
        start, end, country = item
        return cls(parse_iso(start), parse_iso(end), str(country))


@dataclass(frozen=True)
class Breach:
    window_start: datetime
    window_end: datetime
    origin_country: str
    total_observations: int
    altitude_anomalies: int
    velocity_anomalies: int
    anomaly_rate: float
    max_altitude: float | None
    max_velocity: float | None

    @property
    def key(self) -> BreachKey:
        return BreachKey(self.window_start, self.window_end, self.origin_country)


def sort_breaches(breaches: Iterable[Breach]) -> list[Breach]:
    """Highest rate first; ties by window, then country, so that a message is reproducible."""
    return sorted(breaches, key=lambda b: (-b.anomaly_rate, b.window_start, b.window_end,
                                           b.origin_country))


def select_breaches(rows, settings: AlertSettings) -> list[Breach]:
    """The rows of an Arrow table (ALERT_COLUMNS) with anomaly_rate strictly above the threshold
    and at least min_observations observations, one per key (the last one read wins), sorted."""
    import pyarrow.compute as pc

    if rows is None or rows.num_rows == 0:
        return []
    mask = pc.and_kleene(pc.greater(rows["anomaly_rate"], settings.threshold),
                         pc.greater_equal(rows["total_observations"], settings.min_observations))
    selected = rows.filter(pc.fill_null(mask, False))
    columns = [selected[name].to_pylist() for name in ALERT_COLUMNS]
    by_key: dict[BreachKey, Breach] = {}
    for start, end, country, total, altitude, velocity, rate, max_altitude, max_velocity \
            in zip(*columns):
        if start is None or end is None or country is None:
            log.warning("anomaly_alerts row without a complete key skipped: %s %s %s",
                        start, end, country)
            continue
        breach = Breach(as_utc(start), as_utc(end), str(country), int(total), int(altitude or 0),
                        int(velocity or 0), float(rate), max_altitude, max_velocity)
        by_key[breach.key] = breach
    return sort_breaches(by_key.values())


# -- reading what is new ------------------------------------------------------------------------

@dataclass
class NewRows:
    rows: Any                      # pyarrow.Table with ALERT_COLUMNS
    version: int                   # the Gold table version read up to (inclusive)
    read: str                      # "snapshot", "changes" or "fallback"
    max_window_end: datetime | None


def read_new_rows(table, since_version: int | None, since_window_end: datetime | None,
                  settings: AlertSettings) -> NewRows | None:
    """Rows of `table` (a deltalake DeltaTable at its latest version) added after since_version;
    None when there is nothing after it."""
    version = table.version()
    if since_version is None:
        return _read_snapshot(table, version, None, settings, "snapshot")
    if version == since_version:
        return None
    if version < since_version:
        log.warning("Gold table anomaly_alerts is at version %d, behind the ledger's %d (was it "
                    "recreated?): reading the windows that end after %s", version, since_version,
                    iso(since_window_end))
        return _read_snapshot(table, version, since_window_end, settings, "fallback")
    import pyarrow as pa

    try:
        changes = pa.table(table.load_cdf(
            starting_version=since_version + 1, ending_version=version,
            columns=[*ALERT_COLUMNS, "_change_type", "_commit_version"]))
    except Exception as exc:  # noqa: BLE001 - whatever the cause, the snapshot path below is safe
        # Typically VACUUM removed the files of those commits, or the log of those versions is
        # gone; the snapshot still holds their rows.
        log.warning("Cannot read the Gold commits %d..%d (%s); reading the windows that end after "
                    "%s from the snapshot instead", since_version + 1, version,
                    str(exc).splitlines()[0][:300], iso(since_window_end))
        return _read_snapshot(table, version, since_window_end, settings, "fallback")
    rows = _inserted_rows(changes)
    return NewRows(rows, version, "changes", _max_time(rows["window_end"]))


def _inserted_rows(changes):
    """The inserted rows of a change feed, in commit order, as ALERT_COLUMNS."""
    import pyarrow.compute as pc

    changes = _normalize(changes)
    # Without CDF enabled an append shows up as "insert"; a delete or an update (never done to
    # this append-only table) would show up as something else, and is no new window.
    changes = changes.filter(pc.equal(changes["_change_type"], "insert"))
    changes = changes.sort_by([("_commit_version", "ascending")])
    return changes.select(list(ALERT_COLUMNS))


def _read_snapshot(table, version: int, since_window_end: datetime | None,
                   settings: AlertSettings, read: str) -> NewRows:
    import pyarrow.dataset as ds

    predicate = ds.field("anomaly_rate") > settings.threshold
    if since_window_end is not None:
        predicate = predicate & (ds.field("window_end") > since_window_end)
    rows = _normalize(table.to_pyarrow_table(columns=list(ALERT_COLUMNS), filters=predicate))
    return NewRows(rows, version, read, _snapshot_max_window_end(table))


def _snapshot_max_window_end(table) -> datetime | None:
    """From the file statistics when every file has them, else from the column itself."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    if "max.window_end" in actions.column_names and actions["max.window_end"].null_count == 0:
        return _max_time(actions["max.window_end"])
    return _max_time(table.to_pyarrow_table(columns=["window_end"])["window_end"])


def _normalize(rows):
    """delta-rs may hand out string_view columns; plain strings are what pyarrow.compute and
    to_pylist handle everywhere."""
    import pyarrow as pa

    for index, column in enumerate(rows.schema):
        if column.type == pa.string_view() or column.type == pa.large_string():
            rows = rows.set_column(index, column.name, rows[column.name].cast(pa.string()))
    return rows


def _max_time(column) -> datetime | None:
    import pyarrow.compute as pc

    value = pc.max(column).as_py()
    return as_utc(value) if value is not None else None


# -- the ledger ---------------------------------------------------------------------------------

@dataclass
class Ledger:
    version: int | None = None
    max_window_end: datetime | None = None
    sent_after_version: dict[str, set[BreachKey]] = field(default_factory=dict)
    updated_at: datetime | None = None
    last_alert: dict[str, Any] | None = None

    def sent(self, channel: str) -> set[BreachKey]:
        return self.sent_after_version.setdefault(channel, set())

    def to_json(self) -> str:
        doc = {
            "ledger": DAG_ID,
            "format": LEDGER_FORMAT,
            "version": self.version,
            "max_window_end": iso(self.max_window_end),
            "sent_after_version": {
                channel: [key.to_json() for key in sorted(keys)]
                for channel, keys in sorted(self.sent_after_version.items())
            },
            "updated_at": iso(self.updated_at),
            "last_alert": self.last_alert,
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> "Ledger":
        try:
            doc = json.loads(text)
            if doc.get("format") != LEDGER_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            version = doc["version"]
            if version is not None and (not isinstance(version, int) or version < 0):
                raise ValueError(f"version must be null or a table version, got {version!r}")
            return cls(
                version=version,
                max_window_end=parse_iso(doc["max_window_end"]) if doc.get("max_window_end") else None,
                sent_after_version={
                    channel: {BreachKey.from_json(item) for item in items}
                    for channel, items in (doc.get("sent_after_version") or {}).items()
                },
                updated_at=parse_iso(doc["updated_at"]) if doc.get("updated_at") else None,
                last_alert=doc.get("last_alert"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerError(
                f"alert ledger {where} is unreadable ({exc}). Fix it by hand, or delete it to "
                f"alert again on every breach the Gold table holds") from None


class LedgerStore:
    """The ledger as one JSON file, on the local disk or on S3 (same settings as the lakehouse)."""

    def __init__(self, uri: str, config: GoldConfig):
        self.uri = uri
        self.config = config

    def load(self) -> Ledger:
        text = self._read()
        return Ledger() if text is None else Ledger.from_json(text, self.uri)

    def save(self, ledger: Ledger) -> None:
        self._write(ledger.to_json().encode("utf-8"))

    def _is_s3(self) -> bool:
        return self.uri.startswith(("s3a://", "s3://"))

    def _local_path(self) -> str:
        return self.uri[len("file://"):] if self.uri.startswith("file://") else self.uri

    def _read(self) -> str | None:
        if not self._is_s3():
            try:
                with open(self._local_path(), encoding="utf-8") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None
        fs, path = self._s3()
        try:
            with fs.open_input_stream(path) as handle:
                return handle.read().decode("utf-8")
        except FileNotFoundError:
            return None

    def _write(self, data: bytes) -> None:
        if not self._is_s3():
            # Write beside, flush to disk, then rename over: a crash leaves the old or the new
            # ledger, never half of one.
            path = self._local_path()
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            temporary = f"{path}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
            return
        # An S3 PUT replaces an object atomically.
        fs, path = self._s3()
        with fs.open_output_stream(path) as handle:
            handle.write(data)

    def _s3(self):
        """pyarrow's S3 client with the lakehouse's endpoint and the standard AWS variables."""
        from pyarrow.fs import S3FileSystem

        env = os.environ
        kwargs: dict[str, Any] = {
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            kwargs.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                          session_token=env.get("AWS_SESSION_TOKEN") or None)
        endpoint = self.config.s3_endpoint
        if endpoint:
            scheme, separator, host = endpoint.partition("://")
            kwargs.update(endpoint_override=(host if separator else scheme).rstrip("/"),
                          scheme=scheme if separator else "https")
        if not self.config.s3_path_style_access:
            kwargs["force_virtual_addressing"] = True
        return S3FileSystem(**kwargs), self.uri.split("://", 1)[1]


# -- messages -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertContext:
    """What a message says about where the breaches come from."""
    threshold: float
    min_observations: int
    max_rows: int
    gold_table: str
    versions: str                  # "versions 3–7", "version 7"
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
    shown = ordered[:context.max_rows]
    lines = [f":rotating_light: *Flight anomaly alert*: {_headline(len(ordered), context)}"]
    for b in shown:
        lines.append(
            f"• *{_slack_escape(b.origin_country)}* {window_text(b.window_start, b.window_end)} UTC: "
            f"*{percent(b.anomaly_rate)}* of {b.total_observations:,} observations "
            f"(altitude anomalies {b.altitude_anomalies:,}, velocity anomalies {b.velocity_anomalies:,}; "
            f"max altitude {_metres(b.max_altitude)}, max velocity {_kmh(b.max_velocity)})")
    if len(ordered) > len(shown):
        lines.append(f"_{_more(len(ordered) - len(shown))}_")
    lines.append(f"_{_slack_escape(_source(context))}_")
    return {"text": "\n".join(lines)}


def _slack_escape(text: str) -> str:
    # The three characters Slack's mrkdwn reserves for links and mentions.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


EMAIL_COLUMNS = ("Country", "Window (UTC)", "Anomaly rate", "Observations", "Altitude anomalies",
                 "Velocity anomalies", "Max altitude", "Max velocity")
_RIGHT_ALIGNED = {"Anomaly rate", "Observations", "Altitude anomalies", "Velocity anomalies",
                  "Max altitude", "Max velocity"}


def _email_cells(b: Breach) -> tuple[str, ...]:
    return (b.origin_country, window_text(b.window_start, b.window_end), percent(b.anomaly_rate),
            f"{b.total_observations:,}", f"{b.altitude_anomalies:,}", f"{b.velocity_anomalies:,}",
            _metres(b.max_altitude), _kmh(b.max_velocity))


def format_email(breaches: Sequence[Breach], context: AlertContext) -> EmailContent:
    ordered = sort_breaches(breaches)
    shown = ordered[:context.max_rows]
    hidden = len(ordered) - len(shown)
    countries = list(dict.fromkeys(b.origin_country for b in ordered))
    named = ", ".join(countries[:3]) + (f" and {len(countries) - 3} more" if len(countries) > 3 else "")
    subject = f"[Flight Gold] Anomaly alert: {_headline(len(ordered), context)} ({named})"
    headline = f"Flight anomaly alert: {_headline(len(ordered), context)}."

    rows = [EMAIL_COLUMNS, *(_email_cells(b) for b in shown)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(EMAIL_COLUMNS))]
    table_lines = []
    for row in rows:
        cells = [cell.rjust(width) if name in _RIGHT_ALIGNED else cell.ljust(width)
                 for cell, width, name in zip(row, widths, EMAIL_COLUMNS)]
        table_lines.append("  ".join(cells).rstrip())
    text_parts = [headline, "", *table_lines]
    if hidden:
        text_parts += ["", _more(hidden)]
    text_parts += ["", _source(context), ""]
    text = "\n".join(text_parts)

    head = "".join(f"<th style=\"text-align:{'right' if n in _RIGHT_ALIGNED else 'left'}\">"
                   f"{html.escape(n)}</th>" for n in EMAIL_COLUMNS)
    body_rows = []
    for b in shown:
        cells = "".join(f"<td style=\"text-align:{'right' if n in _RIGHT_ALIGNED else 'left'}\">"
                        f"{html.escape(cell)}</td>" for cell, n in zip(_email_cells(b), EMAIL_COLUMNS))
        body_rows.append(f"<tr>{cells}</tr>")
    more = f"<p>{html.escape(_more(hidden))}</p>\n" if hidden else ""
    page = (
        "<html><body style=\"font-family: sans-serif\">\n"
        f"<p><strong>{html.escape(headline)}</strong></p>\n"
        "<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\" style=\"border-collapse: collapse\">\n"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body_rows) + "\n</tbody>\n</table>\n"
        f"{more}<p style=\"color: #666\">{html.escape(_source(context))}</p>\n</body></html>\n"
    )
    return EmailContent(subject=subject, text=text, html=page)


# -- the check ----------------------------------------------------------------------------------

class Channel(Protocol):
    name: str

    def send(self, breaches: Sequence[Breach], context: AlertContext) -> None:
        """Delivers one message listing `breaches`, or raises."""


def run_check(config: GoldConfig, settings: AlertSettings, channels: Sequence[Channel], *,
              run_id: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """One check: reads the Gold rows added since the ledger's version, sends the breaches each
    channel has not received yet, and advances the ledger once every channel has them all.

    Returns what it found and sent; raises AlertDeliveryError when a channel failed (after the
    other channels were tried and recorded)."""
    from flight_gold.delta_rs import open_table

    if not channels:
        raise AlertConfigError("no alert channel is configured")
    names = [channel.name for channel in channels]
    if len(set(names)) != len(names):
        raise AlertConfigError(f"alert channels must have distinct names, got {names}")
    gold_path = config.paths.anomaly_alerts
    store = LedgerStore(settings.ledger_location(config), config)
    ledger = store.load()
    result: dict[str, Any] = {
        "breaches_found": 0,
        "breaches_sent": {name: 0 for name in names},
        "gold_version_from": ledger.version,
        "gold_version_to": ledger.version,
        "read": "none",
        "ledger": store.uri,
    }

    table = open_table(gold_path, config)
    if table is None:
        log.info("No Gold table at %s yet: nothing to check", gold_path)
        return result
    new = read_new_rows(table, ledger.version, ledger.max_window_end, settings)
    if new is None:
        log.info("Gold table anomaly_alerts is still at version %s: nothing new", ledger.version)
        return result

    breaches = select_breaches(new.rows, settings)
    result.update(breaches_found=len(breaches), gold_version_to=new.version, read=new.read)
    if new.read == "changes":
        first = ledger.version + 1
        versions = f"version {first}" if first == new.version else f"versions {first}–{new.version}"
    else:
        versions = f"version {new.version}"
    context = AlertContext(threshold=settings.threshold, min_observations=settings.min_observations,
                           max_rows=settings.max_rows, gold_table=gold_path, versions=versions,
                           run_id=run_id)
    log.info("Read %d new row(s) of anomaly_alerts (%s, %s): %d breach(es) above %s",
             new.rows.num_rows, new.read, context.versions, len(breaches),
             threshold_text(settings.threshold))

    failures: dict[str, BaseException] = {}
    keys = [b.key for b in breaches]
    for position, channel in enumerate(channels):
        already = ledger.sent(channel.name)
        todo = [b for b, key in zip(breaches, keys) if key not in already]
        if not todo:
            if breaches:
                log.info("%s already has the %d breach(es) of this range", channel.name, len(breaches))
            continue
        try:
            channel.send(todo, context)
        except Exception as exc:  # noqa: BLE001 - every failure is reported below, after the others ran
            log.error("Sending %d breach(es) to %s failed: %s", len(todo), channel.name, exc)
            failures[channel.name] = exc
            continue
        already.update(b.key for b in todo)
        result["breaches_sent"][channel.name] = len(todo)
        if failures or position < len(channels) - 1:
            # Recorded before the next channel is tried: if that one fails, the retry must not
            # send this one again. (After the last one, the save below records everything.)
            ledger.updated_at = now or datetime.now(timezone.utc)
            store.save(ledger)
        log.info("Sent %d breach(es) to %s", len(todo), channel.name)

    if failures:
        detail = "; ".join(f"{name}: {exc}" for name, exc in failures.items())
        raise AlertDeliveryError(
            f"{len(failures)} alert channel(s) failed ({detail}). The ledger stays at Gold version "
            f"{ledger.version}; a retry sends each channel only the breaches it has not received"
        ) from next(iter(failures.values()))

    ledger.version = new.version
    if new.max_window_end is not None:
        ledger.max_window_end = max(filter(None, [ledger.max_window_end, new.max_window_end]))
    ledger.sent_after_version = {}
    ledger.updated_at = now or datetime.now(timezone.utc)
    if breaches:
        ledger.last_alert = {"at": iso(ledger.updated_at), "run_id": run_id, "breaches": len(breaches),
                             "gold_versions": context.versions}
    store.save(ledger)
    return result


# -- the Airflow channels -----------------------------------------------------------------------

@dataclass
class SlackChannel:
    """One Incoming Webhook message through the Slack provider's hook."""
    conn_id: str = SLACK_CONN_ID
    name: str = SLACK

    def send(self, breaches: Sequence[Breach], context: AlertContext) -> None:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        # The hook raises on any status other than 200.
        SlackWebhookHook(slack_webhook_conn_id=self.conn_id).send_dict(format_slack(breaches, context))


@dataclass
class EmailChannel:
    """One email (plain text and HTML alternatives) through the SMTP provider's hook."""
    recipients: list[str]
    conn_id: str = SMTP_CONN_ID
    name: str = EMAIL

    def send(self, breaches: Sequence[Breach], context: AlertContext) -> None:
        content = format_email(breaches, context)
        hook_class = _alternative_smtp_hook(content.text)
        with hook_class(smtp_conn_id=self.conn_id) as hook:
            from_email = hook.from_email or os.environ.get(EMAIL_FROM_ENV) or _airflow_from_email()
            if not from_email:
                raise AlertConfigError(
                    f"no sender address: set from_email in the extra of connection {self.conn_id!r} "
                    f"or the environment variable {EMAIL_FROM_ENV}")
            hook.send_email_smtp(to=self.recipients, subject=content.subject,
                                 html_content=content.html, from_email=from_email,
                                 mime_subtype="alternative")


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
    except Exception:  # noqa: BLE001 - only a fallback
        return None


def airflow_channels(env: Mapping[str, str] | None = None) -> list[Channel]:
    """The channels whose Airflow connection (and, for email, recipients) are set. A missing one
    is skipped with a warning; none at all is a configuration error."""
    channels: list[Channel] = []
    problems: list[str] = []

    slack = _connection(SLACK_CONN_ID)
    if slack is None:
        problems.append(f"Slack: no Airflow connection {SLACK_CONN_ID!r}")
    elif not (slack.password or "").strip():
        problems.append(f"Slack: connection {SLACK_CONN_ID!r} has no webhook URL (password field)")
    else:
        channels.append(SlackChannel())

    smtp = _connection(SMTP_CONN_ID)
    recipients = email_recipients(env)
    if smtp is None:
        problems.append(f"email: no Airflow connection {SMTP_CONN_ID!r}")
    elif not (smtp.host or "").strip():
        problems.append(f"email: connection {SMTP_CONN_ID!r} has no host")
    if not recipients:
        problems.append(f"email: {EMAIL_TO_ENV} is empty")
    if smtp is not None and (smtp.host or "").strip() and recipients:
        channels.append(EmailChannel(recipients=recipients))

    if not channels:
        raise AlertConfigError("no alert channel is configured: " + "; ".join(problems)
                               + " (see README, 'Anomaly alerts')")
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


# -- time helpers -------------------------------------------------------------------------------

def as_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def iso(value: datetime | None) -> str | None:
    """'2024-05-01T10:00:00Z' (microseconds only when there are some)."""
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None).isoformat() + "Z"


def parse_iso(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
