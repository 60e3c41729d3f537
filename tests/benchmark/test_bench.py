"""The benchmark's arithmetic (bench/metrics.py) on hand-made progress records and commits, with
values worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import metrics

E = 1_714_557_600_000  # 2024-05-01T10:00:00Z in ms
MIN = 60_000


def progress(query, batch_id, start_iso, duration_ms, rows, watermark_iso, state_rows=5, dropped=0):
    """A StreamingQueryProgress as Spark's JSON has it (the fields the benchmark reads)."""
    return {
        "id": "0000",
        "runId": "1111",
        "name": query,
        "timestamp": start_iso,
        "batchId": batch_id,
        "batchDuration": duration_ms,
        "numInputRows": rows,
        "durationMs": {"addBatch": duration_ms - 40, "triggerExecution": duration_ms},
        "eventTime": {"watermark": watermark_iso} if watermark_iso else {},
        "stateOperators": [{"numRowsTotal": state_rows, "numRowsDroppedByWatermark": dropped}],
    }


def test_percentiles_interpolate_linearly_between_ranks():
    assert metrics.percentile([4, 1, 3, 2], 50) == 2.5
    assert metrics.percentile([10, 20, 30, 40, 50], 95) == 48.0
    assert metrics.percentile([7], 95) == 7.0
    assert metrics.percentile([], 50) is None
    assert metrics.summarize([300, 100, 200]) == {
        "n": 3,
        "median": 200.0,
        "p95": 290.0,
        "mean": 200.0,
        "min": 100.0,
        "max": 300.0,
    }


def test_progress_record_fields_and_batch_statistics():
    record = metrics.batch_record(
        progress(
            "flight_phase_counts",
            7,
            "2024-05-01T10:00:10.250Z",
            310,
            6000,
            "2024-05-01T09:58:00.000Z",
            state_rows=12,
            dropped=3,
        )
    )
    assert record == {
        "query": "flight_phase_counts",
        "batch_id": 7,
        "start_ms": E + 10_250,
        "end_ms": E + 10_560,
        "duration_ms": 310,
        "input_rows": 6000,
        "watermark_ms": E - 2 * MIN,
        "state_rows": 12,
        "late_rows_dropped": 3,
        "durations": {"addBatch": 270, "triggerExecution": 310},
    }
    batches = [
        metrics.batch_record(progress(q, i, "2024-05-01T10:00:00.000Z", d, 10, None))
        for q, i, d in [
            ("flight_phase_counts", 0, 5000),
            ("flight_phase_counts", 1, 200),
            ("flight_phase_counts", 2, 400),
            ("anomaly_alerts", 0, 6000),
            ("anomaly_alerts", 1, 300),
            ("anomaly_alerts", 2, 500),
        ]
    ]
    assert batches[0]["watermark_ms"] is None
    measured = metrics.measured_batches(batches, warmup=1)
    assert [(b["query"], b["batch_id"]) for b in measured] == [
        ("flight_phase_counts", 1),
        ("flight_phase_counts", 2),
        ("anomaly_alerts", 1),
        ("anomaly_alerts", 2),
    ]
    stats = metrics.batch_stats(measured)
    assert stats["flight_phase_counts"]["median"] == 300.0
    assert stats["anomaly_alerts"]["median"] == 400.0
    assert stats["both"]["median"] == 350.0
    assert stats["both"]["p95"] == pytest.approx(485.0)  # 400 + 0.85 * (500 - 400)
    assert stats["both"]["n"] == 4


def test_catchup_rate_spans_both_queries_and_counts_rows_once():
    batches = [
        {"query": "flight_phase_counts", "start_ms": 1_000, "end_ms": 3_000},
        {"query": "flight_phase_counts", "start_ms": 3_100, "end_ms": 4_500},
        {"query": "anomaly_alerts", "start_ms": 1_200, "end_ms": 5_000},
    ]
    rate = metrics.catchup_rate(batches, 2_000_000)
    assert rate == {
        "rows": 2_000_000,
        "seconds": 4.0,
        "rows_per_second": 500_000.0,
        "batches": {"anomaly_alerts": 1, "flight_phase_counts": 2},
    }


