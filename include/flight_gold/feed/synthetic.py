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
from flight_gold.feed.icao import blocks_of
from flight_gold.feed.opensky import (
    AIRPORTS,
    ROLLING_OBSERVATIONS,
    empty_silver,
    flight_phase,
    lag_stats,
    round_half_up,
    silver_frame,
)

log = logging.getLogger("flight_gold.feed.synthetic")

# (country, weight, callsign prefixes): roughly the mix over France.
COUNTRIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("France", 30, ("AFR", "TVF", "HOP")),
    ("Germany", 9, ("DLH", "EWG", "CFG")),
    ("United Kingdom", 8, ("BAW", "EZY", "VIR")),
    ("Spain", 7, ("IBE", "VLG", "AEA")),
    ("Italy", 4, ("ITY", "NOS")),
    ("Ireland", 4, ("RYR", "EIN")),
    ("Netherlands", 4, ("KLM", "TRA")),
    ("Switzerland", 3, ("SWR", "EDW")),
    ("Belgium", 3, ("BEL", "TUB")),
    ("Portugal", 3, ("TAP",)),
    ("Austria", 3, ("AUA", "EJU")),
    ("Malta", 2, ("RYR", "MAY")),
    ("Luxembourg", 2, ("LGL", "CLX")),
    ("United States", 5, ("DAL", "UAL", "AAL", "FDX")),
    ("Canada", 1, ("ACA",)),
    ("United Arab Emirates", 2, ("UAE", "ETD")),
    ("Qatar", 2, ("QTR",)),
    ("Saudi Arabia", 1, ("SVA",)),
    ("Turkey", 2, ("THY", "PGT")),
    ("Poland", 1, ("LOT",)),
    ("Hungary", 1, ("WZZ",)),
    ("Sweden", 1, ("SAS",)),
    ("Denmark", 1, ("SAS",)),
    ("Norway", 1, ("NOZ",)),
    ("Finland", 1, ("FIN",)),
    ("Greece", 1, ("AEE",)),
    ("Czechia", 1, ("CSA",)),
    ("Morocco", 1, ("RAM",)),
    ("Algeria", 1, ("DAH",)),
    ("Tunisia", 1, ("TAR",)),
    ("Egypt", 1, ("MSR",)),
    ("Israel", 1, ("ELY",)),
    ("China", 1, ("CCA", "CES")),
    ("Japan", 1, ("JAL", "ANA")),
    ("South Korea", 1, ("KAL",)),
    ("India", 1, ("AIC",)),
    ("Singapore", 1, ("SIA",)),
    ("Brazil", 1, ("TAM",)),
    ("Mexico", 1, ("AMX",)),
)
# Home airports of the synthetic fleet (ICAO code, weight).
HOME_AIRPORTS: tuple[tuple[str, float], ...] = (("LFPG", 45), ("LFPO", 35), ("LFPB", 10), ("LFOB", 10))

ELEVATION_M = 100.0
GROUND_NULL_ALTITUDE = 0.8  # share of on-ground rows without altitude (as OpenSky)
CHUNK_ROWS = 1_000_000  # rows generated at once inside generate()
DEFAULT_COMMIT_ROWS = 500_000

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Independent uniform streams per observation.
(
    _S_NOISE_ALT,
    _S_NOISE_VEL,
    _S_GROUND_NULL,
    _S_TAXI,
    _S_ANOMALY,
    _S_ANOMALY_KIND,
    _S_ANOMALY_VALUE,
    _S_LATE,
    _S_LATE_BY,
    _S_OOO,
    _S_JITTER,
    _S_POS,
) = range(12)


