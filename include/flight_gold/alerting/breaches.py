"""A breach: one (window, country) of the Gold table anomaly_alerts whose anomaly_rate is above the
threshold; what "alerted once" is about."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from flight_gold.alerting.settings import ALERT_COLUMNS, AlertSettings
from flight_gold.core.times import as_utc, iso, parse_iso

log = logging.getLogger(__name__)


class BreachKey(NamedTuple):
    """What "alerted once" is about: one window of one country."""

    window_start: datetime
    window_end: datetime
    origin_country: str

    def to_json(self) -> list[str]:
        return [iso(self.window_start), iso(self.window_end), self.origin_country]

    @classmethod
    def from_json(cls, item: Sequence[str]) -> BreachKey:
        start, end, country = item
        return cls(parse_iso(start), parse_iso(end), str(country))


@dataclass(frozen=True)
class Breach:
    window_start: datetime
    window_end: datetime
    origin_country: str
    total_observations: int
    altitude_anomalies: int
    velocity_anomalies: int
    anomaly_rate: float
    max_altitude: float | None
    max_velocity: float | None

    @property
    def key(self) -> BreachKey:
        return BreachKey(self.window_start, self.window_end, self.origin_country)


def sort_breaches(breaches: Iterable[Breach]) -> list[Breach]:
    """Highest rate first; ties by window, then country, so that a message is reproducible."""
    return sorted(breaches, key=lambda b: (-b.anomaly_rate, b.window_start, b.window_end, b.origin_country))


def select_breaches(rows, settings: AlertSettings) -> list[Breach]:
    """The rows of an Arrow table (ALERT_COLUMNS) with anomaly_rate strictly above the threshold
    and at least min_observations observations, one per key (the last one read wins), sorted."""
    import pyarrow.compute as pc

    if rows is None or rows.num_rows == 0:
        return []
    mask = pc.and_kleene(
        pc.greater(rows["anomaly_rate"], settings.threshold),
        pc.greater_equal(rows["total_observations"], settings.min_observations),
    )
    selected = rows.filter(pc.fill_null(mask, False))
    columns = [selected[name].to_pylist() for name in ALERT_COLUMNS]
    by_key: dict[BreachKey, Breach] = {}
    for start, end, country, total, altitude, velocity, rate, max_altitude, max_velocity in zip(*columns):
        if start is None or end is None or country is None:
            log.warning("anomaly_alerts row without a complete key skipped: %s %s %s", start, end, country)
            continue
        breach = Breach(
            as_utc(start),
            as_utc(end),
            str(country),
            int(total),
            int(altitude or 0),
            int(velocity or 0),
            float(rate),
            max_altitude,
            max_velocity,
        )
        by_key[breach.key] = breach
    return sort_breaches(by_key.values())
