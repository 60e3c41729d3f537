"""How long one anomaly check (flight_gold.alerting.run_check) takes on a Gold table the size of a
day of real traffic, without Airflow: the first check (whole snapshot) and a routine 5-minute check
(the commits a 10-second trigger writes in 5 minutes).

    .venv/bin/python bench/alerts_check.py [--countries 200] [--hours 24] [--root /tmp/x]

Prints one JSON line. Channels are in-memory: this measures reading and selecting, not Slack/SMTP.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from deltalake import write_deltalake

from flight_gold.alerting import AlertSettings, run_check
from flight_gold.core.config import GoldConfig
from flight_gold.lake.schemas import GOLD_ARROW_SCHEMAS

SCHEMA = GOLD_ARROW_SCHEMAS["anomaly_alerts"]
T0 = datetime(2024, 5, 1, tzinfo=UTC)


class Counter:
    def __init__(self, name):
        self.name, self.breaches = name, 0

    def send(self, breaches, context):
        self.breaches += len(breaches)


def windows(first_minute: int, minutes: int, countries: int, rng: random.Random) -> pa.Table:
    rows = []
    for minute in range(first_minute, first_minute + minutes):
        start = T0 + timedelta(minutes=minute)
        for c in range(countries):
            total = rng.randint(1, 400)
            anomalous = rng.randint(0, max(1, total // 8))
            rows.append(
                dict(
                    window_start=start,
                    window_end=start + timedelta(minutes=5),
                    origin_country=f"Country{c:03d}",
                    total_observations=total,
                    altitude_anomalies=anomalous,
                    velocity_anomalies=0,
                    anomaly_rate=anomalous / total,
                    max_altitude=11000.0,
                    min_altitude=0.0,
                    max_velocity=900.0,
                    avg_altitude=8000.0,
                    avg_velocity=700.0,
                    stddev_altitude=100.0,
                    stddev_velocity=10.0,
                )
            )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--countries", type=int, default=200)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    rng = random.Random(7)
    root = args.root or tempfile.mkdtemp(prefix="alerts-bench-")
    config = GoldConfig.from_env({}, lakehouse_root=root)
    path = config.paths.anomaly_alerts

    # History: one commit per 5 minutes of windows (fewer, larger commits than the stream writes,
    # which is what OPTIMIZE leaves behind anyway).
    minutes = args.hours * 60
    for first in range(0, minutes, 5):
        write_deltalake(path, windows(first, 5, args.countries, rng), mode="append")
    channels = [Counter("slack"), Counter("email")]
    settings = AlertSettings()

    started = time.perf_counter()
    first = run_check(config, settings, channels)
    first_s = time.perf_counter() - started

    # 5 minutes of a 10-second trigger: 30 commits, a window closing every minute.
    for commit in range(30):
        minute = minutes + commit // 6
        table = windows(minute, 1, args.countries, rng) if commit % 6 == 0 else windows(minute, 0, 0, rng)
        write_deltalake(path, table, mode="append")
    started = time.perf_counter()
    routine = run_check(config, settings, channels)
    routine_s = time.perf_counter() - started

    print(
        json.dumps(
            {
                "gold_rows": minutes * args.countries,
                "first_check_s": round(first_s, 3),
                "first_check_breaches": first["breaches_found"],
                "routine_check_s": round(routine_s, 3),
                "routine_check_commits": 30,
                "routine_check_breaches": routine["breaches_found"],
                "root": root,
            }
        )
    )


if __name__ == "__main__":
    main()
