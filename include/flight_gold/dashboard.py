"""Data of the Flight Gold dashboard: functions over the Gold tables, read with `deltalake`.

No JVM and no Airflow here: the Airflow plugin (plugins/flight_gold_dashboard.py) serves these
dicts as JSON, and tests call them directly. Every function takes its clock (`now`) and its time
range explicitly, so a result depends only on the tables and the arguments.

A time range selects the windows whose `window_start` is in [start, end).

GoldTables.open(config) reads what a request needs from the tables; GoldTables.open(config,
cache) goes through a GoldCache, the API server's in-memory copy of the last 25 hours, which each
refresh brings up to date with the commits added since.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flight_gold import alerts
from flight_gold.alerts import AlertSettings, iso
from flight_gold.config import GoldConfig
from flight_gold.delta_rs import open_table, table_uri
from flight_gold.lakehouse_checks import silver_ml_ready
from flight_gold.paths import GOLD_TABLES
from flight_gold.schemas import FLIGHT_PHASES

log = logging.getLogger(__name__)

STREAMING_DAG_ID = "gold_streaming"
DEFAULT_RANGE = "1h"
RANGE_PRESETS = ("15m", "1h", "3h", "6h", "12h", "24h")
MAX_SPAN = timedelta(days=7)
# A heat map stays readable up to a few dozen rows; the countries with the highest rates win.
MAX_HEATMAP_COUNTRIES = 25
MAX_BREACH_ROWS = 500

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(second|minute|hour)s?\s*$")
_INTERVAL_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
_TS = pa.timestamp("us", tz="UTC")

PHASE_COLUMNS = ["window_start", "window_end", "flight_phase", "flight_count", "avg_altitude",
                 "avg_velocity"]
BREACH_FIELDS = ["window_start", "window_end", "origin_country", "total_observations",
                 "altitude_anomalies", "velocity_anomalies", "anomaly_rate"]


class DashboardInputError(ValueError):
    """A request parameter is malformed; the message names the parameter and the bad value."""


# -- inputs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    label: str

    def as_dict(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end), "label": self.label}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_instant(raw: str, name: str) -> datetime:
    """ISO 8601; without an offset the time is taken as UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise DashboardInputError(
            f"{name} must be an ISO 8601 date-time like 2025-01-31T14:00:00Z, got {raw!r}") from None
    return alerts.as_utc(value)


def resolve_range(range_: str | None = None, start: str | None = None, end: str | None = None,
                  now: datetime | None = None) -> TimeRange:
    """A relative range ending now (`range` = 15m, 1h, 24h, 2d...; default 1h) or an absolute one
    (`start` and optionally `end`, which defaults to now). Spans above 7 days are refused."""
    now = now or utcnow()
    if start or end:
        if range_:
            raise DashboardInputError("give either range or start/end, not both")
        if not start:
            raise DashboardInputError("end was given without start")
        t_start = parse_instant(start, "start")
        t_end = parse_instant(end, "end") if end else now
        label = "custom"
    else:
        text = (range_ or DEFAULT_RANGE).strip().lower()
        match = _RELATIVE.match(text)
        if not match or int(match.group(1)) == 0:
            raise DashboardInputError(
                f"range must look like 15m, 1h or 2d (one of {', '.join(RANGE_PRESETS)} in the page), "
                f"got {range_!r}")
        t_end = now
        t_start = now - int(match.group(1)) * _UNIT[match.group(2)]
        label = text
    if t_start >= t_end:
        raise DashboardInputError(f"start ({iso(t_start)}) must be before end ({iso(t_end)})")
    if t_end - t_start > MAX_SPAN:
        raise DashboardInputError(f"the time range may span at most 7 days, got {t_end - t_start}")
    return TimeRange(t_start, t_end, label)


def alert_settings(env: Mapping[str, str] | None = None) -> AlertSettings:
    """The alert DAG's own settings (GOLD_ALERTS_THRESHOLD, GOLD_ALERTS_MIN_OBSERVATIONS,
    GOLD_ALERTS_LEDGER): the page marks and lists exactly what the alerts send."""
    return AlertSettings.from_env(env)


def interval_seconds(interval: str) -> float:
    match = _INTERVAL.match(interval)
    if not match:
        raise DashboardInputError(f"interval must look like '10 seconds' or '2 minutes', got {interval!r}")
    return float(match.group(1)) * _INTERVAL_SECONDS[match.group(2)]


