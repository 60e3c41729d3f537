"""Durations as the project writes them: Spark's interval strings ('10 seconds', '2 minutes')
for settings, and Delta's table-property intervals ('interval 1 week')."""

from __future__ import annotations

import re

# What GoldConfig accepts and Spark's window()/withWatermark() understand.
INTERVAL_PATTERN = r"^\s*\d+(\.\d+)?\s*(second|seconds|minute|minutes|hour|hours)\s*$"
_INTERVAL = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour)s?\s*")
_UNIT_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
# Durations of the project's own settings (retentions, delays): Spark's units plus days.
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(second|seconds|minute|minutes|hour|hours|day|days)\s*$"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day)s?\s*")

_DELTA_PART = re.compile(
    r"(\d+(?:\.\d+)?)\s*(week|day|hour|minute|second|millisecond|microsecond)s?\b", re.IGNORECASE
)
_HOURS_PER_UNIT = {
    "week": 168.0,
    "day": 24.0,
    "hour": 1.0,
    "minute": 1 / 60,
    "second": 1 / 3600,
    "millisecond": 1 / 3_600_000,
    "microsecond": 1 / 3_600_000_000,
}


def is_interval(text: str) -> bool:
    return bool(re.match(INTERVAL_PATTERN, text or ""))


def interval_ms(text: str) -> int:
    """'2 minutes' -> 120000. ValueError for anything else."""
    match = _INTERVAL.fullmatch(text or "")
    if not match:
        raise ValueError(f"not an interval like '10 seconds' or '2 minutes': {text!r}")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


def interval_seconds(text: str) -> float:
    return interval_ms(text) / 1000


def is_duration(text: str) -> bool:
    return bool(re.match(DURATION_PATTERN, text or ""))


def duration_seconds(text: str) -> float:
    """'7 days' -> 604800.0, '0 seconds' -> 0.0. ValueError for anything else."""
    match = _DURATION.fullmatch(text or "")
    if not match:
        raise ValueError(f"not a duration like '30 seconds', '5 minutes' or '7 days': {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)] / 1000


def delta_interval_hours(value: str | None) -> float | None:
    """Hours of a Delta interval property such as 'interval 1 week' or 'interval 2 days 12 hours';
    None when absent or not understood."""
    if not value:
        return None
    text = value.strip().lower()
    text = text[len("interval") :] if text.startswith("interval") else text
    parts = _DELTA_PART.findall(text)
    if not parts or _DELTA_PART.sub("", text).strip():
        return None
    return sum(float(n) * _HOURS_PER_UNIT[unit.lower()] for n, unit in parts)
