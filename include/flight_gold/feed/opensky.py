"""The recorded OpenSky traffic (Paris, 2021-10-07) turned into Silver_ML rows by the upstream
rules of SPEC.md, vectorised with numpy/pandas (the 284,505 records convert in about a second).

Upstream rules, in order:

1. Units: altitude feet -> metres (x 0.3048, stored as float); ground speed knots -> m/s
   (x 1852/3600) -> km/h (x 3.6), rounded to 2 decimals half-up (Spark's `round`).
2. Range filter: altitude in [-500, 15000] m, a null altitude is kept (OpenSky has no barometric
   altitude on the ground); velocity in [0, 1200] km/h, a null velocity is dropped like any value
   outside the range (SQL `BETWEEN`), unless `keep_null_velocity=True`.
3. Per aircraft (icao24), ordered by time: prev_altitude / prev_velocity (the previous kept
   observation, null for the first), altitude_change / velocity_change (value - previous, null
   when either is null), observation_rank (1, 2, ...), rolling_avg_altitude /
   rolling_std_altitude / rolling_avg_velocity over the last 6 observations, this one included
   (nulls ignored; sample standard deviation, null with fewer than two values).
4. flight_phase, the first rule that matches (a comparison with null is false): GROUND if
   on_ground; TAKEOFF if altitude_change > 50 and altitude < 3000; CLIMB if altitude_change > 20;
   CRUISE if |altitude_change| <= 20 and altitude > 8000; DESCENT if altitude_change < -20; else
   TRANSITION.
5. origin_country from the ICAO address blocks (null when unknown); airport_icao / _name /
   _country: the nearest airport of AIRPORTS within AIRPORT_RADIUS_KM when on the ground, else
   null; category: null (the recording has none).

The result has the columns and types of SILVER_ML_ARROW_SCHEMA, in order, one row per kept
observation, sorted by (event_timestamp, icao24).
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from flight_gold.feed.icao import countries_of
from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA

RECORDING = "opensky_paris_2021-10-07.json.gz"

FEET_TO_METRES = 0.3048
KNOTS_TO_MS = 1852.0 / 3600.0
MS_TO_KMH = 3.6

ALTITUDE_RANGE_M = (-500.0, 15000.0)
VELOCITY_RANGE_KMH = (0.0, 1200.0)
ROLLING_OBSERVATIONS = 6

AIRPORT_RADIUS_KM = 10.0
EARTH_RADIUS_KM = 6371.0088

# (ICAO code, name, country, latitude, longitude): the Paris area and the main French airports.
AIRPORTS: tuple[tuple[str, str, str, float, float], ...] = (
    ("LFPG", "Paris Charles de Gaulle", "France", 49.0097, 2.5479),
    ("LFPO", "Paris Orly", "France", 48.7233, 2.3794),
    ("LFPB", "Paris Le Bourget", "France", 48.9694, 2.4414),
    ("LFOB", "Beauvais-Tillé", "France", 49.4544, 2.1128),
    ("LFPN", "Toussus-le-Noble", "France", 48.7519, 2.1061),
    ("LFPV", "Vélizy-Villacoublay", "France", 48.7742, 2.1917),
    ("LFPZ", "Saint-Cyr-l'École", "France", 48.8114, 2.0747),
    ("LFPT", "Pontoise-Cormeilles", "France", 49.0966, 2.0408),
    ("LFPL", "Lognes-Émerainville", "France", 48.8231, 2.6239),
    ("LFPM", "Melun-Villaroche", "France", 48.6047, 2.6711),
    ("LFPC", "Creil", "France", 49.2536, 2.5192),
    ("LFPK", "Coulommiers-Voisins", "France", 48.8381, 3.0161),
    ("LFOK", "Châlons-Vatry", "France", 48.7761, 4.1844),
    ("LFQQ", "Lille-Lesquin", "France", 50.5619, 3.0894),
    ("LFST", "Strasbourg-Entzheim", "France", 48.5383, 7.6282),
    ("LFSB", "EuroAirport Basel-Mulhouse-Freiburg", "France", 47.5896, 7.5299),
    ("LFLL", "Lyon-Saint-Exupéry", "France", 45.7256, 5.0811),
    ("LFML", "Marseille Provence", "France", 43.4393, 5.2214),
    ("LFMN", "Nice Côte d'Azur", "France", 43.6584, 7.2159),
    ("LFMT", "Montpellier-Méditerranée", "France", 43.5762, 3.9630),
    ("LFBO", "Toulouse-Blagnac", "France", 43.6291, 1.3638),
    ("LFBD", "Bordeaux-Mérignac", "France", 44.8283, -0.7156),
    ("LFRS", "Nantes Atlantique", "France", 47.1532, -1.6107),
    ("LFRN", "Rennes-Saint-Jacques", "France", 48.0695, -1.7348),
    ("LFRB", "Brest Bretagne", "France", 48.4479, -4.4185),
    ("LFKJ", "Ajaccio Napoléon Bonaparte", "France", 41.9236, 8.8029),
)

SILVER_COLUMNS: tuple[str, ...] = tuple(SILVER_ML_ARROW_SCHEMA.names)


# -- the rules, shared with the synthetic generator --------------------------------------------


def feet_to_metres(feet) -> np.ndarray:
    return (np.asarray(feet, dtype=np.float64) * FEET_TO_METRES).astype(np.float32)


def round_half_up(values, decimals: int = 2) -> np.ndarray:
    """Spark's round (HALF_UP on the decimal value): 2.675 -> 2.68 where numpy gives 2.67. The
    scaled value is first rounded to 6 places to drop binary noise (267.49999999999997 -> 267.5)."""
    values = np.asarray(values, dtype=np.float64)
    factor = 10.0**decimals
    scaled = np.round(values * factor, 6)
    return np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) / factor


def knots_to_kmh(knots) -> np.ndarray:
    """knots -> m/s -> km/h, rounded to 2 decimals as upstream does with OpenSky's m/s."""
    metres_per_second = np.asarray(knots, dtype=np.float64) * KNOTS_TO_MS
    return round_half_up(metres_per_second * MS_TO_KMH, 2)