# -- reading ------------------------------------------------------------------------------------

# What the page reads of each table: every column it shows, and those alerts.select_breaches needs.
COLUMNS = {
    "flight_phase_counts": PHASE_COLUMNS,
    "anomaly_alerts": list(dict.fromkeys(["window_start", *alerts.ALERT_COLUMNS])),
}
# The API server keeps this much of each table in memory (GoldCache): the page's longest preset
# range, plus an hour of margin.
CACHE_SPAN = timedelta(hours=25)
_MAX_CHUNKS = 64


@dataclass(frozen=True)
class TableSnapshot:
    """One Gold table at one version: what the Delta log says about it, and its rows since
    `horizon` (all rows when horizon is None; rows=None when they are read on demand)."""

    name: str
    path: str
    exists: bool
    version: int | None = None
    rows_total: int | None = None
    newest_window_start: datetime | None = None
    newest_window_end: datetime | None = None
    last_commit: datetime | None = None
    rows: pa.Table | None = None
    horizon: datetime | None = None
    table: Any = None  # the DeltaTable, for on-demand reads; None in the shared cache


def _log_facts(dt) -> dict[str, Any]:
    """Version, row count, newest window and last commit from the Delta log and the file
    statistics, without reading the data (a column read only when statistics are missing)."""
    files = pa.table(dt.get_add_actions(flatten=True))
    facts: dict[str, Any] = {"version": dt.version(), "rows_total": 0}
    history = dt.history(1)
    if history:
        facts["last_commit"] = datetime.fromtimestamp(history[0]["timestamp"] / 1000, timezone.utc)
    if files.num_rows == 0:
        return facts
    counts = files.column("num_records")
    facts["rows_total"] = dt.count() if counts.null_count else int(pc.sum(counts).as_py() or 0)
    starts, ends = "max.window_start", "max.window_end"
    if {starts, ends} <= set(files.column_names) and not files[starts].null_count and not files[ends].null_count:
        # Windows of a table have one length, so the latest start and the latest end are one window.
        newest_start, newest_end = pc.max(files[starts]).as_py(), pc.max(files[ends]).as_py()
    else:
        both = _scan(dt, ["window_start", "window_end"])
        newest_start, newest_end = pc.max(both["window_start"]).as_py(), pc.max(both["window_end"]).as_py()
    if newest_start is not None:
        facts.update(newest_window_start=_py_utc(newest_start), newest_window_end=_py_utc(newest_end))
    return facts


def _scan(dt, columns: list[str], start: datetime | None = None, end: datetime | None = None) -> pa.Table:
    """Rows with window_start in [start, end) (either bound optional), read with deltalake's
    DataFusion scan: files whose statistics lie outside the range are not opened."""
    clauses = []
    if start is not None:
        clauses.append(f"window_start >= {_sql_ts(start)}")
    if end is not None:
        clauses.append(f"window_start < {_sql_ts(end)}")
    reader = dt.scan(columns=columns, predicate=" AND ".join(clauses) or None)
    table = pa.RecordBatchReader.from_stream(reader).read_all()
    # One batch per small file otherwise: every compute call then pays per chunk.
    return table.cast(pa.schema([_plain(f) for f in table.schema])).combine_chunks()


def load_snapshot(config: GoldConfig, name: str) -> TableSnapshot:
    """A table opened for one request; its rows are read on demand, range by range."""
    path = config.paths.gold_table(name)
    dt = open_table(path, config)
    if dt is None:
        return TableSnapshot(name, path, exists=False)
    return TableSnapshot(name, path, exists=True, table=dt, **_log_facts(dt))


