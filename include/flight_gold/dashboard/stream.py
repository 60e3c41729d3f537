"""What the Flight Gold page shows about the stream itself: its health as the supervising task
records it (`_control/gold_streaming_health.json`), Gold's lag behind Silver_ML per table (file
statistics, flight_gold.supervision.freshness), and the per-batch metrics the job keeps
(`_metrics/gold_stream_progress`) for the charts. No JVM, no Airflow."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from flight_gold.airflow.defaults import STOP_DAG_ID, STREAMING_DAG_ID
from flight_gold.core.config import GoldConfig
from flight_gold.core.intervals import duration_seconds
from flight_gold.core.times import iso
from flight_gold.dashboard.model import TimeRange
from flight_gold.lake.metrics import read_metrics
from flight_gold.supervision.freshness import measure
from flight_gold.supervision.health import HEARTBEAT_S, HealthStore

# A supervisor that has not written its heartbeat for this long is not known to be alive.
SILENT_AFTER_S = 4 * HEARTBEAT_S
# Points per query and chart: a day of 10-second batches is 8,640; the charts need far fewer.
MAX_POINTS = 720
METRIC_SERIES = ("processed_rows_per_second", "batch_duration_ms", "state_rows", "late_rows_dropped")


def stream_health(config: GoldConfig, now: datetime) -> dict[str, Any]:
    """The stream's state, running since, restarts in the last 24 h, the last failure, and each
    Gold table's lag behind Silver_ML."""
    threshold = duration_seconds(config.freshness_threshold)
    result: dict[str, Any] = {
        "state": "never_started",
        "run_id": None,
        "running_since": None,
        "restarts_24h": 0,
        "restarts": [],
        "last_failure": None,
        "next_restart_at": None,
        "message": f"no {STREAMING_DAG_ID} run has supervised the stream on this lakehouse yet",
        "updated_at": None,
        "silent_seconds": None,
        "freshness": measure(config, threshold, now).to_dict(),
    }
    health = HealthStore(config).load()
    if health is None:
        return result
    doc = health.to_dict(now)
    silent = (now - health.updated_at).total_seconds() if health.updated_at else None
    result.update(
        state=health.state,
        run_id=health.run_id,
        running_since=doc["running_since"],
        restarts_24h=len(doc["restarts"]),
        restarts=doc["restarts"],
        last_failure=doc["last_failure"],
        next_restart_at=doc["next_restart_at"],
        message=health.message,
        updated_at=doc["updated_at"],
        silent_seconds=silent,
    )
    if (
        health.state in ("starting", "running", "restarting")
        and silent is not None
        and silent > SILENT_AFTER_S
    ):
        result["state"] = "unknown"
        result["message"] = (
            f"no news from the supervising task since {iso(health.updated_at)}: it may have been lost; "
            f"Airflow retries it (see the {STREAMING_DAG_ID} run)"
        )
    elif health.state == "gave_up":
        result["message"] = health.message
    elif health.state == "stopped" and not health.message:
        result["message"] = f"stopped (DAG {STOP_DAG_ID})"
    return result


def stream_metrics(config: GoldConfig, time_range: TimeRange) -> dict[str, Any]:
    """Per query, the series of the metrics table in the range (batch start time, wall clock):
    rows processed per second, batch duration, state rows, late rows; at most MAX_POINTS points
    per query (bucket averages of rates and durations, the largest state, the sum of late rows)."""
    result: dict[str, Any] = {"status": "missing", "queries": {}, "batches": 0}
    table = read_metrics(config, time_range.start, time_range.end)
    if table is None:
        return result
    result["status"] = "ok" if table.num_rows else "empty"
    result["batches"] = table.num_rows
    if not table.num_rows:
        return result
    frame = table.select(["batch_time", "query", *METRIC_SERIES]).to_pandas()
    width = max(timedelta(seconds=1), (time_range.end - time_range.start) / MAX_POINTS)
    for query, rows in frame.groupby("query", sort=True):
        if len(rows) > MAX_POINTS:
            bucket = (
                time_range.start + ((rows["batch_time"] - pd.Timestamp(time_range.start)) // width) * width
            )
            rows = (
                rows.assign(batch_time=bucket)
                .groupby("batch_time", as_index=False)
                .agg(
                    processed_rows_per_second=("processed_rows_per_second", "mean"),
                    batch_duration_ms=("batch_duration_ms", "mean"),
                    state_rows=("state_rows", "max"),
                    late_rows_dropped=("late_rows_dropped", "sum"),
                )
            )
        result["queries"][query] = {
            "times": [iso(t.to_pydatetime()) for t in rows["batch_time"]],
            **{name: [round(float(v), 1) for v in rows[name]] for name in METRIC_SERIES},
        }
    return result