def upstream_keep(altitude_m, velocity_kmh, keep_null_velocity: bool = False) -> np.ndarray:
    """The upstream range filter as a boolean mask (bounds inclusive)."""
    altitude = np.asarray(altitude_m, dtype=np.float64)
    velocity = np.asarray(velocity_kmh, dtype=np.float64)
    lo, hi = ALTITUDE_RANGE_M
    altitude_ok = np.isnan(altitude) | ((altitude >= lo) & (altitude <= hi))
    lo, hi = VELOCITY_RANGE_KMH
    velocity_ok = (velocity >= lo) & (velocity <= hi)
    if keep_null_velocity:
        velocity_ok |= np.isnan(velocity)
    return altitude_ok & velocity_ok


def flight_phase(on_ground, altitude_m, altitude_change) -> np.ndarray:
    """SPEC.md's phase rule, first match wins; comparisons with null (NaN) are false."""
    on_ground = np.asarray(on_ground, dtype=bool)
    altitude = np.asarray(altitude_m, dtype=np.float64)
    change = np.asarray(altitude_change, dtype=np.float64)
    conditions = [
        on_ground,
        (change > 50) & (altitude < 3000),
        change > 20,
        (np.abs(change) <= 20) & (altitude > 8000),
        change < -20,
    ]
    choices = ["GROUND", "TAKEOFF", "CLIMB", "CRUISE", "DESCENT"]
    return np.select(conditions, choices, default="TRANSITION").astype(object)


def rolling_stats(values: np.ndarray, rank: np.ndarray, window: int = ROLLING_OBSERVATIONS):
    """Mean and sample standard deviation of the last `window` values of the same aircraft.

    `values` are in per-aircraft time order and `rank` is the 1-based observation rank, so that
    lag j belongs to the same aircraft exactly when rank > j."""
    values = np.asarray(values, dtype=np.float64)
    rank = np.asarray(rank)
    n = len(values)
    lags = np.full((window, n), np.nan)
    for j in range(min(window, n)):
        lags[j, j:] = np.where(rank[j:] > j, values[: n - j], np.nan)
    return lag_stats(lags)


