"""The page's stream panels without Airflow: the range that moves to the newest data when the one
asked for holds none, the stream's health from the supervisor's document with Gold's lag behind
Silver_ML, and the per-batch metrics series."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from flight_gold import dashboard as d
from flight_gold.alerting import AlertSettings
from flight_gold.core.times import iso
from flight_gold.dashboard import stream
from flight_gold.lake.metrics import MetricsWriter
from flight_gold.supervision.health import HealthStore, StreamHealth
from support.dashboard_data import REFERENCE_NOW, phase_records, write_known_gold
from support.stream_data import catch_up, feed

NOW = REFERENCE_NOW  # 2025-06-01T12:10:00Z


@pytest.fixture
def gold(lakehouse):
    write_known_gold(lakehouse)
    return lakehouse


def test_a_relative_range_without_windows_moves_to_the_newest_window(gold):
    later = NOW + timedelta(days=3)
    snap = d.page(gold, d.resolve_range("1h", now=later), later, AlertSettings())
    assert snap["range"] == {
        "start": "2025-06-01T11:07:00Z",
        "end": "2025-06-01T12:07:00Z",
        "label": "1h",
        "adjusted": True,
        "requested": {"start": "2025-06-04T11:10:00Z", "end": "2025-06-04T12:10:00Z", "label": "1h"},
        "note": "No Gold window in the last 1 hour: showing the 1 hour up to the newest window "
        "(2025-06-01 12:07 UTC).",
    }
    in_range = [r for r in phase_records(NOW) if iso(r["window_start"]) >= "2025-06-01T11:07:00Z"]
    assert snap["phase_counts"]["total_observations"] == sum(r["flight_count"] for r in in_range) > 0
    assert [r["origin_country"] for r in snap["breaches"]["rows"]] == ["Portugal", "France", "Germany"]
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap


def test_a_range_with_windows_or_a_custom_one_stays(gold):
    kept = d.page(gold, d.resolve_range("1h", now=NOW), NOW, AlertSettings())["range"]
    assert kept == {"start": "2025-06-01T11:10:00Z", "end": "2025-06-01T12:10:00Z", "label": "1h"}
    custom = d.resolve_range(
        None, "2025-06-03T00:00:00Z", "2025-06-03T01:00:00Z", now=NOW + timedelta(days=3)
    )
    snap = d.page(gold, custom, NOW + timedelta(days=3), AlertSettings())
    assert snap["range"] == custom.as_dict() and snap["phase_counts"]["total_observations"] == 0


def test_health_before_any_supervisor(lakehouse):
    health = stream.stream_health(lakehouse, NOW)
    assert (health["state"], health["restarts_24h"], health["last_failure"]) == ("never_started", 0, None)
    assert health["freshness"]["silver_version"] is None


def test_health_of_a_restarted_stream_with_its_lag_behind_silver(lakehouse):
    start = NOW - timedelta(minutes=30)
    silver = feed(lakehouse, 0, 10, start=start)
    catch_up(lakehouse, silver)
    feed(lakehouse, 10, 15, start=start)  # Gold has not caught up with these 15 minutes
    h = StreamHealth()
    h.supervising("gold_streaming", "manual__1", 1, "continuous", NOW - timedelta(hours=30))
    h.job_started(NOW - timedelta(hours=30))
    h.unplanned_stop("old", -9, 5, NOW - timedelta(hours=25))
    h.unplanned_stop("streaming_gold: query anomaly_alerts failed: boom", 1, 10, NOW - timedelta(minutes=20))
    h.job_started(NOW - timedelta(minutes=19, seconds=50))
    HealthStore(lakehouse).save(h, now=NOW - timedelta(seconds=20))

    health = stream.stream_health(lakehouse, NOW)
    assert (health["state"], health["running_since"], health["restarts_24h"]) == (
        "running",
        "2025-06-01T11:50:10Z",
        1,
    )
    assert health["last_failure"] == {
        "at": "2025-06-01T11:50:00Z",
        "reason": "streaming_gold: query anomaly_alerts failed: boom",
        "exit_code": 1,
    }
    by_table = {t["table"]: t for t in health["freshness"]["tables"]}
    assert (by_table["flight_phase_counts"]["behind_seconds"], by_table["flight_phase_counts"]["stale"]) == (
        900.0,
        True,
    )
    assert health["freshness"]["threshold_seconds"] == 600.0
    # No heartbeat for two minutes: the page cannot say the stream runs.
    silent = stream.stream_health(lakehouse, NOW + timedelta(minutes=2))
    assert silent["state"] == "unknown" and silent["message"].startswith(
        "no news from the supervising task since"
    )


def test_metrics_series_in_the_range_and_thinned_when_long(lakehouse, monkeypatch):
    writer = MetricsWriter(lakehouse)
    for k in range(40):
        for query in ("anomaly_alerts", "flight_phase_counts"):
            writer.add(
                {
                    "batch_time": NOW - timedelta(seconds=400 - 10 * k),
                    "query": query,
                    "run_id": "r",
                    "batch_id": k,
                    "input_rows": 10,
                    "processed_rows_per_second": float(k),
                    "batch_duration_ms": 100 * k,
                    "state_rows": k,
                    "late_rows_dropped": 1,
                }
            )
    writer.close()
    last_5m = d.resolve_range("5m", now=NOW)
    series = stream.stream_metrics(lakehouse, last_5m)
    assert (series["status"], series["batches"]) == ("ok", 60)
    phases = series["queries"]["flight_phase_counts"]
    assert phases["times"][0] == "2025-06-01T12:05:00Z" and len(phases["times"]) == 30
    assert phases["processed_rows_per_second"][:3] == [10.0, 11.0, 12.0]
    assert phases["late_rows_dropped"] == [1.0] * 30
    monkeypatch.setattr(stream, "MAX_POINTS", 10)  # 30-second buckets: three batches each
    thin = stream.stream_metrics(lakehouse, last_5m)["queries"]["flight_phase_counts"]
    assert thin["times"][:2] == ["2025-06-01T12:05:00Z", "2025-06-01T12:05:30Z"] and len(thin["times"]) == 10
    assert thin["processed_rows_per_second"][0] == 11.0 and thin["batch_duration_ms"][0] == 1100.0
    assert (thin["state_rows"][0], thin["late_rows_dropped"][0]) == (12.0, 3.0)
