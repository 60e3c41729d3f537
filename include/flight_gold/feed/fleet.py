"""The synthetic fleet: per-aircraft constants drawn from the seed, and each observation's
flight state as a pure function of (seed, aircraft, observation), so that any row, and the rows
before it, can be recomputed exactly (see `synthetic`)."""

from __future__ import annotations

import numpy as np

from flight_gold.feed.icao import blocks_of
from flight_gold.feed.opensky import (
    AIRPORTS,
    round_half_up,
)

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

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Independent uniform streams per observation.
(
    S_NOISE_ALT,
    S_NOISE_VEL,
    S_GROUND_NULL,
    S_TAXI,
    S_ANOMALY,
    S_ANOMALY_KIND,
    S_ANOMALY_VALUE,
    S_LATE,
    S_LATE_BY,
    S_OOO,
    S_JITTER,
    S_POS,
) = range(12)


def uniform(seed: int, aircraft: np.ndarray, k: np.ndarray, stream: int) -> np.ndarray:
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


class Fleet:
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


def observe(fleet: Fleet, a: np.ndarray, k: np.ndarray, seed: int, anomaly_share: float):
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

    noise_alt = uniform(seed, a, k, S_NOISE_ALT) * 2 - 1
    noise_vel = uniform(seed, a, k, S_NOISE_VEL) * 2 - 1
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
        on_ground & (uniform(seed, a, k, S_GROUND_NULL) < GROUND_NULL_ALTITUDE), np.nan, altitude
    )
    taxi = uniform(seed, a, k, S_TAXI)
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
        anomalous = uniform(seed, a, k, S_ANOMALY) < anomaly_share
        kind = uniform(seed, a, k, S_ANOMALY_KIND)
        value = uniform(seed, a, k, S_ANOMALY_VALUE)
        high, low = anomalous & (kind < 0.55), anomalous & (kind >= 0.55) & (kind < 0.65)
        fast = anomalous & (kind >= 0.65)
        altitude = np.where(high, 12050 + 2900 * value, altitude)  # (12000, 15000]
        altitude = np.where(low, -480 + 370 * value, altitude)  # [-500, -100)
        velocity = np.where(fast, 1010 + 180 * value, velocity)  # (1000, 1200]
    return altitude.astype(np.float32), round_half_up(velocity, 2), on_ground, distance
