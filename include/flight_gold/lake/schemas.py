"""Arrow schemas of Silver_ML and of the Gold tables, from the contract (no JVM, no pyspark)."""

from __future__ import annotations

import pyarrow as pa

from flight_gold.core.contract import GOLD_TABLES, SILVER_ML_COLUMNS, Columns

_ARROW_TYPES = {
    "timestamp": pa.timestamp("us", tz="UTC"),
    "string": pa.string(),
    "long": pa.int64(),
    "int": pa.int32(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
}


def arrow_schema(columns: Columns) -> pa.Schema:
    return pa.schema([pa.field(name, _ARROW_TYPES[kind], nullable=True) for name, kind in columns])


SILVER_ML_ARROW_SCHEMA = arrow_schema(SILVER_ML_COLUMNS)
GOLD_ARROW_SCHEMAS = {name: arrow_schema(table.columns) for name, table in GOLD_TABLES.items()}
