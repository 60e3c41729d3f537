"""Schemas of Silver_ML (input) and of the two Gold tables (output), as SPEC.md defines them."""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DataType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    NumericType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

SILVER_ML_SCHEMA = StructType([
    StructField("event_timestamp", TimestampType()),
    StructField("icao24", StringType()),
    StructField("callsign", StringType()),
    StructField("origin_country", StringType()),
    StructField("longitude", FloatType()),
    StructField("latitude", FloatType()),
    StructField("velocity_kmh", DoubleType()),
    StructField("altitude_meters", FloatType()),
    StructField("on_ground", BooleanType()),
    StructField("category", IntegerType()),
    StructField("prev_altitude", FloatType()),
    StructField("prev_velocity", DoubleType()),
    StructField("altitude_change", FloatType()),
    StructField("velocity_change", DoubleType()),
    StructField("observation_rank", IntegerType()),
    StructField("airport_icao", StringType()),
    StructField("airport_name", StringType()),
    StructField("airport_country", StringType()),
    StructField("rolling_avg_altitude", DoubleType()),
    StructField("rolling_std_altitude", DoubleType()),
    StructField("rolling_avg_velocity", DoubleType()),
    StructField("flight_phase", StringType()),
])

FLIGHT_PHASES = ("GROUND", "TAKEOFF", "CLIMB", "CRUISE", "DESCENT", "TRANSITION")
UNKNOWN_PHASE = "UNKNOWN"
UNKNOWN_COUNTRY = "Unknown"

# The only columns the Gold jobs read; anything else upstream adds is ignored.
# Each maps to the check its type must pass (numeric columns may be float, double or integer).
REQUIRED_SILVER_COLUMNS: dict[str, tuple[str, type]] = {
    "event_timestamp": ("timestamp", TimestampType),
    "flight_phase": ("string", StringType),
    "origin_country": ("string", StringType),
    "altitude_meters": ("numeric", NumericType),
    "velocity_kmh": ("numeric", NumericType),
}

FLIGHT_PHASE_COUNTS_SCHEMA = StructType([
    StructField("window_start", TimestampType()),
    StructField("window_end", TimestampType()),
    StructField("flight_phase", StringType()),
    StructField("flight_count", LongType()),
    StructField("avg_altitude", DoubleType()),
    StructField("avg_velocity", DoubleType()),
])

ANOMALY_ALERTS_SCHEMA = StructType([
    StructField("window_start", TimestampType()),
    StructField("window_end", TimestampType()),
    StructField("origin_country", StringType()),
    StructField("total_observations", LongType()),
    StructField("altitude_anomalies", LongType()),
    StructField("velocity_anomalies", LongType()),
    StructField("anomaly_rate", DoubleType()),
    StructField("max_altitude", DoubleType()),
    StructField("min_altitude", DoubleType()),
    StructField("max_velocity", DoubleType()),
    StructField("avg_altitude", DoubleType()),
    StructField("avg_velocity", DoubleType()),
    StructField("stddev_altitude", DoubleType()),
    StructField("stddev_velocity", DoubleType()),
])

GOLD_SCHEMAS = {
    "flight_phase_counts": FLIGHT_PHASE_COUNTS_SCHEMA,
    "anomaly_alerts": ANOMALY_ALERTS_SCHEMA,
}


class SilverSchemaError(ValueError):
    """Silver_ML lacks a column the Gold jobs need, or has it with an unusable type."""


def validate_silver_schema(schema: StructType, path: str = "silver/flights_ml") -> None:
    """Raises SilverSchemaError naming the first missing or mistyped column."""
    fields: dict[str, DataType] = {f.name: f.dataType for f in schema.fields}
    for column, (expected, type_class) in REQUIRED_SILVER_COLUMNS.items():
        if column not in fields:
            raise SilverSchemaError(f"Silver_ML table {path} has no column '{column}' (needed: {expected})")
        actual = fields[column]
        if not isinstance(actual, type_class):
            raise SilverSchemaError(
                f"Silver_ML column '{column}' in {path} is {actual.simpleString()}, expected {expected}"
            )
