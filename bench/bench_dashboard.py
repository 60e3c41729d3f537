"""How fast the Flight Gold page's data comes back on a day of Gold data.

Writes a day of Gold rows the way the stream does (one commit per window: 1,440 commits per
table, ~150 countries per anomaly window), then times `dashboard.page` (everything the page
asks for, serialized to JSON) for the ranges of the page: opening the tables anew for each
request, and through the API server's cache (GoldCache) with a window appended before each
request, as the stream does; before and after the maintenance DAG's compaction.

    .venv/bin/python bench/bench_dashboard.py [--minutes 1440] [--countries 150] [--repeat 5]

Goal (issue 8): well under a second per page load. Results go to bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from flight_gold import dashboard
from flight_gold.alerting import AlertSettings
from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import FLIGHT_PHASES
from flight_gold.core.times import utcnow
from flight_gold.lake.schemas import GOLD_ARROW_SCHEMAS

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard.json"


def write_day(config: GoldConfig, minutes: int, countries: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    end = utcnow().replace(second=0, microsecond=0)
    names = [f"Country {i:03d}" for i in range(countries)]
    phase_schema, anomaly_schema = (
        GOLD_ARROW_SCHEMAS["flight_phase_counts"],
        GOLD_ARROW_SCHEMAS["anomaly_alerts"],
    )
    for m in range(minutes, 0, -1):
        start = end - timedelta(minutes=m)
        phases = [
            {
                "window_start": start,
                "window_end": start + timedelta(minutes=1),
                "flight_phase": p,
                "flight_count": rng.randint(100, 9000),
                "avg_altitude": rng.uniform(0, 11000),
                "avg_velocity": rng.uniform(0, 900),
            }
            for p in FLIGHT_PHASES
        ]
        write_deltalake(
            config.paths.flight_phase_counts, pa.Table.from_pylist(phases, phase_schema), mode="append"
        )
        rows = []
        for name in names:
            total = rng.randint(1, 2000)
            bad = rng.randint(0, total // 8)
            rows.append(
                {
                    "window_start": start - timedelta(minutes=6),
                    "window_end": start - timedelta(minutes=1),
                    "origin_country": name,
                    "total_observations": total,
                    "altitude_anomalies": bad,
                    "velocity_anomalies": 0,
                    "anomaly_rate": bad / total,
                    "max_altitude": 12000.0,
                    "min_altitude": 0.0,
                    "max_velocity": 950.0,
                    "avg_altitude": 8000.0,
                    "avg_velocity": 700.0,
                    "stddev_altitude": 100.0,
                    "stddev_velocity": 50.0,
                }
            )
        write_deltalake(
            config.paths.anomaly_alerts, pa.Table.from_pylist(rows, anomaly_schema), mode="append"
        )


def append_minute(config: GoldConfig, countries: int, at, seed: int) -> None:
    """One more window in each table, as the stream appends between two page refreshes."""
    rng = random.Random(seed)
    phases = [
        {
            "window_start": at,
            "window_end": at + timedelta(minutes=1),
            "flight_phase": p,
            "flight_count": rng.randint(100, 9000),
            "avg_altitude": 9000.0,
            "avg_velocity": 800.0,
        }
        for p in FLIGHT_PHASES
    ]
    write_deltalake(
        config.paths.flight_phase_counts,
        pa.Table.from_pylist(phases, GOLD_ARROW_SCHEMAS["flight_phase_counts"]),
        mode="append",
    )
    rows = [
        {
            "window_start": at - timedelta(minutes=6),
            "window_end": at - timedelta(minutes=1),
            "origin_country": f"Country {i:03d}",
            "total_observations": 100,
            "altitude_anomalies": 5,
            "velocity_anomalies": 0,
            "anomaly_rate": 0.05,
            "max_altitude": 12000.0,
            "min_altitude": 0.0,
            "max_velocity": 950.0,
            "avg_altitude": 8000.0,
            "avg_velocity": 700.0,
            "stddev_altitude": 100.0,
            "stddev_velocity": 50.0,
        }
        for i in range(countries)
    ]
    write_deltalake(
        config.paths.anomaly_alerts,
        pa.Table.from_pylist(rows, GOLD_ARROW_SCHEMAS["anomaly_alerts"]),
        mode="append",
    )


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads): on a shared machine the CPU time
    says what a request costs when the wall clock also counts the neighbours."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_snapshots(config: GoldConfig, repeat: int, countries: int) -> dict[str, dict[str, float]]:
    """Per range: each request opening the tables anew (`direct`), and the API server's way
    (`cached`: a first request fills a new cache, each later one follows a newly appended window).
    Every request is timed up to its JSON text."""
    out: dict[str, dict[str, float]] = {}
    last: dict = {}

    def request(label: str, cache: dashboard.GoldCache | None) -> None:
        now = utcnow()
        tables = dashboard.GoldTables.open(config, cache, now)
        last["snap"] = dashboard.page(
            config, dashboard.resolve_range(label, now=now), now, AlertSettings(), tables
        )
        json.dumps(last["snap"])

    for label in ("1h", "6h", "24h"):
        direct = [timed(lambda: request(label, None)) for _ in range(repeat)]
        cache = dashboard.GoldCache()
        cold = timed(lambda: request(label, cache))
        warm = []
        for i in range(repeat):
            append_minute(config, countries, utcnow().replace(second=0, microsecond=0), seed=i)
            warm.append(timed(lambda: request(label, cache)))
        r = out[label] = {
            "direct_wall_median_s": statistics.median(w for w, _ in direct),
            "direct_cpu_median_s": statistics.median(c for _, c in direct),
            "cache_cold_wall_s": cold[0],
            "cache_cold_cpu_s": cold[1],
            "cached_wall_median_s": statistics.median(w for w, _ in warm),
            "cached_cpu_median_s": statistics.median(c for _, c in warm),
            "cached_wall_max_s": max(w for w, _ in warm),
            "heatmap_cells": len(last["snap"]["anomaly_rates"]["cells"]),
            "breaches_total": last["snap"]["breaches"]["total"],
        }
        ms = {k: v * 1000 for k, v in r.items() if k.endswith("_s")}
        print(
            f"  {label:>4}: direct {ms['direct_wall_median_s']:6.0f} ms"
            f" (cpu {ms['direct_cpu_median_s']:5.0f})"
            f" | cache cold {ms['cache_cold_wall_s']:6.0f} ms (cpu {ms['cache_cold_cpu_s']:5.0f})"
            f", warm {ms['cached_wall_median_s']:5.0f} ms (cpu {ms['cached_cpu_median_s']:4.0f}, "
            f"max wall {ms['cached_wall_max_s']:4.0f})"
            f"  [{r['heatmap_cells']} cells, {r['breaches_total']} breaches]"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=1440)
    parser.add_argument("--countries", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", metavar="DIR", help="write the day into DIR once and reuse it (no compaction)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        root = args.keep or tmp
        config = GoldConfig.from_env({}, lakehouse_root=root)
        if not (args.keep and Path(config.paths.anomaly_alerts).exists()):
            t0 = time.perf_counter()
            write_day(config, args.minutes, args.countries)
            print(
                f"wrote {args.minutes} windows x 2 tables ({args.minutes * args.countries} anomaly rows) "
                f"in {time.perf_counter() - t0:.0f} s"
            )
        print("one commit per window, as streamed:")
        streamed = time_snapshots(config, args.repeat, args.countries)
        if args.keep:
            return
        for name in ("flight_phase_counts", "anomaly_alerts"):
            DeltaTable(config.paths.gold_table(name)).optimize.compact()
        print("after OPTIMIZE (compaction):")
        compacted = time_snapshots(config, args.repeat, args.countries)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "minutes": args.minutes,
                "countries": args.countries,
                "streamed": streamed,
                "compacted": compacted,
            },
            indent=2,
        )
    )
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