def lag_stats(lags: np.ndarray):
    """Column-wise mean and sample standard deviation of a (lags x rows) matrix, NaN ignored:
    the mean is NaN with no value, the deviation with fewer than two (Spark's avg and
    stddev_samp over a window)."""
    lags = np.asarray(lags, dtype=np.float64)
    present = ~np.isnan(lags)
    count = present.sum(axis=0)
    total = np.where(present, lags, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        squares = np.where(present, (lags - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(count > 1, np.sqrt(squares / (count - 1)), np.nan)
    return mean, std


def nearest_airports(latitude, longitude, on_ground, radius_km: float = AIRPORT_RADIUS_KM):
    """(icao, name, country) object arrays: the nearest airport within radius_km of each on-ground
    position, None elsewhere."""
    latitude = np.asarray(latitude, dtype=np.float64)
    longitude = np.asarray(longitude, dtype=np.float64)
    on_ground = np.asarray(on_ground, dtype=bool)
    n = len(latitude)
    out = [np.full(n, None, dtype=object) for _ in range(3)]
    rows = np.flatnonzero(on_ground & ~np.isnan(latitude) & ~np.isnan(longitude))
    if len(rows) == 0:
        return tuple(out)
    table = np.array([(a[3], a[4]) for a in AIRPORTS])
    lat1 = np.radians(latitude[rows])[:, None]
    lon1 = np.radians(longitude[rows])[:, None]
    lat2 = np.radians(table[:, 0])[None, :]
    lon2 = np.radians(table[:, 1])[None, :]
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    distance = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(rows)), nearest] <= radius_km
    hit_rows, hit_airports = rows[close], nearest[close]
    for column in range(3):  # icao, name, country
        values = np.array([a[column] for a in AIRPORTS], dtype=object)
        out[column][hit_rows] = values[hit_airports]
    return tuple(out)


def empty_silver() -> pd.DataFrame:
    """A Silver_ML frame with no rows and the right columns and dtypes."""
    return silver_frame({name: [] for name in SILVER_COLUMNS})


def silver_frame(columns: dict) -> pd.DataFrame:
    """A DataFrame with exactly the Silver_ML columns, in order, in the pandas dtypes matching
    SILVER_ML_ARROW_SCHEMA (NaN/None/NA stand for null)."""
    ts = pd.to_datetime(pd.Series(columns["event_timestamp"]), utc=True)
    data = {"event_timestamp": ts.astype("datetime64[us, UTC]").array}
    for field in SILVER_ML_ARROW_SCHEMA:
        name = field.name
        if name == "event_timestamp":
            continue
        value = columns.get(name)
        n = len(ts)
        if str(field.type) == "string":
            data[name] = np.full(n, None, dtype=object) if value is None else np.asarray(value, dtype=object)
        elif str(field.type) == "float":
            data[name] = np.full(n, np.nan, np.float32) if value is None else np.asarray(value, np.float32)
        elif str(field.type) == "double":
            data[name] = np.full(n, np.nan) if value is None else np.asarray(value, np.float64)
        elif str(field.type) == "bool":
            data[name] = np.zeros(n, dtype=bool) if value is None else np.asarray(value, dtype=bool)
        elif str(field.type) == "int32" and name == "category":
            data[name] = pd.array([pd.NA] * n if value is None else value, dtype="Int32")
        elif str(field.type) == "int32":
            data[name] = np.zeros(n, np.int32) if value is None else np.asarray(value, dtype=np.int32)
        else:  # pragma: no cover - the schema has no other type
            raise TypeError(f"unexpected Silver_ML type {field.type} for {name}")
    return pd.DataFrame(data, columns=list(SILVER_COLUMNS))


# -- the recording --------------------------------------------------------------------------------


def recording_path() -> Path:
    return Path(str(resources.files("flight_gold") / "data" / RECORDING))


def load_recording(path: str | Path | None = None) -> pd.DataFrame:
    """The recorded state vectors as a DataFrame (one row per record, the recording's keys as
    columns: timestamp in epoch ms, altitude in feet, groundspeed in knots, ...)."""
    path = Path(path) if path is not None else recording_path()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        records = json.load(handle)
    raw = pd.DataFrame.from_records(records)
    if len(raw):
        raw["timestamp"] = raw["timestamp"].astype(np.int64)
        raw["onground"] = raw["onground"].fillna(False).astype(bool)
    return raw


def to_silver(raw: pd.DataFrame, keep_null_velocity: bool = False) -> pd.DataFrame:
    """Silver_ML rows from recorded state vectors by the upstream rules (module docstring)."""
    if len(raw) == 0:
        return empty_silver()
    altitude = feet_to_metres(raw["altitude"].astype("float64"))
    velocity = knots_to_kmh(raw["groundspeed"].astype("float64"))
    keep = upstream_keep(altitude, velocity, keep_null_velocity)

    icao24 = raw["icao24"].astype(str).str.strip().str.lower().to_numpy(dtype=object)[keep]
    ts_ms = raw["timestamp"].to_numpy(dtype=np.int64)[keep]
    altitude, velocity = altitude[keep], velocity[keep]
    on_ground = raw["onground"].to_numpy(dtype=bool)[keep]
    latitude = raw["latitude"].to_numpy(dtype=np.float64)[keep]
    longitude = raw["longitude"].to_numpy(dtype=np.float64)[keep]
    callsign = raw["callsign"].to_numpy(dtype=object)[keep]
    callsign = np.where(pd.isna(callsign) | (callsign == ""), None, callsign).astype(object)

    # Per aircraft, in time order.
    codes, uniques = pd.factorize(icao24, sort=True)
    order = np.lexsort((ts_ms, codes))
    codes_s = codes[order]
    n = len(order)
    positions = np.arange(n)
    first = np.ones(n, dtype=bool)
    first[1:] = codes_s[1:] != codes_s[:-1]
    group_start = np.maximum.accumulate(np.where(first, positions, 0))
    rank = (positions - group_start + 1).astype(np.int32)

    alt_s = altitude[order]
    vel_s = velocity[order]
    prev_alt = np.empty(n, dtype=np.float32)
    prev_alt[0] = np.nan
    prev_alt[1:] = alt_s[:-1]
    prev_alt[first] = np.nan
    prev_vel = np.empty(n, dtype=np.float64)
    prev_vel[0] = np.nan
    prev_vel[1:] = vel_s[:-1]
    prev_vel[first] = np.nan
    alt_change = (alt_s - prev_alt).astype(np.float32)
    vel_change = vel_s - prev_vel
    avg_alt, std_alt = rolling_stats(alt_s.astype(np.float64), rank)
    avg_vel, _ = rolling_stats(vel_s, rank)

    # Back from (aircraft, time) order to the original positions, then sort by (time, aircraft).
    def unsort(values):
        out = np.empty_like(values)
        out[order] = values
        return out

    prev_alt, prev_vel = unsort(prev_alt), unsort(prev_vel)
    alt_change, vel_change = unsort(alt_change), unsort(vel_change)
    avg_alt, std_alt, avg_vel = unsort(avg_alt), unsort(std_alt), unsort(avg_vel)
    rank = unsort(rank)

    phase = flight_phase(on_ground, altitude, alt_change)
    airport_icao, airport_name, airport_country = nearest_airports(latitude, longitude, on_ground)
    country = countries_of(uniques)[codes]

    frame = silver_frame(
        {
            "event_timestamp": pd.to_datetime(ts_ms, unit="ms", utc=True),
            "icao24": icao24,
            "callsign": callsign,
            "origin_country": country,
            "longitude": longitude,
            "latitude": latitude,
            "velocity_kmh": velocity,
            "altitude_meters": altitude,
            "on_ground": on_ground,
            "category": None,
            "prev_altitude": prev_alt,
            "prev_velocity": prev_vel,
            "altitude_change": alt_change,
            "velocity_change": vel_change,
            "observation_rank": rank,
            "airport_icao": airport_icao,
            "airport_name": airport_name,
            "airport_country": airport_country,
            "rolling_avg_altitude": avg_alt,
            "rolling_std_altitude": std_alt,
            "rolling_avg_velocity": avg_vel,
            "flight_phase": phase,
        }
    )
    output_order = np.lexsort((codes, ts_ms))
    return frame.take(output_order).reset_index(drop=True)
