"""The benchmark's arithmetic, free of Spark and of I/O so that tests can check it exactly:
percentiles, micro-batch statistics, catch-up rate, Gold freshness, memory trend, goals."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np

# Watermark delays of the two Gold queries (SPEC.md), in milliseconds.
DELAYS_MS = {"flight_phase_counts": 2 * 60_000, "anomaly_alerts": 6 * 60_000}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, as most dashboards use)."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype="float64"), q))


def summarize(values: Sequence[float]) -> dict:
    values = list(values)
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": float(np.mean(values)) if values else None,
        "min": float(min(values)) if values else None,
        "max": float(max(values)) if values else None,
    }


def iso_ms(value: str | None) -> int | None:
    """Spark's progress timestamps ('2024-05-01T10:00:00.000Z') as epoch milliseconds."""
    if not value:
        return None
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def batch_record(progress: dict) -> dict:
    """The fields of one StreamingQueryProgress (its JSON form) that the benchmark uses."""
    start = iso_ms(progress["timestamp"])
    duration = int(progress.get("batchDuration") or progress.get("durationMs", {}).get("triggerExecution", 0))
    return {
        "query": progress.get("name") or progress.get("id"),
        "batch_id": int(progress["batchId"]),
        "start_ms": start,
        "end_ms": start + duration,
        "duration_ms": duration,
        "input_rows": int(progress.get("numInputRows", 0)),
        "watermark_ms": iso_ms((progress.get("eventTime") or {}).get("watermark")),
        "state_rows": sum(int(op.get("numRowsTotal", 0)) for op in progress.get("stateOperators", [])),
        "late_rows_dropped": sum(
            int(op.get("numRowsDroppedByWatermark", 0)) for op in progress.get("stateOperators", [])
        ),
        "durations": dict(progress.get("durationMs", {})),
    }


def measured_batches(batches: Iterable[dict], warmup: int) -> list[dict]:
    """Drops each query's first `warmup` batches (JVM warm-up, the backlog the run starts with)."""
    return [b for b in batches if b["batch_id"] >= warmup]


def batch_stats(batches: Sequence[dict]) -> dict:
    """Median/p95 batch duration per query and for both queries pooled ('both')."""
    by_query: dict[str, list[float]] = {}
    for b in batches:
        by_query.setdefault(b["query"], []).append(b["duration_ms"])
    stats = {q: summarize(v) for q, v in sorted(by_query.items())}
    stats["both"] = summarize([b["duration_ms"] for b in batches])
    return stats


def catchup_rate(batches: Sequence[dict], rows: int) -> dict:
    """Backlog rows per second of draining: from the start of the first batch of either query to
    the end of the last (each query reads every row once, so the rows are counted once)."""
    start = min(b["start_ms"] for b in batches)
    end = max(b["end_ms"] for b in batches)
    seconds = (end - start) / 1000.0
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds if seconds > 0 else None,
        "batches": {
            q: sum(1 for b in batches if b["query"] == q) for q in sorted({b["query"] for b in batches})
        },
    }


def closing_commit(silver: Sequence[dict], window_end_ms: int, delay_ms: int) -> dict | None:
    """The first Silver commit after which the watermark (newest event time so far minus the
    delay) reaches the window's end, i.e. the commit whose rows let Spark close the window."""
    running, cummax = None, []
    for c in silver:
        if c["max_event_ms"] is not None:
            running = c["max_event_ms"] if running is None else max(running, c["max_event_ms"])
        cummax.append(float("-inf") if running is None else running)
    i = bisect.bisect_left(cummax, window_end_ms + delay_ms)
    return silver[i] if i < len(silver) else None