SILVER = [
    # version, commit time, event times it added
    {"version": 0, "timestamp_ms": E + 185_000, "min_event_ms": E, "max_event_ms": E + 180_000, "rows": 9},
    {
        "version": 1,
        "timestamp_ms": E + 190_000,
        "min_event_ms": E + 180_001,
        "max_event_ms": E + 185_000,
        "rows": 9,
    },
    # an empty commit: no event time
    {"version": 2, "timestamp_ms": E + 200_000, "min_event_ms": None, "max_event_ms": None, "rows": 0},
    {
        "version": 3,
        "timestamp_ms": E + 245_000,
        "min_event_ms": E + 185_001,
        "max_event_ms": E + 241_000,
        "rows": 9,
    },
]


def test_closing_commit_is_the_first_whose_running_max_passes_end_plus_delay():
    # 10:01 window, 2-minute delay: needs an event at 10:03 or later -> version 0 (max 10:03:00).
    assert metrics.closing_commit(SILVER, E + MIN, 2 * MIN)["version"] == 0
    # 10:02 window: needs 10:04 -> version 3 (max 10:04:01).
    assert metrics.closing_commit(SILVER, E + 2 * MIN, 2 * MIN)["version"] == 3
    # 10:03 window: needs 10:05, never reached.
    assert metrics.closing_commit(SILVER, E + 3 * MIN, 2 * MIN) is None


def test_freshness_per_window_and_the_batch_that_emitted_it():
    gold = {
        E + MIN: {"timestamp_ms": E + 192_000, "version": 3, "epoch_id": 4},
        E + 2 * MIN: {"timestamp_ms": E + 256_500, "version": 5, "epoch_id": 6},
    }
    batches = [
        metrics.batch_record(progress("flight_phase_counts", i, start, 400, 10, wm))
        for i, start, wm in [
            (3, "2024-05-01T10:03:06.000Z", "2024-05-01T10:00:59.000Z"),
            (4, "2024-05-01T10:03:11.000Z", "2024-05-01T10:01:00.000Z"),
            (5, "2024-05-01T10:04:06.000Z", "2024-05-01T10:01:05.000Z"),
            (6, "2024-05-01T10:04:16.000Z", "2024-05-01T10:02:01.000Z"),
        ]
    ]
    # another query's batches are not this table's
    batches.append(
        metrics.batch_record(
            progress("anomaly_alerts", 4, "2024-05-01T10:03:11.000Z", 400, 10, "2024-05-01T10:05:00.000Z")
        )
    )
    result = metrics.window_freshness(
        SILVER, gold, "flight_phase_counts", batches, 2 * MIN, measure_from_ms=E, until_ms=E + 400_000
    )
    assert result["missing"] == []
    assert result["windows"] == [
        {
            "table": "flight_phase_counts",
            "window_end_ms": E + MIN,
            "silver_version": 0,
            "silver_commit_ms": E + 185_000,
            "gold_version": 3,
            "gold_commit_ms": E + 192_000,
            "gold_epoch": 4,
            "emitting_batch": 4,
            "freshness_s": 7.0,
        },
        {
            "table": "flight_phase_counts",
            "window_end_ms": E + 2 * MIN,
            "silver_version": 3,
            "silver_commit_ms": E + 245_000,
            "gold_version": 5,
            "gold_commit_ms": E + 256_500,
            "gold_epoch": 6,
            "emitting_batch": 6,
            "freshness_s": 11.5,
        },
    ]
    assert metrics.summarize([w["freshness_s"] for w in result["windows"]])["median"] == 9.25

    # Only windows closed inside the measured interval count; the start-up one is left out.
    later = metrics.window_freshness(
        SILVER,
        gold,
        "flight_phase_counts",
        batches,
        2 * MIN,
        measure_from_ms=E + 186_000,
        until_ms=E + 400_000,
    )
    assert [w["window_end_ms"] for w in later["windows"]] == [E + 2 * MIN]

    # A window the watermark closed that never reached Gold is reported, not silently skipped.
    lost = metrics.window_freshness(
        SILVER,
        {E + MIN: gold[E + MIN]},
        "flight_phase_counts",
        batches,
        2 * MIN,
        measure_from_ms=E,
        until_ms=E + 400_000,
    )
    assert lost["missing"] == [E + 2 * MIN]
    assert [w["window_end_ms"] for w in lost["windows"]] == [E + MIN]


