"""UTC instants the one way the project writes them: '2024-05-01T10:00:00Z'."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken as UTC."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """'2024-05-01T10:00:00Z' (microseconds only when there are some); None stays None."""
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None).isoformat() + "Z"


def parse_iso(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00")))


def epoch_ms(value: datetime | str) -> int:
    """Milliseconds since the epoch of a datetime or of an ISO 8601 string (Spark's progress
    events write '2024-05-01T10:13:59.000Z')."""
    if isinstance(value, str):
        value = parse_iso(value)
    return round(as_utc(value).timestamp() * 1000)


def from_epoch_ms(ms: int | float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
