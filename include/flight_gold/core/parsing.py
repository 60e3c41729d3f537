"""The parsers of GoldConfig's settings (environment values and flags are strings) and the error
they raise, which names the setting and the bad value."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flight_gold.core.contract import GOLD_TABLE_NAMES

__all__ = [
    "ConfigError",
    "normalize_root",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_str",
    "parse_table_list",
]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting and the bad value."""


def normalize_root(root: str) -> str:
    """Local roots become absolute paths (file:// stripped); object-store URIs are kept as given."""
    root = str(root).strip()
    if "://" in root and not root.startswith("file://"):
        return root.rstrip("/")
    if root.startswith("file://"):
        root = root[len("file://") :]
    return str(Path(root).expanduser().resolve())


def parse_int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def parse_float(raw: str, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def parse_bool(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_table_list(raw: str | Iterable[str], name: str = "tables") -> tuple[str, ...]:
    """'a,b', 'both' / 'all', or a list -> Gold table names (each consumer validates them)."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = tuple(str(item).strip() for item in items if str(item).strip())
    return GOLD_TABLE_NAMES if names in (("both",), ("all",)) else names


def parse_str(raw: str, name: str) -> str:
    return raw
