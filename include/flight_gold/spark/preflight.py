"""What the Gold job checks before its first query starts: each check refuses, with a one-line
reason and before anything is written, a start that would fail deep inside a query or lose or
double a window."""

from __future__ import annotations

from pyspark.sql import SparkSession

from flight_gold.core.config import GoldConfig
from flight_gold.core.errors import one_line
from flight_gold.spark.files import HadoopFiles
from flight_gold.spark.guards import (
    DeltaLogError,
    GuardError,
    check_checkpoint_source,
    checkpoint_watermarks,
    latest_source_offset,
    validate_delta_log,
)
from flight_gold.spark.schemas import validate_silver_schema


class SilverNotReadyError(RuntimeError):
    """Silver_ML is missing, is no Delta table, or lacks a needed column: bad input, exit code 2."""


def check_silver(spark: SparkSession, config: GoldConfig) -> None:
    """Fails with a one-line reason naming the path, the log entry or the column, before anything
    is written: the table is there, is Delta, every `_delta_log` entry Delta is about to read
    parses, and the five columns the Gold tables need have usable types."""
    from delta.tables import DeltaTable

    path = config.paths.silver_flights_ml
    files = HadoopFiles(spark)
    if files.list(path) is None:
        raise SilverNotReadyError(f"Silver_ML table not found: {path} does not exist")
    if not files.list(f"{path}/_delta_log"):
        raise SilverNotReadyError(
            f"Silver_ML at {path} is not a Delta table (no commit in {path}/_delta_log)"
        )
    try:
        validate_delta_log(files, path, from_version=_resume_version(files, config))
    except (DeltaLogError, GuardError) as exc:
        raise SilverNotReadyError(str(exc)) from None
    try:
        if not DeltaTable.isDeltaTable(spark, path):
            raise SilverNotReadyError(
                f"Silver_ML at {path} is not a Delta table (no commit in {path}/_delta_log)"
            )
        schema = spark.read.format("delta").load(path).schema
    except SilverNotReadyError:
        raise
    except Exception as exc:
        raise SilverNotReadyError(f"Silver_ML table {path} cannot be read: {one_line(exc)}") from None
    try:
        validate_silver_schema(schema, path)
    except ValueError as exc:
        raise SilverNotReadyError(str(exc)) from None


def _resume_version(files: HadoopFiles, config: GoldConfig) -> int | None:
    """The oldest Silver_ML version a query resumes from (its commits are replayed), if any."""
    versions = []
    for name in config.queries:
        offset = latest_source_offset(files, config.paths.checkpoint(name))
        if offset and isinstance(offset.get("reservoirVersion"), int):
            versions.append(offset["reservoirVersion"])
    return min(versions, default=None)


def silver_table_id(spark: SparkSession, config: GoldConfig) -> str:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, config.paths.silver_flights_ml).detail().select("id").first()[0]


def recorded_watermarks(spark: SparkSession, config: GoldConfig) -> dict[str, dict[int, int]]:
    """The watermarks of each query's newest batches in its checkpoint (for ProgressLogger)."""
    files = HadoopFiles(spark)
    return {name: checkpoint_watermarks(files, config.paths.checkpoint(name)) for name in config.queries}


def check_checkpoints(spark: SparkSession, config: GoldConfig) -> None:
    """CheckpointMismatchError when a query's checkpoint was written for another Silver_ML table
    (deleted and re-created at the same path). Run it with the checkpoints locked."""
    check_checkpoint_source(HadoopFiles(spark), config, silver_table_id(spark, config))
