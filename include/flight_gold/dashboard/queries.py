"""What the Flight Gold page shows, as JSON-ready dicts over the read model (flight_gold.dashboard.
model): the four panels, the freshness of each table, the last alert, and what to start when there
is no data yet. Every function takes its clock (`now`) and its time range explicitly, so a result
depends only on the tables and the arguments. A time range selects the windows whose
`window_start` is in [start, end).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flight_gold.airflow.defaults import ALERTS_DAG_ID, STREAMING_DAG_ID
from flight_gold.alerting.breaches import select_breaches
from flight_gold.alerting.ledger import LedgerError, LedgerStore
from flight_gold.alerting.settings import KEY_COLUMNS, AlertSettings
from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import (
    ANOMALY_ALERTS,
    FLIGHT_PHASE_COUNTS,
    FLIGHT_PHASES,
    GOLD_TABLE_NAMES,
    gold_table,
)
from flight_gold.core.intervals import interval_seconds
from flight_gold.core.times import iso, parse_iso, utcnow
from flight_gold.dashboard.model import TS, GoldTables, TimeRange, data_range
from flight_gold.lake.checks import silver_ml_ready

DEFAULT_RANGE = "1h"
RANGE_PRESETS = ("15m", "1h", "3h", "6h", "12h", "24h")
MAX_SPAN = timedelta(days=7)
# A heat map stays readable up to a few dozen rows; the countries with the highest rates win.
MAX_HEATMAP_COUNTRIES = 25
MAX_BREACH_ROWS = 500

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}

BREACH_FIELDS = [
    "window_start",
    "window_end",
    "origin_country",
    "total_observations",
    "altitude_anomalies",
    "velocity_anomalies",
    "anomaly_rate",
]


class DashboardInputError(ValueError):
    """A request parameter is malformed; the message names the parameter and the bad value."""


# -- inputs -------------------------------------------------------------------------------------


def parse_instant(raw: str, name: str) -> datetime:
    """ISO 8601; without an offset the time is taken as UTC."""
    try:
        return parse_iso(raw)
    except ValueError:
        raise DashboardInputError(
            f"{name} must be an ISO 8601 date-time like 2025-01-31T14:00:00Z, got {raw!r}"
        ) from None


def resolve_range(
    range_: str | None = None, start: str | None = None, end: str | None = None, now: datetime | None = None
) -> TimeRange:
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
                f"got {range_!r}"
            )
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


# -- the four panels ----------------------------------------------------------------------------


def phase_counts(tables: GoldTables, time_range: TimeRange) -> dict[str, Any]:
    """Observations per flight phase per minute (one series per phase, aligned on `minutes`),
    with the average altitude and velocity of each bar."""
    name = "flight_phase_counts"
    result: dict[str, Any] = {
        "table": name,
        "path": tables.path(name),
        "status": tables.status(name),
        "minutes": [],
        "phases": [],
        "total_observations": 0,
        "duplicate_rows": 0,
    }
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
        phases=[
            {
                "phase": phase,
                "flight_count": counts[i].tolist(),
                "avg_altitude": _finite_list(averages["avg_altitude"][i]),
                "avg_velocity": _finite_list(averages["avg_velocity"][i]),
            }
            for i, phase in enumerate(order)
        ],
        total_observations=int(counts.sum()),
        # The contract writes a window once; a second row of one would be a bug upstream: show it.
        duplicate_rows=int(np.maximum(rows_per_cell - 1, 0).sum()),
    )
    return result


def anomaly_rates(
    tables: GoldTables, time_range: TimeRange, threshold: float, max_countries: int = MAX_HEATMAP_COUNTRIES
) -> dict[str, Any]:
    """anomaly_rate per country and window, as heat-map cells [window index, country index,
    anomaly_rate, total_observations]. `windows` runs from the first to the last window of the
    range one slide apart, missing ones included. The countries shown are those with the highest
    rate in the range (ties by name); the others are counted in `countries_hidden`."""
    name = "anomaly_alerts"
    result: dict[str, Any] = {
        "table": name,
        "path": tables.path(name),
        "status": tables.status(name),
        "threshold": threshold,
        "window_seconds": interval_seconds(ANOMALY_ALERTS.window),
        "windows": [],
        "countries": [],
        "countries_total": 0,
        "countries_hidden": 0,
        "cells": [],
        "max_rate": None,
    }
    data = tables.read(name, time_range)
    if not data:
        return result
    peaks = data.group_by("origin_country").aggregate([("anomaly_rate", "max")]).to_pylist()
    peaks.sort(key=lambda r: (-(r["anomaly_rate_max"] or 0.0), r["origin_country"]))
    countries = pa.array([r["origin_country"] for r in peaks[:max_countries]], pa.string())
    shown = data.filter(pc.is_in(data["origin_country"], value_set=countries))
    windows = _dense_windows(
        pc.unique(data["window_start"]).to_pylist(), interval_seconds(ANOMALY_ALERTS.step)
    )
    cells = pa.table(
        {
            "w": pc.index_in(shown["window_start"], value_set=windows),
            "c": pc.index_in(shown["origin_country"], value_set=countries),
            "rate": shown["anomaly_rate"],
            "total": shown["total_observations"],
        }
    ).sort_by([("w", "ascending"), ("c", "ascending")])
    columns = [cells[k].to_numpy().tolist() for k in ("w", "c", "rate", "total")]
    result.update(
        windows=_iso_list(windows),
        countries=countries.to_pylist(),
        countries_total=len(peaks),
        countries_hidden=max(0, len(peaks) - len(countries)),
        cells=[list(c) for c in zip(*columns)],
        max_rate=peaks[0]["anomaly_rate_max"],
    )
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
    return pa.array(sorted(dense), TS)


def breaches(
    tables: GoldTables, time_range: TimeRange, settings: AlertSettings, limit: int = MAX_BREACH_ROWS
) -> dict[str, Any]:
    """The windows of the range that the alert DAG sends (alerting.breaches.select_breaches: anomaly_rate
    above the threshold, at least min_observations observations, one row per window and
    country), newest first, then the highest rate first."""
    name = "anomaly_alerts"
    result: dict[str, Any] = {
        "table": name,
        "status": "missing" if not tables.state(name).exists else "ok",
        "threshold": settings.threshold,
        "min_observations": settings.min_observations,
        "rows": [],
        "countries": [],
        "total": 0,
        "truncated": False,
    }
    data = tables.read(name, time_range)
    if not data:
        return result
    # The alerts' own test, vectorized, to count every breach of the range; the rows listed then
    # go through select_breaches itself.
    qualifies = pc.and_kleene(
        pc.greater(data["anomaly_rate"], settings.threshold),
        pc.greater_equal(data["total_observations"], settings.min_observations),
    )
    candidates = data.filter(pc.fill_null(qualifies, False))
    if candidates.num_rows == 0:
        return result
    keys = candidates.group_by(list(KEY_COLUMNS)).aggregate([])
    newest_first = pc.sort_indices(candidates, sort_keys=[("window_start", "descending")])
    cutoff = candidates["window_start"][newest_first[min(limit, candidates.num_rows) - 1].as_py()]
    # Whole windows only, so that select_breaches sees every row of a (window, country) key.
    listed = candidates.filter(pc.greater_equal(candidates["window_start"], cutoff))
    selected = sorted(
        select_breaches(listed, settings),
        key=lambda b: (-b.window_start.timestamp(), -b.anomaly_rate, b.origin_country),
    )
    rows = [
        {
            f: (iso(getattr(b, f)) if f in ("window_start", "window_end") else getattr(b, f))
            for f in BREACH_FIELDS
        }
        for b in selected[:limit]
    ]
    result.update(
        rows=rows,
        countries=sorted(pc.unique(keys["origin_country"]).to_pylist()),
        total=keys.num_rows,
        truncated=keys.num_rows > len(rows),
    )
    return result


def expected_lag_seconds(config: GoldConfig, name: str) -> float:
    """How far behind now the newest window of a healthy stream may be: the watermark, one
    window step, one trigger interval, and a minute for the feed to land in Silver_ML."""
    trigger = interval_seconds(config.trigger_interval)
    table = gold_table(name)
    step, watermark = interval_seconds(table.step), interval_seconds(table.watermark)
    return watermark + step + trigger + 60.0


def freshness(tables: GoldTables, now: datetime) -> dict[str, Any]:
    """Per Gold table: the newest window, how far its end lags behind `now`, the row count and
    the last commit, from the Delta log (file statistics) without reading the data."""
    out = []
    for name in GOLD_TABLE_NAMES:
        snap = tables.state(name)
        entry: dict[str, Any] = {
            "table": name,
            "path": snap.path,
            "status": tables.status(name),
            "rows": snap.rows_total,
            "newest_window_start": iso(snap.newest_window_start),
            "newest_window_end": iso(snap.newest_window_end),
            "lag_seconds": None,
            "expected_lag_seconds": expected_lag_seconds(tables.config, name),
            "stale": None,
            "version": snap.version,
            "last_commit": iso(snap.last_commit),
        }
        if snap.newest_window_end is not None:
            lag = (now - snap.newest_window_end).total_seconds()
            entry.update(lag_seconds=lag, stale=lag > entry["expected_lag_seconds"])
        out.append(entry)
    return {"now": iso(now), "tables": out}


def last_alert(config: GoldConfig, settings: AlertSettings) -> dict[str, Any]:
    """When the alert DAG last sent an alert, from its ledger (alerting.ledger.LedgerStore)."""
    where = settings.ledger_location(config)
    result: dict[str, Any] = {
        "dag_id": ALERTS_DAG_ID,
        "ledger": where,
        "sent_at": None,
        "run_id": None,
        "breaches": None,
        "last_check": None,
    }
    try:
        ledger = LedgerStore(where, config).load()
    except LedgerError as exc:
        return {**result, "status": "error", "message": str(exc)}
    result["last_check"] = iso(ledger.updated_at)
    if not ledger.last_alert:
        message = (
            "no alert sent yet"
            if ledger.updated_at
            else f"no alert sent yet: the DAG {ALERTS_DAG_ID} has not checked the Gold table so far"
        )
        return {**result, "status": "none", "message": message}
    sent_at = ledger.last_alert.get("at")
    return {
        **result,
        "status": "sent",
        "sent_at": iso(parse_iso(sent_at)) if sent_at else None,
        "run_id": ledger.last_alert.get("run_id"),
        "breaches": ledger.last_alert.get("breaches"),
        "message": None,
    }


def empty_state(tables: GoldTables, fresh: dict[str, Any]) -> dict[str, Any] | None:
    """What to start when a Gold table is missing or empty (None when both have rows)."""
    states = {t["table"]: t["status"] for t in fresh["tables"]}
    if all(s == "ok" for s in states.values()):
        return None
    config = tables.config
    waiting = [n for n, s in states.items() if s != "ok"]
    steps = []
    if not silver_ml_ready(config):
        steps.append(
            f"Feed Silver_ML: no Delta table at {config.paths.silver_flights_ml} yet "
            "(for example `python -m flight_gold.feed.replay`)."
        )
    steps.append(
        f"Trigger the DAG `{STREAMING_DAG_ID}` in Airflow (Dags > {STREAMING_DAG_ID} > Trigger): "
        "it waits for Silver_ML, then starts the streaming job."
    )
    steps.append(
        "The first windows land a few minutes after data arrives: a window is written once "
        f"the watermark passes its end ({FLIGHT_PHASE_COUNTS.window} + {FLIGHT_PHASE_COUNTS.watermark} for "
        f"flight_phase_counts, {ANOMALY_ALERTS.step} + {ANOMALY_ALERTS.watermark} for anomaly_alerts)."
    )
    missing = [n for n in waiting if states[n] == "missing"]
    title = (
        "No Gold tables yet"
        if len(missing) == len(GOLD_TABLE_NAMES)
        else "Waiting for Gold data: "
        + ", ".join(
            f"{n} ({'not created yet' if states[n] == 'missing' else 'no window yet'})" for n in waiting
        )
    )
    return {"title": title, "tables": waiting, "steps": steps}


def page(
    config: GoldConfig,
    time_range: TimeRange,
    now: datetime,
    settings: AlertSettings | None = None,
    tables: GoldTables | None = None,
) -> dict[str, Any]:
    """Everything the page shows, from one opening of each Gold table. `range` is the range
    shown: the one asked for, or (with `adjusted`, `requested` and `note`) the same span ending at
    the newest window when the one asked for holds none (data_range)."""
    settings = settings or alert_settings()
    tables = tables or GoldTables.open(config)
    fresh = freshness(tables, now)
    time_range, moved = data_range(tables, time_range)
    return {
        "generated_at": iso(now),
        "range": {**time_range.as_dict(), **(moved or {})},
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
