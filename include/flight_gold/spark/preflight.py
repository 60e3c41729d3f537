"""What the Gold job checks before its first query starts: each check refuses, with a one-line
reason and before anything is written, a start that would fail deep inside a query or lose or
double a window."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from flight_gold.core.config import GoldConfig
from flight_gold.core.errors import one_line
from flight_gold.core.paths import delta_log
from flight_gold.spark.checkpoints import (
    GoldNotEmptyError,
    check_settings,
    clear_first_batch_debris,
    is_new,
    write_settings,
)
from flight_gold.spark.files import FileAccess, HadoopFiles
from flight_gold.spark.guards import (
    DeltaLogError,
    GuardError,
    check_checkpoint_source,
    checkpoint_watermarks,
    latest_source_offset,
    table_id_from_log,
    validate_delta_log,
)
from flight_gold.spark.refresh import check_no_unfinished_refresh, full_refresh
from flight_gold.spark.schemas import validate_silver_schema

log = logging.getLogger("flight_gold.spark.preflight")

# What the Delta source admits in one batch without maxFilesPerTrigger (its default limit).
DELTA_FILES_PER_BATCH = 1000


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
    if not files.list(delta_log(path)):
        raise SilverNotReadyError(
            f"Silver_ML at {path} is not a Delta table (no commit in {path}/_delta_log)"
        )
    try:
        validate_delta_log(
            files,
            path,
            from_version=resume_version(files, config),
            replay_span=config.max_files_per_trigger or DELTA_FILES_PER_BATCH,
        )
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


def resume_version(files: FileAccess, config: GoldConfig) -> int | None:
    """The oldest Silver_ML version a query resumes from (its commits are replayed), None when no
    query's checkpoint has a batch."""
    versions = []
    for name in config.queries:
        offset = latest_source_offset(files, config.paths.checkpoint(name))
        if offset and isinstance(offset.get("reservoirVersion"), int):
            versions.append(offset["reservoirVersion"])
    return min(versions, default=None)


def silver_table_id(spark: SparkSession, config: GoldConfig) -> str:
    """Silver_ML's table id, from its log's metaData action (the id never changes after the
    creation): version 0's commit, else the newest checkpoint's (0.json cleaned up). DeltaTable's
    detail() would rebuild the table's whole state: 16 s on 2,000 commits without checkpoints."""
    table_id = table_id_from_log(HadoopFiles(spark), config.paths.silver_flights_ml)
    if table_id is not None:
        return table_id
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


def prepare_checkpoints(spark: SparkSession, config: GoldConfig) -> list[str]:
    """Everything done to the checkpoints before the queries start; run it with them locked.
    Returns the queries whose checkpoint is new (no batch yet).

    --full-refresh first (or the refusal of a plain start after an unfinished one); then the
    leftovers of a first batch that never committed are removed; then the refusals (another
    Silver_ML table, a new checkpoint beside a Gold table with rows, changed settings), all
    before anything else is written; last, the settings of new checkpoints are recorded."""
    files = HadoopFiles(spark)
    if config.full_refresh:
        full_refresh(spark, files, config)
    else:
        check_no_unfinished_refresh(files, config)
    for name in config.queries:
        checkpoint = config.paths.checkpoint(name)
        removed = clear_first_batch_debris(files, checkpoint)
        if removed:
            log.warning(
                "checkpoint %s: removed %s, left by a first batch that never committed (a kill "
                "while it started); the query starts it again",
                checkpoint,
                ", ".join(removed),
            )
    check_checkpoints(spark, config)
    fresh = [name for name in config.queries if is_new(files, config.paths.checkpoint(name))]
    for name in fresh:
        check_gold_is_empty(spark, config, name)
    documents = {name: check_settings(files, config, name) for name in config.queries}
    for name, document in documents.items():
        if document is not None:
            write_settings(files, config, name, document)
    return fresh


def check_gold_is_empty(spark: SparkSession, config: GoldConfig, name: str) -> None:
    """A new checkpoint must not write next to rows an earlier stream wrote: its query id (the
    writer's idempotency key) is new, so every window would be appended a second time."""
    from delta.tables import DeltaTable

    gold = config.paths.gold_table(name)
    if not DeltaTable.isDeltaTable(spark, gold):
        return
    rows = spark.read.format("delta").load(gold).count()
    if rows:
        raise GoldNotEmptyError(
            f"Gold table {name} at {gold} already holds {rows} rows but its checkpoint "
            f"{config.paths.checkpoint(name)} has no batch (deleted, moved, or never made): "
            f"starting would append every window of Silver_ML a second time. Nothing was "
            f"written. Put the checkpoint back to resume, or run with --full-refresh to rebuild "
            f"{name} from all of Silver_ML"
        )
