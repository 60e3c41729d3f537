"""Synthetic Silver_ML rows for tests and benchmarks: deterministic by seed, vectorised, any size.

    python -m flight_gold.feed.synthetic --rows 10000000 --lakehouse-root /tmp/lake --commit-rows 500000

Row i of a run is observation k = i // aircraft of aircraft a = i % aircraft (round robin), at the
nominal time start + i / rate_per_s. Each aircraft flies a repeating cycle, in observations:
on the ground at its home airport (taxi speed, altitude mostly null as OpenSky reports it), climb
at its own rate, cruise at 8,500-11,800 m and 780-930 km/h, descent back home. Everything about
observation (a, k) (noise, anomaly, lateness) is a hash of (seed, a, k), so the previous
observation and the last six are recomputed exactly: prev_*, *_change, observation_rank, the
rolling statistics and flight_phase follow the upstream rules of SPEC.md (`opensky` module), and
a run cut into chunks (`first_row`) gives the same rows as one call.

- anomaly_share: that share of observations is an anomaly for the Gold job (altitude above
  12,000 m or below -100 m, or velocity above 1,000 km/h), still inside the upstream filter
  ([-500, 15000] m, [0, 1200] km/h); the other rows are never anomalies.
- late_share: that share is stamped `late_by_s` seconds (uniform, default 1-10 minutes) before its
  nominal time, as if it arrived that late.
- out_of_order_share: that share is stamped up to `jitter_s` seconds (default 5) before or after
  its nominal time, so that rows arrive shuffled within seconds.

origin_country and icao24 agree (the address is drawn in the country's ICAO block).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from flight_gold.core.config import ConfigError, GoldConfig
from flight_gold.feed.fleet import S_JITTER, S_LATE, S_LATE_BY, S_OOO, S_POS, Fleet, observe, uniform
from flight_gold.feed.opensky import (
    ROLLING_OBSERVATIONS,
    empty_silver,
    flight_phase,
    lag_stats,
    silver_frame,
)

log = logging.getLogger("flight_gold.feed.synthetic")

CHUNK_ROWS = 1_000_000  # rows generated at once inside generate()
DEFAULT_COMMIT_ROWS = 500_000


def generate(
    n_rows: int,
    start: datetime,
    rate_per_s: float = 600,
    aircraft: int = 300,
    anomaly_share: float = 0.0,
    late_share: float = 0.0,
    out_of_order_share: float = 0.0,
    seed: int = 0,
    *,
    first_row: int = 0,
    late_by_s: tuple[float, float] = (60.0, 600.0),
    jitter_s: float = 5.0,
) -> pd.DataFrame:
    """`n_rows` Silver_ML rows (rows first_row .. first_row + n_rows - 1 of the run), in position
    order, with the columns and dtypes of SILVER_ML_ARROW_SCHEMA. See the module docstring."""
    if n_rows < 0 or aircraft < 1 or rate_per_s <= 0:
        raise ValueError("n_rows >= 0, aircraft >= 1 and rate_per_s > 0 are required")
    for name, share in (
        ("anomaly_share", anomaly_share),
        ("late_share", late_share),
        ("out_of_order_share", out_of_order_share),
    ):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {share}")
    fleet = Fleet(aircraft, seed)
    start_us = _epoch_us(start)
    parts = [
        _generate_chunk(
            fleet,
            lo,
            min(lo + CHUNK_ROWS, first_row + n_rows),
            start_us,
            rate_per_s,
            aircraft,
            anomaly_share,
            late_share,
            out_of_order_share,
            seed,
            late_by_s,
            jitter_s,
        )
        for lo in range(first_row, first_row + n_rows, CHUNK_ROWS)
    ]
    if not parts:
        return empty_silver()
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _generate_chunk(
    fleet: Fleet,
    lo: int,
    hi: int,
    start_us: int,
    rate_per_s: float,
    aircraft: int,
    anomaly_share: float,
    late_share: float,
    out_of_order_share: float,
    seed: int,
    late_by_s: tuple[float, float],
    jitter_s: float,
) -> pd.DataFrame:
    i = np.arange(lo, hi, dtype=np.int64)
    a = i % aircraft
    k = i // aircraft

    # This observation and the five before it (lag j, row i - j * aircraft, exists when k >= j):
    # every observation from the earliest lag on is computed once, then indexed.
    ext_lo = max(0, lo - (ROLLING_OBSERVATIONS - 1) * aircraft)
    ext = np.arange(ext_lo, hi, dtype=np.int64)
    ext_alt, ext_vel, ext_ground, ext_distance = observe(
        fleet, ext % aircraft, ext // aircraft, seed, anomaly_share
    )
    altitudes = np.full((ROLLING_OBSERVATIONS, len(i)), np.nan, dtype=np.float32)
    velocities = np.full((ROLLING_OBSERVATIONS, len(i)), np.nan)
    for j in range(ROLLING_OBSERVATIONS):
        exists = k >= j
        rows = i[exists] - j * aircraft - ext_lo
        altitudes[j, exists] = ext_alt[rows]
        velocities[j, exists] = ext_vel[rows]
    on_ground = ext_ground[lo - ext_lo :]
    distance = ext_distance[lo - ext_lo :]
    altitude, velocity = altitudes[0], velocities[0]
    prev_altitude, prev_velocity = altitudes[1], velocities[1]
    altitude_change = (altitude - prev_altitude).astype(np.float32)

    avg_alt, std_alt = lag_stats(altitudes.astype(np.float64))
    avg_vel, _ = lag_stats(velocities)

    # Position: along the aircraft's heading from its home airport, within 1 km on the ground.
    wobble = uniform(seed, a, k, S_POS) - 0.5
    heading = fleet.heading[a]
    lat0, lon0 = fleet.lat0[a], fleet.lon0[a]
    reach = distance + np.where(on_ground, 0.8 * wobble, 0.0)
    latitude = lat0 + reach / 111.2 * np.cos(heading)
    longitude = lon0 + reach / (111.2 * np.cos(np.radians(lat0))) * np.sin(heading)

    # Event time: nominal, or late, or jittered.
    nominal = start_us + np.floor(i * (1_000_000 / rate_per_s)).astype(np.int64)
    event_us = nominal
    if out_of_order_share > 0:
        shuffled = uniform(seed, a, k, S_OOO) < out_of_order_share
        jitter = ((uniform(seed, a, k, S_JITTER) * 2 - 1) * jitter_s * 1_000_000).astype(np.int64)
        event_us = np.where(shuffled, nominal + jitter, event_us)
    if late_share > 0:
        late = uniform(seed, a, k, S_LATE) < late_share
        lo_s, hi_s = late_by_s
        delay = ((lo_s + (hi_s - lo_s) * uniform(seed, a, k, S_LATE_BY)) * 1_000_000).astype(np.int64)
        event_us = np.where(late, nominal - delay, event_us)

    category = fleet.category[a]
    return silver_frame(
        {
            "event_timestamp": pd.to_datetime(event_us, unit="us", utc=True),
            "icao24": fleet.icao24[a],
            "callsign": fleet.callsign[a],
            "origin_country": fleet.country[a],
            "longitude": longitude,
            "latitude": latitude,
            "velocity_kmh": velocity,
            "altitude_meters": altitude,
            "on_ground": on_ground,
            "category": pd.arrays.IntegerArray(np.maximum(category, 0).astype(np.int32), category < 0),
            "prev_altitude": prev_altitude,
            "prev_velocity": prev_velocity,
            "altitude_change": altitude_change,
            "velocity_change": velocity - prev_velocity,
            "observation_rank": (k + 1).astype(np.int32),
            "airport_icao": np.where(on_ground, fleet.airport[a], None),
            "airport_name": np.where(on_ground, fleet.airport_name[a], None),
            "airport_country": np.where(on_ground, fleet.airport_country[a], None),
            "rolling_avg_altitude": avg_alt,
            "rolling_std_altitude": std_alt,
            "rolling_avg_velocity": avg_vel,
            "flight_phase": flight_phase(on_ground, altitude, altitude_change),
        }
    )


def _epoch_us(start: datetime) -> int:
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1000)


def write_synthetic(
    config: GoldConfig,
    n_rows: int,
    commit_rows: int = DEFAULT_COMMIT_ROWS,
    start: datetime | None = None,
    **kw,
) -> int:
    """Appends `n_rows` synthetic rows to Silver_ML, `commit_rows` per Delta commit, in position
    order; returns the rows written. `start` defaults to now minus the run's duration (the run
    ends now); other keywords go to generate()."""
    from flight_gold.core.times import iso
    from flight_gold.feed.writer import append_silver

    if commit_rows < 1:
        raise ValueError(f"commit_rows must be >= 1, got {commit_rows}")
    rate = kw.get("rate_per_s", 600)
    if start is None:
        start = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=n_rows / rate)).floor("s")
    written = 0
    began = time.monotonic()
    for lo in range(0, n_rows, commit_rows):
        part = generate(min(commit_rows, n_rows - lo), start, first_row=lo, **kw)
        version = append_silver(part, config)
        written += len(part)
        ts = part["event_timestamp"]
        log.info(
            "commit version %s: %d rows (%d/%d), event time %s .. %s",
            version,
            len(part),
            written,
            n_rows,
            iso(ts.min()),
            iso(ts.max()),
        )
    elapsed = time.monotonic() - began
    log.info(
        "wrote %d synthetic rows to %s in %.1f s (%.0f rows/s)",
        written,
        config.paths.silver_flights_ml,
        elapsed,
        written / elapsed if elapsed else 0,
    )
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flight_gold.feed.synthetic",
        description="Append deterministic synthetic Silver_ML rows to the Delta table (benchmarks, tests).",
    )
    parser.add_argument("--rows", type=int, required=True, metavar="N", help="rows to write")
    parser.add_argument(
        "--lakehouse-root",
        metavar="URI",
        default=None,
        help="storage root, a folder or s3a://bucket/prefix (env LAKEHOUSE_ROOT)",
    )
    parser.add_argument("--s3-endpoint", metavar="URL", default=None, help="S3 endpoint (env S3_ENDPOINT)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--commit-rows",
        type=int,
        default=DEFAULT_COMMIT_ROWS,
        metavar="K",
        help=f"rows per Delta commit (default {DEFAULT_COMMIT_ROWS})",
    )
    parser.add_argument(
        "--start",
        default=None,
        metavar="ISO",
        help="timestamp of the first row, e.g. 2024-05-01T10:00:00Z (default: the run ends now)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=600,
        metavar="ROWS_PER_S",
        help="observations per second of event time (default 600)",
    )
    parser.add_argument("--aircraft", type=int, default=300, help="aircraft (default 300)")
    parser.add_argument(
        "--anomaly-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of anomalous observations (altitude or velocity), default 0",
    )
    parser.add_argument(
        "--late-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share stamped 1-10 minutes before their position, default 0",
    )
    parser.add_argument(
        "--out-of-order-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share stamped up to 5 s before or after their position, default 0",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from flight_gold.core.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rows < 0 or args.commit_rows < 1 or args.aircraft < 1 or args.rate <= 0:
        parser.error("--rows >= 0, --commit-rows >= 1, --aircraft >= 1 and --rate > 0 are required")
    for name in ("anomaly_share", "late_share", "out_of_order_share"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1]")
    start = None
    if args.start:
        try:
            start = pd.Timestamp(args.start).to_pydatetime()
        except ValueError:
            parser.error(f"--start is no timestamp: {args.start!r}")
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    try:
        config = GoldConfig.from_env(lakehouse_root=args.lakehouse_root, s3_endpoint=args.s3_endpoint)
    except ConfigError as exc:
        parser.error(str(exc))
    configure_logging()
    write_synthetic(
        config,
        args.rows,
        args.commit_rows,
        start=start,
        rate_per_s=args.rate,
        aircraft=args.aircraft,
        anomaly_share=args.anomaly_share,
        late_share=args.late_share,
        out_of_order_share=args.out_of_order_share,
        seed=args.seed,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