class _CachedTable:
    def __init__(self, config: GoldConfig, name: str, span: timedelta):
        self.config, self.name, self.span = config, name, span
        self.path = config.paths.gold_table(name)
        self.lock = threading.Lock()
        self.table_id: str | None = None
        self.version: int | None = None
        self.rows: pa.Table | None = None
        self.horizon: datetime | None = None
        self.full_loads = 0
        self.incremental_loads = 0

    def refresh(self, now: datetime) -> TableSnapshot:
        # A fresh open per request (a log replay from the last checkpoint): a table deleted and
        # written anew is then seen for what it is, which an incremental update of the old
        # DeltaTable object would miss.
        dt = open_table(self.path, self.config)
        if dt is None:
            with self.lock:
                self.table_id = self.version = self.rows = self.horizon = None
            return TableSnapshot(self.name, self.path, exists=False)
        facts = _log_facts(dt)
        table_id = dt.metadata().id
        with self.lock:
            if self.table_id != table_id or self.version is None:
                self._load_all(dt, now)
                self.version = facts["version"]
            elif facts["version"] > self.version:
                self._load_since(dt, facts["version"], now)
                self.version = facts["version"]
            # else: a request that opened the table just before another one's refresh; the cache
            # is already as new or newer.
            self.table_id = table_id
            self._evict(now)
            rows, horizon = self.rows, self.horizon
        return TableSnapshot(self.name, self.path, exists=True, rows=rows, horizon=horizon, **facts)

    def _load_all(self, dt, now: datetime) -> None:
        self.horizon = now - self.span
        self.rows = _scan(dt, COLUMNS[self.name], start=self.horizon)
        self.full_loads += 1

    def _load_since(self, dt, version: int, now: datetime) -> None:
        """The rows the commits after the cached version added (deltalake's change feed: on a
        table without CDF it yields the appended files; OPTIMIZE rewrites are no new rows)."""
        try:
            changes = pa.table(dt.load_cdf(starting_version=self.version + 1, ending_version=version,
                                           columns=[*COLUMNS[self.name], "_change_type"]))
        except Exception as exc:  # noqa: BLE001 - e.g. VACUUM removed those files: read anew
            log.info("reading %s anew: its commits %d..%d are not readable (%s)", self.name,
                     self.version + 1, version, str(exc).splitlines()[0][:200])
            self._load_all(dt, now)
            return
        kinds = set(changes.column("_change_type").to_pylist())
        if kinds - {"insert"}:
            # Rows deleted or updated in an append-only table: someone rewrote it, read it anew.
            self._load_all(dt, now)
            return
        added = changes.select(COLUMNS[self.name])
        added = added.cast(pa.schema([_plain(f) for f in added.schema]))
        self.rows = pa.concat_tables([self.rows, added.cast(self.rows.schema)])
        if self.rows.column(0).num_chunks > _MAX_CHUNKS:
            self.rows = self.rows.combine_chunks()
        self.incremental_loads += 1

    def _evict(self, now: datetime) -> None:
        horizon = now - self.span
        if self.rows is not None and horizon > self.horizon:
            self.rows = self.rows.filter(pc.field("window_start") >= horizon)
            self.horizon = horizon


class GoldCache:
    """The last CACHE_SPAN of each Gold table, kept in memory by the API server from one request
    to the next and brought up to date with only the commits added since. The stream appends a
    file per micro-batch, so a day holds thousands of small files; a refresh every 30 seconds then
    reads the one or two new ones instead of all of them."""

    def __init__(self, span: timedelta = CACHE_SPAN):
        self.span = span
        self._tables: dict[tuple[str, str], _CachedTable] = {}
        self._lock = threading.Lock()

    def entry(self, config: GoldConfig, name: str) -> _CachedTable:
        key = (table_uri(config.paths.gold_table(name)), name)
        with self._lock:
            if key not in self._tables:
                self._tables[key] = _CachedTable(config, name, self.span)
            return self._tables[key]


@dataclass
class GoldTables:
    """Both Gold tables for one request: a snapshot of each, and the rows of a range read once
    however many panels use them."""

    config: GoldConfig
    snapshots: dict[str, TableSnapshot]
    _reads: dict[tuple, pa.Table | None] = field(default_factory=dict)

    @classmethod
    def open(cls, config: GoldConfig, cache: GoldCache | None = None,
             now: datetime | None = None) -> "GoldTables":
        if cache is None:
            return cls(config, {name: load_snapshot(config, name) for name in GOLD_TABLES})
        now = now or utcnow()
        return cls(config, {name: cache.entry(config, name).refresh(now) for name in GOLD_TABLES})

    def path(self, name: str) -> str:
        return self.config.paths.gold_table(name)

    def snapshot(self, name: str) -> TableSnapshot:
        return self.snapshots[name]

    def status(self, name: str) -> str:
        snap = self.snapshots[name]
        return "missing" if not snap.exists else ("ok" if snap.rows_total else "empty")

    def read(self, name: str, time_range: TimeRange) -> pa.Table | None:
        """Rows of `name` (COLUMNS[name]) with window_start in the range; None when the table
        does not exist."""
        key = (name, time_range.start, time_range.end)
        if key not in self._reads:
            self._reads[key] = self._read(name, time_range)
        return self._reads[key]

    def _read(self, name: str, time_range: TimeRange) -> pa.Table | None:
        snap = self.snapshots[name]
        if not snap.exists:
            return None
        if snap.rows is not None and (snap.horizon is None or time_range.start >= snap.horizon):
            in_range = (pc.field("window_start") >= pa.scalar(time_range.start, _TS)) & \
                       (pc.field("window_start") < pa.scalar(time_range.end, _TS))
            return snap.rows.filter(in_range)
        # Older than the cache keeps: read this range from the table itself.
        dt = snap.table if snap.table is not None else open_table(snap.path, self.config)
        if dt is None:
            return None
        return _scan(dt, COLUMNS[name], time_range.start, time_range.end)


