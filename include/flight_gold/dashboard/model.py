"""The dashboard's read model of the Gold tables, with `deltalake` (no JVM, no Airflow).

GoldTables.open(config) reads what a request needs from the tables; GoldTables.open(config,
cache) goes through a GoldCache, the API server's in-memory copy of the last 25 hours, which each
refresh brings up to date with the commits added since. A table's state at one version
(TableState) comes from its Delta log and file statistics; rows are read per time range.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flight_gold.alerting.settings import ALERT_COLUMNS
from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import FLIGHT_PHASE_COUNTS, GOLD_TABLE_NAMES
from flight_gold.core.times import as_utc, from_epoch_ms, iso, utcnow
from flight_gold.lake.tables import open_table, table_uri

log = logging.getLogger(__name__)

TS = pa.timestamp("us", tz="UTC")
PHASE_COLUMNS = list(FLIGHT_PHASE_COUNTS.column_names)


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    label: str

    def as_dict(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end), "label": self.label}


# What the page reads of each table: every column it shows, and those select_breaches needs.
COLUMNS = {
    "flight_phase_counts": PHASE_COLUMNS,
    "anomaly_alerts": list(dict.fromkeys(["window_start", *ALERT_COLUMNS])),
}
# The API server keeps this much of each table in memory (GoldCache): the page's longest preset
# range, plus an hour of margin.
CACHE_SPAN = timedelta(hours=25)
_MAX_CHUNKS = 64


@dataclass(frozen=True)
class TableState:
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
        facts["last_commit"] = from_epoch_ms(history[0]["timestamp"])
    if files.num_rows == 0:
        return facts
    counts = files.column("num_records")
    facts["rows_total"] = dt.count() if counts.null_count else int(pc.sum(counts).as_py() or 0)
    starts, ends = "max.window_start", "max.window_end"
    if (
        {starts, ends} <= set(files.column_names)
        and not files[starts].null_count
        and not files[ends].null_count
    ):
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


def open_table_state(config: GoldConfig, name: str) -> TableState:
    """A table opened for one request; its rows are read on demand, range by range."""
    path = config.paths.gold_table(name)
    dt = open_table(path, config)
    if dt is None:
        return TableState(name, path, exists=False)
    return TableState(name, path, exists=True, table=dt, **_log_facts(dt))


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

    def refresh(self, now: datetime) -> TableState:
        # A fresh open per request (a log replay from the last checkpoint): a table deleted and
        # written anew is then seen for what it is, which an incremental update of the old
        # DeltaTable object would miss.
        dt = open_table(self.path, self.config)
        if dt is None:
            with self.lock:
                self.table_id = self.version = self.rows = self.horizon = None
            return TableState(self.name, self.path, exists=False)
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
        return TableState(self.name, self.path, exists=True, rows=rows, horizon=horizon, **facts)

    def _load_all(self, dt, now: datetime) -> None:
        self.horizon = now - self.span
        self.rows = _scan(dt, COLUMNS[self.name], start=self.horizon)
        self.full_loads += 1

    def _load_since(self, dt, version: int, now: datetime) -> None:
        """The rows the commits after the cached version added (deltalake's change feed: on a
        table without CDF it yields the appended files; OPTIMIZE rewrites are no new rows)."""
        try:
            changes = pa.table(
                dt.load_cdf(
                    starting_version=self.version + 1,
                    ending_version=version,
                    columns=[*COLUMNS[self.name], "_change_type"],
                )
            )
        except Exception as exc:
            log.info(
                "reading %s anew: its commits %d..%d are not readable (%s)",
                self.name,
                self.version + 1,
                version,
                str(exc).splitlines()[0][:200],
            )
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
    """Both Gold tables for one request: the state of each, and the rows of a range read once
    however many panels use them."""

    config: GoldConfig
    states: dict[str, TableState]
    _reads: dict[tuple, pa.Table | None] = field(default_factory=dict)

    @classmethod
    def open(
        cls, config: GoldConfig, cache: GoldCache | None = None, now: datetime | None = None
    ) -> GoldTables:
        if cache is None:
            return cls(config, {name: open_table_state(config, name) for name in GOLD_TABLE_NAMES})
        now = now or utcnow()
        return cls(config, {name: cache.entry(config, name).refresh(now) for name in GOLD_TABLE_NAMES})

    def path(self, name: str) -> str:
        return self.config.paths.gold_table(name)

    def state(self, name: str) -> TableState:
        return self.states[name]

    def status(self, name: str) -> str:
        snap = self.states[name]
        return "missing" if not snap.exists else ("ok" if snap.rows_total else "empty")

    def read(self, name: str, time_range: TimeRange) -> pa.Table | None:
        """Rows of `name` (COLUMNS[name]) with window_start in the range; None when the table
        does not exist."""
        key = (name, time_range.start, time_range.end)
        if key not in self._reads:
            self._reads[key] = self._read(name, time_range)
        return self._reads[key]

    def _read(self, name: str, time_range: TimeRange) -> pa.Table | None:
        snap = self.states[name]
        if not snap.exists:
            return None
        if snap.rows is not None and (snap.horizon is None or time_range.start >= snap.horizon):
            in_range = (pc.field("window_start") >= pa.scalar(time_range.start, TS)) & (
                pc.field("window_start") < pa.scalar(time_range.end, TS)
            )
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
        return f.with_type(TS)
    if pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type):
        return f.with_type(pa.string())
    return f


def _py_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def span_text(label: str) -> str:
    """'1h' -> '1 hour', '15m' -> '15 minutes', '2d' -> '2 days'."""
    match = re.fullmatch(r"(\d+)([mhd])", label.strip())
    if not match:
        return label
    n, unit = int(match.group(1)), {"m": "minute", "h": "hour", "d": "day"}[match.group(2)]
    return f"{n} {unit}{'' if n == 1 else 's'}"


def data_range(tables: GoldTables, time_range: TimeRange) -> tuple[TimeRange, dict[str, Any] | None]:
    """A relative range (last hour...) that holds no window while the tables hold some moves to
    the same span ending at the newest window, with a note saying so: a lakehouse fed with
    recorded traffic (the demo replays 2021) shows its data without typing dates. A custom range
    is what the user asked for and stays."""
    if time_range.label == "custom":
        return time_range, None
    ends = [
        tables.state(n).newest_window_end
        for n in GOLD_TABLE_NAMES
        if tables.state(n).exists and tables.state(n).newest_window_end is not None
    ]
    if not ends or any((tables.read(n, time_range) or pa.table({})).num_rows for n in GOLD_TABLE_NAMES):
        return time_range, None
    end = max(ends)
    moved = TimeRange(end - (time_range.end - time_range.start), end, time_range.label)
    span = span_text(time_range.label)
    note = (
        f"No Gold window in the last {span}: showing the {span} up to the newest window "
        f"({end.strftime('%Y-%m-%d %H:%M')} UTC)."
    )
    return moved, {"adjusted": True, "requested": time_range.as_dict(), "note": note}
