"""JVM-free access to the lakehouse tables with the `deltalake` package (delta-rs).

The alert check and the dashboard read the Gold tables this way in well under a second; the
Silver_ML feed writes with it. Spark stays the only writer of the Gold tables.
"""

from __future__ import annotations

import os

import pyarrow as pa
from pyspark.sql import types as T

from flight_gold.config import GoldConfig
from flight_gold.schemas import GOLD_SCHEMAS, SILVER_ML_SCHEMA

_ARROW_TYPES = {
    T.TimestampType: pa.timestamp("us", tz="UTC"),
    T.StringType: pa.string(),
    T.LongType: pa.int64(),
    T.IntegerType: pa.int32(),
    T.DoubleType: pa.float64(),
    T.FloatType: pa.float32(),
    T.BooleanType: pa.bool_(),
}


def arrow_schema(spark_schema: T.StructType) -> pa.Schema:
    return pa.schema([pa.field(f.name, _ARROW_TYPES[type(f.dataType)], nullable=True)
                      for f in spark_schema.fields])


SILVER_ML_ARROW_SCHEMA = arrow_schema(SILVER_ML_SCHEMA)
GOLD_ARROW_SCHEMAS = {name: arrow_schema(schema) for name, schema in GOLD_SCHEMAS.items()}


def storage_options(config: GoldConfig) -> dict[str, str] | None:
    """delta-rs options for an s3a:// root (same endpoint and credentials as Spark's S3A)."""
    if not config.is_s3:
        return None
    options = {
        "AWS_ALLOW_HTTP": "true" if (config.s3_endpoint or "").startswith("http://") else "false",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        "AWS_REGION": os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
    }
    if config.s3_endpoint:
        options["AWS_ENDPOINT_URL"] = config.s3_endpoint
    if config.s3_path_style_access:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(var):
            options[var] = os.environ[var]
    return options


def table_uri(path: str) -> str:
    """delta-rs speaks s3://, Spark speaks s3a:// about the same objects."""
    return "s3://" + path[len("s3a://"):] if path.startswith("s3a://") else path


def open_table(path: str, config: GoldConfig, version: int | None = None):
    """The DeltaTable at `path`, or None when no Delta table is there yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_uri(path), version=version, storage_options=storage_options(config))
    except TableNotFoundError:
        return None