def _sql_ts(value: datetime) -> str:
    return f"TIMESTAMP '{iso(value)}'"


def _plain(f: pa.Field) -> pa.Field:
    # DataFusion hands back string_view columns, which some compute kernels refuse.
    if pa.types.is_timestamp(f.type):
        return f.with_type(_TS)
    if pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type):
        return f.with_type(pa.string())
    return f


def _py_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return alerts.as_utc(value)


# -- the four panels ----------------------------------------------------------------------------

def phase_counts(tables: GoldTables, time_range: TimeRange) -> dict[str, Any]:
    """Observations per flight phase per minute (one series per phase, aligned on `minutes`),
    with the average altitude and velocity of each bar."""
    name = "flight_phase_counts"
    result: dict[str, Any] = {"table": name, "path": tables.path(name), "status": tables.status(name),
                              "minutes": [], "phases": [], "total_observations": 0, "duplicate_rows": 0}
    data = tables.read(name, time_range)
    if not data:
        return result
    minutes = pc.unique(data["window_start"]).sort()
    present = set(pc.unique(data["flight_phase"]).to_pylist())
    order = [p for p in FLIGHT_PHASES if p in present] + sorted(present - set(FLIGHT_PHASES))
    m = pc.index_in(data["window_start"], value_set=minutes).to_numpy()
    p = pc.index_in(data["flight_phase"], value_set=pa.array(order, pa.string())).to_numpy()
    shape = (len(order), len(minutes))
    counts, rows_per_cell = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    np.add.at(counts, (p, m), data["flight_count"].to_numpy(zero_copy_only=False))
    np.add.at(rows_per_cell, (p, m), 1)
    averages = {}
    for column in ("avg_altitude", "avg_velocity"):
        grid = np.full(shape, np.nan)
        grid[p, m] = data[column].to_numpy(zero_copy_only=False)
        averages[column] = grid
    result.update(
        minutes=_iso_list(minutes),
        phases=[{"phase": phase, "flight_count": counts[i].tolist(),
                 "avg_altitude": _finite_list(averages["avg_altitude"][i]),
                 "avg_velocity": _finite_list(averages["avg_velocity"][i])} for i, phase in enumerate(order)],
        total_observations=int(counts.sum()),
        # The contract writes a window once; a second row of one would be a bug upstream: show it.
        duplicate_rows=int(np.maximum(rows_per_cell - 1, 0).sum()),
    )
    return result


def anomaly_rates(tables: GoldTables, time_range: TimeRange, threshold: float,
                  max_countries: int = MAX_HEATMAP_COUNTRIES) -> dict[str, Any]:
    """anomaly_rate per country and window, as heat-map cells [window index, country index,
    anomaly_rate, total_observations]. `windows` runs from the first to the last window of the
    range one slide apart, missing ones included. The countries shown are those with the highest
    rate in the range (ties by name); the others are counted in `countries_hidden`."""
    name = "anomaly_alerts"
    result: dict[str, Any] = {"table": name, "path": tables.path(name), "status": tables.status(name),
                              "threshold": threshold,
                              "window_seconds": interval_seconds(tables.config.anomaly_window),
                              "windows": [], "countries": [], "countries_total": 0,
                              "countries_hidden": 0, "cells": [], "max_rate": None}
    data = tables.read(name, time_range)
    if not data:
        return result
    peaks = data.group_by("origin_country").aggregate([("anomaly_rate", "max")]).to_pylist()
    peaks.sort(key=lambda r: (-(r["anomaly_rate_max"] or 0.0), r["origin_country"]))
    countries = pa.array([r["origin_country"] for r in peaks[:max_countries]], pa.string())
    shown = data.filter(pc.is_in(data["origin_country"], value_set=countries))
    windows = _dense_windows(pc.unique(data["window_start"]).to_pylist(),
                             interval_seconds(tables.config.anomaly_slide))
    cells = pa.table({
        "w": pc.index_in(shown["window_start"], value_set=windows),
        "c": pc.index_in(shown["origin_country"], value_set=countries),
        "rate": shown["anomaly_rate"], "total": shown["total_observations"],
    }).sort_by([("w", "ascending"), ("c", "ascending")])
    columns = [cells[k].to_numpy().tolist() for k in ("w", "c", "rate", "total")]
    result.update(windows=_iso_list(windows), countries=countries.to_pylist(),
                  countries_total=len(peaks), countries_hidden=max(0, len(peaks) - len(countries)),
                  cells=[list(c) for c in zip(*columns)], max_rate=peaks[0]["anomaly_rate_max"])
    return result


