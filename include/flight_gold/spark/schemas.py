"""Spark schemas of Silver_ML (input) and of the Gold tables (output), from the contract."""

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

from flight_gold.core.contract import GOLD_TABLES, REQUIRED_SILVER_COLUMNS, SILVER_ML_COLUMNS, Columns

_SPARK_TYPES = {
    "timestamp": TimestampType,
    "string": StringType,
    "long": LongType,
    "int": IntegerType,
    "double": DoubleType,
    "float": FloatType,
    "boolean": BooleanType,
}
# What each kind of required column accepts.
_ACCEPTED = {"timestamp": TimestampType, "string": StringType, "numeric": NumericType}


def spark_schema(columns: Columns) -> StructType:
    return StructType([StructField(name, _SPARK_TYPES[kind]()) for name, kind in columns])


SILVER_ML_SCHEMA = spark_schema(SILVER_ML_COLUMNS)
GOLD_SCHEMAS = {name: spark_schema(table.columns) for name, table in GOLD_TABLES.items()}


class SilverSchemaError(ValueError):
    """Silver_ML lacks a column the Gold jobs need, or has it with an unusable type."""


def validate_silver_schema(schema: StructType, path: str = "silver/flights_ml") -> None:
    """Raises SilverSchemaError naming the first missing or mistyped column."""
    fields: dict[str, DataType] = {f.name: f.dataType for f in schema.fields}
    for column, expected in REQUIRED_SILVER_COLUMNS.items():
        if column not in fields:
            raise SilverSchemaError(f"Silver_ML table {path} has no column '{column}' (needed: {expected})")
        actual = fields[column]
        if not isinstance(actual, _ACCEPTED[expected]):
            raise SilverSchemaError(
                f"Silver_ML column '{column}' in {path} is {actual.simpleString()}, expected {expected}"
            )
