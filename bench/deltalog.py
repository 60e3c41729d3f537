"""Commit times and contents read straight from a local `_delta_log`.

Freshness is measured between two commits of two tables, so it needs what each commit holds:
for Silver_ML the newest event time a commit added (from the add actions' stats, which delta-rs
writes), for a Gold table the windows a commit added (from the files it added) and the
micro-batch that wrote it (the Gold writer's commitInfo.userMetadata gold_batch_id, or the
version of the `txn` action Spark's Delta sink and the earlier writer set to the batch id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pyarrow.parquet as pq


@dataclass
class Commit:
    version: int
    timestamp_ms: int
    operation: str | None
    epoch_id: int | None
    added: list[dict] = field(default_factory=list)


def read_commits(table_path: str | Path) -> list[Commit]:
    """Every JSON commit of the table, oldest first (the benchmark's tables are younger than the
    log retention, so no commit file has been cleaned up)."""
    log_dir = Path(table_path) / "_delta_log"
    commits = []
    for path in sorted(log_dir.glob("[0-9]" * 20 + ".json")):
        info, added, epoch = {}, [], None
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "commitInfo" in action:
                info = action["commitInfo"]
            elif "add" in action:
                added.append(action["add"])
            elif "txn" in action:
                epoch = int(action["txn"]["version"])
        if epoch is None and info.get("userMetadata"):
            epoch = json.loads(info["userMetadata"]).get("gold_batch_id")
        commits.append(
            Commit(
                version=int(path.stem),
                timestamp_ms=int(info.get("timestamp", int(path.stat().st_mtime * 1000))),
                operation=info.get("operation"),
                epoch_id=epoch,
                added=added,
            )
        )
    return commits


def _ts_ms(value) -> int:
    ts = pd.Timestamp(value)
    if ts.tz is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1_000_000)


def _file(table_path: Path, add: dict) -> Path:
    return table_path / unquote(add["path"])


def silver_commits(table_path: str | Path) -> list[dict]:
    """[{version, timestamp_ms, min_event_ms, max_event_ms, rows}] for each Silver_ML commit that
    added rows."""
    table_path = Path(table_path)
    out = []
    for c in read_commits(table_path):
        if not c.added:
            continue
        lows, highs, rows = [], [], 0
        for add in c.added:
            stats = json.loads(add["stats"]) if add.get("stats") else {}
            low = (stats.get("minValues") or {}).get("event_timestamp")
            high = (stats.get("maxValues") or {}).get("event_timestamp")
            if high is not None and low is not None:
                lows.append(_ts_ms(low))
                highs.append(_ts_ms(high))
                rows += int(stats.get("numRecords", 0))
            else:  # no stats: read the column
                column = pq.read_table(_file(table_path, add), columns=["event_timestamp"]).column(0)
                rows += len(column)
                values = pd.Series(column.to_pandas()).dropna()
                if len(values):
                    lows.append(_ts_ms(values.min()))
                    highs.append(_ts_ms(values.max()))
        out.append(
            {
                "version": c.version,
                "timestamp_ms": c.timestamp_ms,
                "min_event_ms": min(lows) if lows else None,
                "max_event_ms": max(highs) if highs else None,
                "rows": rows,
            }
        )
    return out


def gold_windows(table_path: str | Path) -> dict[int, dict]:
    """{window_end_ms: {timestamp_ms, version, epoch_id}} for the first commit that added each
    window of a Gold table."""
    table_path = Path(table_path)
    first: dict[int, dict] = {}
    for c in read_commits(table_path):
        for add in c.added:
            ends = pq.read_table(_file(table_path, add), columns=["window_end"]).column(0)
            for end in set(ends.to_pylist()):
                if end is None:
                    continue
                key = _ts_ms(end)
                if key not in first:
                    first[key] = {
                        "timestamp_ms": c.timestamp_ms,
                        "version": c.version,
                        "epoch_id": c.epoch_id,
                    }
    return first