def _dense_windows(starts: list[datetime], step_seconds: float) -> pa.Array:
    """Every window start from the first to the last, one slide apart: a window the stream did not
    write shows as an empty column instead of vanishing from the axis."""
    first, last, step = min(starts), max(starts), timedelta(seconds=step_seconds)
    dense = set(starts)
    current = first
    while current < last:
        dense.add(current)
        current += step
    return pa.array(sorted(dense), _TS)


def breaches(tables: GoldTables, time_range: TimeRange, settings: AlertSettings,
             limit: int = MAX_BREACH_ROWS) -> dict[str, Any]:
    """The windows of the range that the alert DAG sends (alerts.select_breaches: anomaly_rate
    above the threshold, at least min_observations observations, one row per window and
    country), newest first, then the highest rate first."""
    name = "anomaly_alerts"
    result: dict[str, Any] = {"table": name, "status": "missing" if not tables.snapshot(name).exists else "ok",
                              "threshold": settings.threshold, "min_observations": settings.min_observations,
                              "rows": [], "countries": [], "total": 0, "truncated": False}
    data = tables.read(name, time_range)
    if not data:
        return result
    # The alerts' own test, vectorized, to count every breach of the range; the rows listed then
    # go through alerts.select_breaches itself.
    qualifies = pc.and_kleene(pc.greater(data["anomaly_rate"], settings.threshold),
                              pc.greater_equal(data["total_observations"], settings.min_observations))
    candidates = data.filter(pc.fill_null(qualifies, False))
    if candidates.num_rows == 0:
        return result
    keys = candidates.group_by(list(alerts.KEY_COLUMNS)).aggregate([])
    newest_first = pc.sort_indices(candidates, sort_keys=[("window_start", "descending")])
    cutoff = candidates["window_start"][newest_first[min(limit, candidates.num_rows) - 1].as_py()]
    # Whole windows only, so that select_breaches sees every row of a (window, country) key.
    listed = candidates.filter(pc.greater_equal(candidates["window_start"], cutoff))
    selected = sorted(alerts.select_breaches(listed, settings),
                      key=lambda b: (-b.window_start.timestamp(), -b.anomaly_rate, b.origin_country))
    rows = [{f: (iso(getattr(b, f)) if f in ("window_start", "window_end") else getattr(b, f))
             for f in BREACH_FIELDS} for b in selected[:limit]]
    result.update(rows=rows, countries=sorted(pc.unique(keys["origin_country"]).to_pylist()),
                  total=keys.num_rows, truncated=keys.num_rows > len(rows))
    return result


def expected_lag_seconds(config: GoldConfig, name: str) -> float:
    """How far behind now the newest window of a healthy stream may be: the watermark, one
    window step, one trigger interval, and a minute for the feed to land in Silver_ML."""
    trigger = interval_seconds(config.trigger_interval)
    if name == "flight_phase_counts":
        step, watermark = interval_seconds(config.phase_window), interval_seconds(config.phase_watermark)
    else:
        step, watermark = interval_seconds(config.anomaly_slide), interval_seconds(config.anomaly_watermark)
    return watermark + step + trigger + 60.0


