"""JVM-free checks of the lakehouse, for Airflow sensors and tests.

A Delta table exists once its `_delta_log/` holds a commit (or a checkpoint). delta-rs answers
that by listing the log, on a local folder or an object store alike, in milliseconds, so a sensor
can ask often without starting Spark.
"""

from __future__ import annotations

from flight_gold.core.config import GoldConfig
from flight_gold.core.errors import one_line
from flight_gold.lake.tables import storage_options, table_uri


class LakehouseCheckError(RuntimeError):
    """The store could not be asked (unreachable endpoint, bad credentials): not the same as
    "the table is not there yet". The message names the path."""


def has_delta_commit(path: str, config: GoldConfig) -> bool:
    """True when `path/_delta_log/` holds at least one commit; False when the path, the log or
    every commit is missing. `path` is a local folder or an s3a:// (or s3://) URI; S3 uses the
    endpoint and credentials of `flight_gold.lake.tables.storage_options`, as the Spark job does."""
    from deltalake import DeltaTable

    try:
        return DeltaTable.is_deltatable(table_uri(path), storage_options=storage_options(config))
    except OSError as exc:
        raise LakehouseCheckError(f"cannot read {path}/_delta_log: {one_line(exc, 400, chain=True)}") from exc


def silver_ml_ready(config: GoldConfig) -> bool:
    """True when Silver_ML is a Delta table, i.e. what the Gold streams need to start."""
    return has_delta_commit(config.paths.silver_flights_ml, config)