def test_memory_trend_slope_and_growth():
    mib = 2**20
    samples = [(t, 1000 * mib + t / 60 * mib) for t in range(0, 7201, 600)]  # +1 MiB a minute
    trend = metrics.linear_trend(samples, skip_s=600)
    assert trend["samples"] == 12
    assert trend["span_s"] == 6600.0
    assert trend["slope_mib_per_hour"] == pytest.approx(60.0)
    assert trend["start_mib"] == pytest.approx(1010.0)
    assert trend["end_mib"] == pytest.approx(1120.0)
    assert trend["growth_pct"] == pytest.approx(110 / 1010 * 100)
    assert metrics.linear_trend(samples[:2]) is None


GC_LOG = """\
[0.012s] Using G1
[4.210s] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 51M->9M(256M) 6.789ms
[130.002s] GC(1) Pause Young (Concurrent Start) (G1 Humongous Allocation) 210M->88M(512M) 12.100ms
[130.050s] GC(2) Concurrent Mark Cycle
[131.500s] GC(2) Pause Remark 120M->119M(512M) 2.001ms
[290.900s] GC(3) Pause Young (Mixed) (G1 Evacuation Pause) 300M->70M(512M) 9.000ms
[301.000s] GC(4) Pause Young (Allocation Failure) 400M->95M(980M) 8.000ms
[650.000s] GC(5) Pause Full (System.gc()) 150M->61M(980M) 80.000ms
"""


def test_heap_after_gc_reads_every_pause_and_the_floor_is_the_lowest_per_bucket():
    mib = 2**20
    samples = metrics.heap_after_gc(GC_LOG.splitlines())
    # Six pauses (the concurrent cycle's line and the banner are not pauses).
    assert samples == [
        (4.21, 9 * mib),
        (130.002, 88 * mib),
        (131.5, 119 * mib),
        (290.9, 70 * mib),
        (301.0, 95 * mib),
        (650.0, 61 * mib),
    ]
    # Buckets [0, 300), [300, 600), [600, 900): the lowest of each, at its own time.
    assert metrics.heap_floor(samples, every_s=300) == [(4.21, 9 * mib), (301.0, 95 * mib), (650.0, 61 * mib)]
    assert metrics.heap_floor([]) == []
    assert metrics.heap_after_gc(GC_LOG.splitlines(), full=True) == [(650.0, 61 * mib)]
    assert [t for t, _ in metrics.heap_after_gc(GC_LOG.splitlines(), full=False)] == [
        4.21,
        130.002,
        131.5,
        290.9,
        301.0,
    ]


def test_memory_goal_judges_the_live_heap_when_there_is_one():
    flat = {"growth_pct": 3.0}
    rising = {"growth_pct": 25.0}
    on_heap = metrics.goals({"memory": {"trend": rising, "heap_trend": flat}}, trigger_interval_s=10)[-1]
    assert (on_heap["value"], on_heap["met"]) == (3.0, True)
    assert "live heap" in on_heap["goal"]
    on_rss = metrics.goals({"memory": {"trend": rising, "heap_trend": None}}, trigger_interval_s=10)[-1]
    assert (on_rss["value"], on_rss["met"]) == (25.0, False)
    assert "RSS" in on_rss["goal"]


def test_goals_report_values_and_verdicts():
    results = {
        "realtime_batch_ms_median": 250.0,
        "realtime_speedup_vs_seed": 3.5,
        "catchup_rows_per_second": 600_000.0,
        "catchup_speedup_vs_seed": 2.0,
        "duckdb_rows_per_second": 1_200_000.0,
        "freshness_s_median": 12.0,
        "memory": {"trend": None},
    }
    verdicts = [(g["value"], g["met"]) for g in metrics.goals(results, trigger_interval_s=10)]
    assert verdicts == [
        (250.0, True),
        (3.5, False),
        (600_000.0, True),
        (2.0, True),
        (2.0, True),
        (12.0, False),
        (None, None),
    ]


def test_gc_log_option_joins_the_jvm_options_a_trial_already_sets():
    from bench.run import with_gc_log

    log = Path("/w/realtime-job.gc.log")
    plain = with_gc_log(["--master", "local[2]"], log)
    assert plain == [
        "--master",
        "local[2]",
        "--conf",
        "spark.driver.extraJavaOptions=-Xlog:gc:file=/w/realtime-job.gc.log:uptime",
    ]
    trial = with_gc_log(["--conf", "spark.driver.extraJavaOptions=-XX:+UseParallelGC", "--conf", "a=b"], log)
    assert trial == [
        "--conf",
        "spark.driver.extraJavaOptions=-XX:+UseParallelGC -Xlog:gc:file=/w/realtime-job.gc.log:uptime",
        "--conf",
        "a=b",
    ]