def freshness(tables: GoldTables, now: datetime) -> dict[str, Any]:
    """Per Gold table: the newest window, how far its end lags behind `now`, the row count and
    the last commit, from the Delta log (file statistics) without reading the data."""
    out = []
    for name in GOLD_TABLES:
        snap = tables.snapshot(name)
        entry: dict[str, Any] = {
            "table": name, "path": snap.path, "status": tables.status(name), "rows": snap.rows_total,
            "newest_window_start": iso(snap.newest_window_start), "newest_window_end": iso(snap.newest_window_end),
            "lag_seconds": None, "expected_lag_seconds": expected_lag_seconds(tables.config, name),
            "stale": None, "version": snap.version, "last_commit": iso(snap.last_commit),
        }
        if snap.newest_window_end is not None:
            lag = (now - snap.newest_window_end).total_seconds()
            entry.update(lag_seconds=lag, stale=lag > entry["expected_lag_seconds"])
        out.append(entry)
    return {"now": iso(now), "tables": out}


def last_alert(config: GoldConfig, settings: AlertSettings) -> dict[str, Any]:
    """When the alert DAG last sent an alert, from its ledger (alerts.LedgerStore)."""
    where = settings.ledger_location(config)
    result: dict[str, Any] = {"dag_id": alerts.DAG_ID, "ledger": where, "sent_at": None, "run_id": None,
                              "breaches": None, "last_check": None}
    try:
        ledger = alerts.LedgerStore(where, config).load()
    except alerts.LedgerError as exc:
        return {**result, "status": "error", "message": str(exc)}
    result["last_check"] = iso(ledger.updated_at)
    if not ledger.last_alert:
        message = ("no alert sent yet" if ledger.updated_at else
                   f"no alert sent yet: the DAG {alerts.DAG_ID} has not checked the Gold table so far")
        return {**result, "status": "none", "message": message}
    sent_at = ledger.last_alert.get("at")
    return {**result, "status": "sent", "sent_at": iso(alerts.parse_iso(sent_at)) if sent_at else None,
            "run_id": ledger.last_alert.get("run_id"), "breaches": ledger.last_alert.get("breaches"),
            "message": None}


def empty_state(tables: GoldTables, fresh: dict[str, Any]) -> dict[str, Any] | None:
    """What to start when a Gold table is missing or empty (None when both have rows)."""
    states = {t["table"]: t["status"] for t in fresh["tables"]}
    if all(s == "ok" for s in states.values()):
        return None
    config = tables.config
    waiting = [n for n, s in states.items() if s != "ok"]
    steps = []
    if not silver_ml_ready(config):
        steps.append(f"Feed Silver_ML: no Delta table at {config.paths.silver_flights_ml} yet "
                     "(for example `python -m flight_gold.feed.replay`).")
    steps.append(f"Trigger the DAG `{STREAMING_DAG_ID}` in Airflow (Dags > {STREAMING_DAG_ID} > Trigger): "
                 "it waits for Silver_ML, then starts the streaming job.")
    steps.append("The first windows land a few minutes after data arrives: a window is written once "
                 f"the watermark passes its end ({config.phase_window} + {config.phase_watermark} for "
                 f"flight_phase_counts, {config.anomaly_slide} + {config.anomaly_watermark} for anomaly_alerts).")
    missing = [n for n in waiting if states[n] == "missing"]
    title = ("No Gold tables yet" if len(missing) == len(GOLD_TABLES)
             else "Waiting for Gold data: " + ", ".join(
                 f"{n} ({'not created yet' if states[n] == 'missing' else 'no window yet'})" for n in waiting))
    return {"title": title, "tables": waiting, "steps": steps}


def snapshot(config: GoldConfig, time_range: TimeRange, now: datetime,
             settings: AlertSettings | None = None, tables: GoldTables | None = None) -> dict[str, Any]:
    """Everything the page shows, from one opening of each Gold table."""
    settings = settings or alert_settings()
    tables = tables or GoldTables.open(config)
    fresh = freshness(tables, now)
    return {
        "generated_at": iso(now),
        "range": time_range.as_dict(),
        "threshold": settings.threshold,
        "phase_counts": phase_counts(tables, time_range),
        "anomaly_rates": anomaly_rates(tables, time_range, settings.threshold),
        "breaches": breaches(tables, time_range, settings),
        "freshness": fresh,
        "last_alert": last_alert(config, settings),
        "empty_state": empty_state(tables, fresh),
    }


def _iso_list(times: pa.Array) -> list[str]:
    """iso() of a whole timestamp column at once (the windows of a day are 1,440)."""
    # In seconds: strftime's %S of a microsecond timestamp prints the fraction too.
    seconds = times.cast(pa.timestamp("s", tz="UTC"), safe=False)
    return pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()


def _finite_list(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values.tolist()]
