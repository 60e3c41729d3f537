"""Known Gold rows for the dashboard tests, written with deltalake one window per commit (as the
streaming job appends them), placed relative to a reference time `now`.

With now = 12:10 (minute-aligned):

flight_phase_counts (window_start, phase, flight_count, avg_altitude, avg_velocity)
    10:30 CRUISE 7 9500 800          only in ranges reaching back 1 h 40 min
    11:00 TAKEOFF 2 500 250          the first minute of [11:00, 12:00)
    11:58 CRUISE 10 10000 850 / CLIMB 4 3000 500
    11:59 CRUISE 12 10100 860 / GROUND 3 0 10 / DESCENT 5 null 400
    12:00 CRUISE 9 10200 870         outside [11:00, 12:00), the end being exclusive
    12:06 CRUISE 11 10300 880        the newest window: ends 12:07, 180 s before now

anomaly_alerts (window_start, country, total, altitude anomalies, velocity anomalies, rate)
    10:40 Italy 4 2 0 0.5
    11:54 France 20 1 0 0.05 / Germany 8 2 0 0.25
    11:55 France 20 2 1 0.15 / Germany 10 1 0 0.1 (equal to the threshold: no breach) / Spain 5 0 0 0.0
    12:00 Portugal 5 2 0 0.4         the newest window: ends 12:05, 300 s before now
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from deltalake import write_deltalake

from flight_gold.core.config import GoldConfig
from flight_gold.lake.schemas import GOLD_ARROW_SCHEMAS, SILVER_ML_ARROW_SCHEMA

REFERENCE_NOW = datetime(2025, 6, 1, 12, 10, tzinfo=UTC)

# (minutes relative to now, phase, flight_count, avg_altitude, avg_velocity)
PHASE_ROWS = [
    (-100, "CRUISE", 7, 9500.0, 800.0),
    (-70, "TAKEOFF", 2, 500.0, 250.0),
    (-12, "CRUISE", 10, 10000.0, 850.0),
    (-12, "CLIMB", 4, 3000.0, 500.0),
    (-11, "CRUISE", 12, 10100.0, 860.0),
    (-11, "GROUND", 3, 0.0, 10.0),
    (-11, "DESCENT", 5, None, 400.0),
    (-10, "CRUISE", 9, 10200.0, 870.0),
    (-4, "CRUISE", 11, 10300.0, 880.0),
]

# (minutes relative to now, country, total, altitude anomalies, velocity anomalies, rate)
ANOMALY_ROWS = [
    (-90, "Italy", 4, 2, 0, 0.5),
    (-16, "France", 20, 1, 0, 0.05),
    (-16, "Germany", 8, 2, 0, 0.25),
    (-15, "France", 20, 2, 1, 0.15),
    (-15, "Germany", 10, 1, 0, 0.1),
    (-15, "Spain", 5, 0, 0, 0.0),
    (-10, "Portugal", 5, 2, 0, 0.4),
]


def minute_floor(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def phase_records(now: datetime) -> list[dict]:
    base = minute_floor(now)
    return [
        {
            "window_start": base + timedelta(minutes=m),
            "window_end": base + timedelta(minutes=m + 1),
            "flight_phase": phase,
            "flight_count": count,
            "avg_altitude": alt,
            "avg_velocity": vel,
        }
        for m, phase, count, alt, vel in PHASE_ROWS
    ]


def anomaly_records(now: datetime) -> list[dict]:
    base = minute_floor(now)
    records = []
    for m, country, total, alt_anom, vel_anom, rate in ANOMALY_ROWS:
        records.append(
            {
                "window_start": base + timedelta(minutes=m),
                "window_end": base + timedelta(minutes=m + 5),
                "origin_country": country,
                "total_observations": total,
                "altitude_anomalies": alt_anom,
                "velocity_anomalies": vel_anom,
                "anomaly_rate": rate,
                "max_altitude": 12500.0,
                "min_altitude": 100.0,
                "max_velocity": 900.0,
                "avg_altitude": 8000.0,
                "avg_velocity": 700.0,
                "stddev_altitude": 10.0,
                "stddev_velocity": 5.0,
            }
        )
    return records


def append_by_window(path: str, name: str, records: list[dict]) -> None:
    """One commit per window_start, in time order, like the streaming job's micro-batches."""
    schema = GOLD_ARROW_SCHEMAS[name]
    for start in sorted({r["window_start"] for r in records}):
        batch = [r for r in records if r["window_start"] == start]
        write_deltalake(path, pa.Table.from_pylist(batch, schema=schema), mode="append")