def _uniform(seed: int, aircraft: np.ndarray, k: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) per (seed, aircraft, observation, stream): splitmix64 of a unique key."""
    key = (
        (aircraft.astype(np.uint64) << np.uint64(40))
        | (k.astype(np.uint64) << np.uint64(4))
        | np.uint64(stream)
    )
    with np.errstate(over="ignore"):
        z = key + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class _Fleet:
    """Per-aircraft constants, drawn once from the seed."""

    def __init__(self, aircraft: int, seed: int):
        rng = np.random.default_rng([seed, aircraft, 0x5EED])
        weights = np.array([w for _, w, _ in COUNTRIES], dtype=float)
        self.country_idx = rng.choice(len(COUNTRIES), size=aircraft, p=weights / weights.sum())
        self.country = np.array([COUNTRIES[i][0] for i in self.country_idx], dtype=object)
        self.icao24 = self._addresses(rng)
        prefixes = [COUNTRIES[i][2][rng.integers(len(COUNTRIES[i][2]))] for i in self.country_idx]
        numbers = rng.integers(10, 9999, size=aircraft)
        self.callsign = np.array([f"{p}{n}" for p, n in zip(prefixes, numbers)], dtype=object)
        codes = [code for code, _ in HOME_AIRPORTS]
        w = np.array([w for _, w in HOME_AIRPORTS], dtype=float)
        home = rng.choice(len(codes), size=aircraft, p=w / w.sum())
        by_code = {a[0]: a for a in AIRPORTS}
        self.airport = np.array([codes[h] for h in home], dtype=object)
        self.airport_name = np.array([by_code[codes[h]][1] for h in home], dtype=object)
        self.airport_country = np.array([by_code[codes[h]][2] for h in home], dtype=object)
        self.lat0 = np.array([by_code[codes[h]][3] for h in home])
        self.lon0 = np.array([by_code[codes[h]][4] for h in home])
        self.heading = rng.uniform(0, 2 * np.pi, size=aircraft)
        self.cruise_alt = rng.uniform(8500, 11800, size=aircraft)
        self.cruise_kmh = rng.uniform(780, 930, size=aircraft)
        self.climb = rng.uniform(25, 110, size=aircraft)  # metres per observation
        self.descent = rng.uniform(25, 90, size=aircraft)
        self.ground = rng.integers(20, 120, size=aircraft)  # observations on the ground
        self.cruise = rng.integers(100, 600, size=aircraft)  # observations at cruise
        self.climb_n = np.ceil((self.cruise_alt - ELEVATION_M) / self.climb).astype(np.int64)
        self.descent_n = np.ceil((self.cruise_alt - ELEVATION_M) / self.descent).astype(np.int64)
        self.cycle = self.ground + self.climb_n + self.cruise + self.descent_n
        self.offset = (rng.random(aircraft) * self.cycle).astype(np.int64)
        self.category = np.where(rng.random(aircraft) < 0.35, 3, -1)

    def _addresses(self, rng) -> np.ndarray:
        taken: set[int] = set()
        out = []
        for country in self.country:
            start, end = max(blocks_of(country), key=lambda b: b[1] - b[0])
            while True:
                address = int(start + rng.integers(0, end - start + 1))
                if address not in taken:
                    taken.add(address)
                    out.append(f"{address:06x}")
                    break
        return np.array(out, dtype=object)


def _observe(fleet: _Fleet, a: np.ndarray, k: np.ndarray, seed: int, anomaly_share: float):
    """(altitude m float32 with NaN, velocity km/h, on_ground, distance from home km) of
    observation k of aircraft a."""
    p = (k + fleet.offset[a]) % fleet.cycle[a]
    g, c, cruise = fleet.ground[a], fleet.climb_n[a], fleet.cruise[a]
    cruise_alt, cruise_kmh = fleet.cruise_alt[a], fleet.cruise_kmh[a]
    on_ground = p < g
    climbing = ~on_ground & (p < g + c)
    cruising = ~on_ground & ~climbing & (p < g + c + cruise)
    up = (p - g + 1).astype(np.float64)
    down = (p - g - c - cruise + 1).astype(np.float64)

    noise_alt = _uniform(seed, a, k, _S_NOISE_ALT) * 2 - 1
    noise_vel = _uniform(seed, a, k, _S_NOISE_VEL) * 2 - 1
    altitude = np.select(
        [on_ground, climbing, cruising],
        [
            ELEVATION_M + 3 * noise_alt,
            np.minimum(ELEVATION_M + up * fleet.climb[a], cruise_alt) + 3 * noise_alt,
            cruise_alt + 8 * noise_alt,
        ],
        default=np.maximum(cruise_alt - down * fleet.descent[a], ELEVATION_M) + 3 * noise_alt,
    )
    altitude = np.where(
        on_ground & (_uniform(seed, a, k, _S_GROUND_NULL) < GROUND_NULL_ALTITUDE), np.nan, altitude
    )
    taxi = _uniform(seed, a, k, _S_TAXI)
    velocity = np.select(
        [on_ground, climbing, cruising],
        [
            np.where(taxi < 0.3, 0.0, 5 + 40 * taxi),
            280 + (cruise_kmh - 280) * np.minimum(up / c, 1.0),
            cruise_kmh + 10 * noise_vel,
        ],
        default=cruise_kmh - (cruise_kmh - 260) * np.minimum(down / fleet.descent_n[a], 1.0),
    )
    distance = np.select(
        [on_ground, climbing, cruising],
        [np.zeros(len(a)), 0.15 * up, 0.15 * c + 0.25 * up - 0.25 * c],
        default=(0.15 * c + 0.25 * cruise) * np.clip(1 - down / fleet.descent_n[a], 0, 1),
    )

    if anomaly_share > 0:
        anomalous = _uniform(seed, a, k, _S_ANOMALY) < anomaly_share
        kind = _uniform(seed, a, k, _S_ANOMALY_KIND)
        value = _uniform(seed, a, k, _S_ANOMALY_VALUE)
        high, low = anomalous & (kind < 0.55), anomalous & (kind >= 0.55) & (kind < 0.65)
        fast = anomalous & (kind >= 0.65)
        altitude = np.where(high, 12050 + 2900 * value, altitude)  # (12000, 15000]
        altitude = np.where(low, -480 + 370 * value, altitude)  # [-500, -100)
        velocity = np.where(fast, 1010 + 180 * value, velocity)  # (1000, 1200]
    return altitude.astype(np.float32), round_half_up(velocity, 2), on_ground, distance


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
    fleet = _Fleet(aircraft, seed)
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
    fleet: _Fleet,
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
    ext_alt, ext_vel, ext_ground, ext_distance = _observe(
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
    wobble = _uniform(seed, a, k, _S_POS) - 0.5
    heading = fleet.heading[a]
    lat0, lon0 = fleet.lat0[a], fleet.lon0[a]
    reach = distance + np.where(on_ground, 0.8 * wobble, 0.0)
    latitude = lat0 + reach / 111.2 * np.cos(heading)
    longitude = lon0 + reach / (111.2 * np.cos(np.radians(lat0))) * np.sin(heading)

    # Event time: nominal, or late, or jittered.
    nominal = start_us + np.floor(i * (1_000_000 / rate_per_s)).astype(np.int64)
    event_us = nominal
    if out_of_order_share > 0:
        shuffled = _uniform(seed, a, k, _S_OOO) < out_of_order_share
        jitter = ((_uniform(seed, a, k, _S_JITTER) * 2 - 1) * jitter_s * 1_000_000).astype(np.int64)
        event_us = np.where(shuffled, nominal + jitter, event_us)
    if late_share > 0:
        late = _uniform(seed, a, k, _S_LATE) < late_share
        lo_s, hi_s = late_by_s
        delay = ((lo_s + (hi_s - lo_s) * _uniform(seed, a, k, _S_LATE_BY)) * 1_000_000).astype(np.int64)
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