def window_freshness(
    silver: Sequence[dict],
    gold: dict[int, dict],
    query: str,
    batches: Sequence[dict],
    delay_ms: int,
    measure_from_ms: int,
    until_ms: int,
) -> dict:
    """Freshness of every window of one Gold table whose closing Silver commit happened in
    [measure_from_ms, until_ms]: Gold commit time minus closing Silver commit time.

    `batches` are the query's progress records; the batch that emitted a window is the first one
    whose watermark reached its end, and must be the batch that wrote the Gold commit (epochId).
    A window closed in the interval but absent from Gold is reported missing.
    """
    silver = sorted(silver, key=lambda c: c["version"])
    own = sorted((b for b in batches if b["query"] == query), key=lambda b: b["batch_id"])
    candidates = set(gold)
    # A window that closed but never reached Gold is found from the Silver side: the windows end
    # on minute boundaries, from the first observed minute to the newest watermark.
    lows = [c.get("min_event_ms", c["max_event_ms"]) for c in silver if c["max_event_ms"] is not None]
    if lows:
        first_end = (min(lows) // 60_000 + 1) * 60_000
        top = max(c["max_event_ms"] for c in silver if c["max_event_ms"] is not None)
        candidates |= set(range(first_end, top - delay_ms + 1, 60_000))
    windows, missing = [], []
    for end in sorted(candidates):
        closing = closing_commit(silver, end, delay_ms)
        if closing is None or not (measure_from_ms <= closing["timestamp_ms"] <= until_ms):
            continue
        emitting = next(
            (b["batch_id"] for b in own if b["watermark_ms"] is not None and b["watermark_ms"] >= end), None
        )
        hit = gold.get(end)
        if hit is None:
            missing.append(end)
            continue
        windows.append(
            {
                "table": query,
                "window_end_ms": end,
                "silver_version": closing["version"],
                "silver_commit_ms": closing["timestamp_ms"],
                "gold_version": hit["version"],
                "gold_commit_ms": hit["timestamp_ms"],
                "gold_epoch": hit.get("epoch_id"),
                "emitting_batch": emitting,
                "freshness_s": (hit["timestamp_ms"] - closing["timestamp_ms"]) / 1000.0,
            }
        )
    return {"windows": windows, "missing": missing}


def linear_trend(samples: Sequence[tuple[float, float]], skip_s: float = 0.0) -> dict | None:
    """Least-squares slope of (seconds, bytes) samples after `skip_s`: MiB per hour, and the growth
    of the fitted line over the span as a share of its start."""
    points = [(t, v) for t, v in samples if t >= skip_s]
    if len(points) < 3:
        return None
    t = np.array([p[0] for p in points], dtype="float64")
    v = np.array([p[1] for p in points], dtype="float64")
    slope, intercept = np.polyfit(t, v, 1)
    first, last = intercept + slope * t[0], intercept + slope * t[-1]
    return {
        "samples": len(points),
        "span_s": float(t[-1] - t[0]),
        "slope_mib_per_hour": float(slope * 3600 / 2**20),
        "growth_pct": float((last - first) / first * 100) if first else None,
        "start_mib": float(first / 2**20),
        "end_mib": float(last / 2**20),
    }


# A JDK 17 unified GC log line with the `uptime` decorator, e.g.
# "[812.345s] GC(97) Pause Young (Normal) (G1 Evacuation Pause) 412M->98M(1024M) 4.321ms".
GC_PAUSE = re.compile(
    r"^\[(?P<uptime>\d+(?:\.\d+)?)s\].*?GC\(\d+\) Pause .*?"
    r"(?P<before>\d+)M->(?P<after>\d+)M\((?P<committed>\d+)M\)"
)


def heap_after_gc(lines: Iterable[str], full: bool | None = None) -> list[tuple[float, int]]:
    """(JVM uptime seconds, heap bytes in use right after the pause) for each GC pause logged;
    `full=True` keeps only full collections (Spark's ContextCleaner asks for one every 30 minutes:
    what is left is exactly the live data), `full=False` only the others."""
    out = []
    for line in lines:
        match = GC_PAUSE.match(line)
        if match and (full is None or full == (" Pause Full " in line)):
            out.append((float(match["uptime"]), int(match["after"]) * 2**20))
    return out


def heap_floor(samples: Sequence[tuple[float, int]], every_s: float = 300.0) -> list[tuple[float, int]]:
    """The lowest heap-after-GC of each `every_s` bucket, at the time it was seen: what the JVM
    could not free, i.e. the live data plus old garbage G1 had not reached yet. A leak shows as a
    rising floor; RSS does not tell one from the heap growing into its limit, which the JVM does
    lazily and gives back only now and then."""
    buckets: dict[int, tuple[float, int]] = {}
    for t, used in samples:
        key = int(t // every_s)
        if key not in buckets or used < buckets[key][1]:
            buckets[key] = (t, used)
    return [buckets[k] for k in sorted(buckets)]


def goals(results: dict, trigger_interval_s: float) -> list[dict]:
    """The issue's goals, each with the measured value and whether it is met (None: not measured)."""

    def entry(goal, value, met):
        return {"goal": goal, "value": value, "met": met}

    mem = results.get("memory") or {}
    median = results.get("realtime_batch_ms_median")
    speedup = results.get("realtime_speedup_vs_seed")
    rate = results.get("catchup_rows_per_second")
    cu_speedup = results.get("catchup_speedup_vs_seed")
    duck = results.get("duckdb_rows_per_second")
    fresh = results.get("freshness_s_median")
    # The live heap is what the job keeps; the RSS trend is reported beside it.
    trend = mem.get("heap_trend") or mem.get("trend")
    measure = "live heap after GC" if mem.get("heap_trend") else "driver RSS"
    return [
        entry(
            "real-time median batch, both queries <= 300 ms",
            median,
            None if median is None else median <= 300,
        ),
        entry("real-time >= 4x faster than the seed", speedup, None if speedup is None else speedup >= 4),
        entry("catch-up >= 500k rows/s", rate, None if rate is None else rate >= 500_000),
        entry("catch-up >= 2x the seed", cu_speedup, None if cu_speedup is None else cu_speedup >= 2),
        entry(
            "catch-up within 2.5x of DuckDB",
            None if not (rate and duck) else duck / rate,
            None if not (rate and duck) else duck / rate <= 2.5,
        ),
        entry(
            f"freshness median <= trigger interval + 1 s ({trigger_interval_s + 1:g} s)",
            fresh,
            None if fresh is None else fresh <= trigger_interval_s + 1,
        ),
        entry(
            f"memory flat over the long replay ({measure}, fitted growth < 10%)",
            None if not trend else trend["growth_pct"],
            None if not trend else trend["growth_pct"] < 10,
        ),
    ]