def write_known_gold(config: GoldConfig, now: datetime = REFERENCE_NOW) -> None:
    append_by_window(config.paths.flight_phase_counts, "flight_phase_counts", phase_records(now))
    append_by_window(config.paths.anomaly_alerts, "anomaly_alerts", anomaly_records(now))


def create_empty_gold(config: GoldConfig, name: str) -> None:
    write_deltalake(config.paths.gold_table(name), GOLD_ARROW_SCHEMAS[name].empty_table(), mode="append")


def create_empty_silver(config: GoldConfig) -> None:
    write_deltalake(config.paths.silver_flights_ml, SILVER_ML_ARROW_SCHEMA.empty_table(), mode="append")


BACKGROUND_COUNTRIES = [
    "United States",
    "United Kingdom",
    "Netherlands",
    "Switzerland",
    "Ireland",
    "Canada",
    "Turkey",
    "Austria",
    "Belgium",
    "Poland",
]
# (phase, count range, average altitude m, average velocity km/h)
BACKGROUND_PHASES = [
    ("GROUND", (300, 400), 120.0, 15.0),
    ("TAKEOFF", (10, 30), 900.0, 280.0),
    ("CLIMB", (60, 100), 5200.0, 610.0),
    ("CRUISE", (500, 700), 10900.0, 840.0),
    ("DESCENT", (60, 100), 4800.0, 590.0),
    ("TRANSITION", (20, 50), 2500.0, 420.0),
]


def background_records(now: datetime, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """An hour of plausible traffic, for a page that looks like a real one: every phase each
    minute up to the known newest phase window (-4), and other countries than the known anomaly
    rows with every anomaly_rate below 0.1 (so no breach beyond the known ones) and nothing newer
    than the known newest anomaly window."""
    import random

    rng = random.Random(seed)
    base = minute_floor(now)
    phases = []
    for m in range(-60, -3):
        for phase, (low, high), alt, vel in BACKGROUND_PHASES:
            phases.append(
                {
                    "window_start": base + timedelta(minutes=m),
                    "window_end": base + timedelta(minutes=m + 1),
                    "flight_phase": phase,
                    "flight_count": rng.randint(low, high),
                    "avg_altitude": round(alt * rng.uniform(0.95, 1.05), 1),
                    "avg_velocity": round(vel * rng.uniform(0.95, 1.05), 1),
                }
            )
    anomalies = []
    for m in range(-60, -10):
        for country in BACKGROUND_COUNTRIES:
            total = rng.randint(30, 400)
            anomalous = rng.randint(0, int(total * 0.09))
            altitude = rng.randint(0, anomalous)
            anomalies.append(
                {
                    "window_start": base + timedelta(minutes=m),
                    "window_end": base + timedelta(minutes=m + 5),
                    "origin_country": country,
                    "total_observations": total,
                    "altitude_anomalies": altitude,
                    "velocity_anomalies": anomalous - altitude,
                    "anomaly_rate": anomalous / total,
                    "max_altitude": 12100.0,
                    "min_altitude": 0.0,
                    "max_velocity": 980.0,
                    "avg_altitude": 7400.0,
                    "avg_velocity": 650.0,
                    "stddev_altitude": 3900.0,
                    "stddev_velocity": 310.0,
                }
            )
    return phases, anomalies


def write_demo_gold(config: GoldConfig, now: datetime) -> None:
    """The background hour of flight_phase_counts, and the known anomaly rows among the background
    countries: the breaches are exactly those of ANOMALY_ROWS."""
    phases, anomalies = background_records(now)
    append_by_window(config.paths.flight_phase_counts, "flight_phase_counts", phases)
    append_by_window(config.paths.anomaly_alerts, "anomaly_alerts", anomalies + anomaly_records(now))
