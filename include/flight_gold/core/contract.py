"""The contract of SPEC.md as data, with no engine behind it: Silver_ML's columns, and one
registry of the Gold tables (columns, window, slide, watermark, key). The Spark schemas
(flight_gold.spark.schemas) and the Arrow schemas (flight_gold.lake.schemas) are derived from
it, so a new Gold table is one entry here plus its transformation."""

from __future__ import annotations

from dataclasses import dataclass

# Column types, in the words both engines map from.
TIMESTAMP, STRING, LONG, INT, DOUBLE, FLOAT, BOOLEAN = (
    "timestamp",
    "string",
    "long",
    "int",
    "double",
    "float",
    "boolean",
)
Columns = tuple[tuple[str, str], ...]

SILVER_ML_COLUMNS: Columns = (
    ("event_timestamp", TIMESTAMP),
    ("icao24", STRING),
    ("callsign", STRING),
    ("origin_country", STRING),
    ("longitude", FLOAT),
    ("latitude", FLOAT),
    ("velocity_kmh", DOUBLE),
    ("altitude_meters", FLOAT),
    ("on_ground", BOOLEAN),
    ("category", INT),
    ("prev_altitude", FLOAT),
    ("prev_velocity", DOUBLE),
    ("altitude_change", FLOAT),
    ("velocity_change", DOUBLE),
    ("observation_rank", INT),
    ("airport_icao", STRING),
    ("airport_name", STRING),
    ("airport_country", STRING),
    ("rolling_avg_altitude", DOUBLE),
    ("rolling_std_altitude", DOUBLE),
    ("rolling_avg_velocity", DOUBLE),
    ("flight_phase", STRING),
)
SILVER_ML_COLUMN_NAMES = tuple(name for name, _ in SILVER_ML_COLUMNS)

# The only columns the Gold jobs read (anything else upstream adds is ignored), with the kind of
# type each must have: numeric columns may be float, double or integer.
REQUIRED_SILVER_COLUMNS = {
    "event_timestamp": "timestamp",
    "flight_phase": "string",
    "origin_country": "string",
    "altitude_meters": "numeric",
    "velocity_kmh": "numeric",
}

FLIGHT_PHASES = ("GROUND", "TAKEOFF", "CLIMB", "CRUISE", "DESCENT", "TRANSITION")
UNKNOWN_PHASE = "UNKNOWN"
UNKNOWN_COUNTRY = "Unknown"


@dataclass(frozen=True)
class GoldTable:
    """One Gold table: its columns in order, and the event-time window it aggregates over."""

    name: str
    columns: Columns
    key: str  # grouped by (window, key)
    window: str
    watermark: str
    slide: str | None = None  # None: tumbling

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def key_columns(self) -> tuple[str, str, str]:
        """What identifies a row: a window is written once per key."""
        return ("window_start", "window_end", self.key)

    @property
    def step(self) -> str:
        """How far apart consecutive windows start: the slide, or the window when tumbling."""
        return self.slide or self.window


FLIGHT_PHASE_COUNTS = GoldTable(
    name="flight_phase_counts",
    columns=(
        ("window_start", TIMESTAMP),
        ("window_end", TIMESTAMP),
        ("flight_phase", STRING),
        ("flight_count", LONG),
        ("avg_altitude", DOUBLE),
        ("avg_velocity", DOUBLE),
    ),
    key="flight_phase",
    window="1 minute",
    watermark="2 minutes",
)

ANOMALY_ALERTS = GoldTable(
    name="anomaly_alerts",
    columns=(
        ("window_start", TIMESTAMP),
        ("window_end", TIMESTAMP),
        ("origin_country", STRING),
        ("total_observations", LONG),
        ("altitude_anomalies", LONG),
        ("velocity_anomalies", LONG),
        ("anomaly_rate", DOUBLE),
        ("max_altitude", DOUBLE),
        ("min_altitude", DOUBLE),
        ("max_velocity", DOUBLE),
        ("avg_altitude", DOUBLE),
        ("avg_velocity", DOUBLE),
        ("stddev_altitude", DOUBLE),
        ("stddev_velocity", DOUBLE),
    ),
    key="origin_country",
    window="5 minutes",
    slide="1 minute",
    watermark="6 minutes",
)

GOLD_TABLES: dict[str, GoldTable] = {t.name: t for t in (FLIGHT_PHASE_COUNTS, ANOMALY_ALERTS)}
GOLD_TABLE_NAMES = tuple(GOLD_TABLES)


def gold_table(name: str) -> GoldTable:
    try:
        return GOLD_TABLES[name]
    except KeyError:
        raise ValueError(f"unknown Gold table {name!r}; known: {', '.join(GOLD_TABLE_NAMES)}") from None
