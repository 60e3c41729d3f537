"""How far each Gold table lags what Silver_ML's data closes, read from the Delta logs' file
statistics with `deltalake` (no JVM, no data read).

For a Gold table with watermark W and window step S, Silver_ML's newest event time T closes every
window ending at or before T - W: a healthy stream's newest window ends at
floor((T - W) / S) * S, give or take a trigger. `behind_s` is how far the table's newest window
end is before that; the table is stale when it is more than the threshold behind. A Silver_ML row
stamped in the future beyond the job's skew guard (GOLD_MAX_FUTURE_SKEW) is dropped by the job,
so T never counts past now + that skew. A Gold table that does not exist is not measured (its
query may not run here); a stream that never started is what the "no stream is running while
Silver_ML grows" rule of flight_gold.supervision.staleness reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import GOLD_TABLE_NAMES, gold_table
from flight_gold.core.intervals import interval_ms, interval_seconds
from flight_gold.core.times import from_epoch_ms, iso
from flight_gold.lake.stats import column_bounds
from flight_gold.lake.tables import open_table


@dataclass(frozen=True)
class TableFreshness:
    table: str
    exists: bool
    newest_window_end: datetime | None
    expected_window_end: datetime | None  # what Silver_ML's data closes; None: nothing yet
    behind_s: float | None  # None when no window is expected yet
    stale: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "exists": self.exists,
            "newest_window_end": iso(self.newest_window_end),
            "expected_window_end": iso(self.expected_window_end),
            "behind_seconds": self.behind_s,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class Freshness:
    threshold_s: float
    silver_version: int | None
    silver_newest_event: datetime | None
    tables: list[TableFreshness] = field(default_factory=list)

    @property
    def stale_tables(self) -> list[TableFreshness]:
        return [t for t in self.tables if t.stale]

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold_seconds": self.threshold_s,
            "silver_version": self.silver_version,
            "silver_newest_event": iso(self.silver_newest_event),
            "tables": [t.to_dict() for t in self.tables],
        }


def floor_to(value: datetime, step_ms: int) -> datetime:
    ms = round(value.timestamp() * 1000)
    return from_epoch_ms(ms // step_ms * step_ms)


def table_freshness(
    name: str,
    newest_window_end: datetime | None,
    exists: bool,
    silver_bounds: tuple[datetime | None, datetime | None],
    threshold_s: float,
    now: datetime,
    max_future_skew_s: float,
) -> TableFreshness:
    """One table's lag, from its newest window end and Silver_ML's (min, max) event times."""
    table = gold_table(name)
    step_ms = interval_ms(table.step)
    first, newest = silver_bounds
    if newest is None:
        return TableFreshness(name, exists, newest_window_end, None, None, False)
    newest = min(newest, now + timedelta(seconds=max_future_skew_s))
    expected = floor_to(newest - timedelta(milliseconds=interval_ms(table.watermark)), step_ms)
    if not exists:
        # A table the stream never created: its query is not run here (the queries param), or
        # no stream ever started, which the "no stream running" rule reports.
        return TableFreshness(name, False, None, expected, None, False)
    # With no window written yet, the table stands just before the first window Silver_ML's data
    # can fill: the one holding its oldest row.
    position = newest_window_end or floor_to(first, step_ms)
    if expected <= position:
        return TableFreshness(name, exists, newest_window_end, expected, 0.0, False)
    behind = (expected - position).total_seconds()
    return TableFreshness(name, exists, newest_window_end, expected, behind, behind > threshold_s)


def measure(config: GoldConfig, threshold_s: float, now: datetime) -> Freshness:
    """Silver_ML's version and newest event time, and each Gold table's lag, from the Delta logs."""
    silver = open_table(config.paths.silver_flights_ml, config)
    silver_bounds = column_bounds(silver, "event_timestamp") if silver is not None else (None, None)
    skew_s = interval_seconds(config.max_future_skew)
    tables = []
    for name in GOLD_TABLE_NAMES:
        dt = open_table(config.paths.gold_table(name), config)
        newest_end = column_bounds(dt, "window_end")[1] if dt is not None else None
        tables.append(
            table_freshness(name, newest_end, dt is not None, silver_bounds, threshold_s, now, skew_s)
        )
    return Freshness(
        threshold_s,
        silver.version() if silver is not None else None,
        silver_bounds[1],
        tables,
    )
