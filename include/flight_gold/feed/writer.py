"""Appends Silver_ML rows to `silver/flights_ml` with `deltalake` (delta-rs): no JVM, one Delta
commit per call, on a local folder or on s3a:// (same credentials and endpoint as Spark's S3A).

The table stays on the plain protocol (reader 1, writer 2: no deletion vectors, no v2 checkpoints,
no timestamp-without-time-zone column), so that Spark 4.2 with delta-spark 4.4 streams from it.
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa

from flight_gold.core.config import GoldConfig
from flight_gold.feed.opensky import SILVER_COLUMNS
from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from flight_gold.lake.tables import open_table, storage_options, table_uri

log = logging.getLogger("flight_gold.feed.writer")

# delta-rs writes no Delta checkpoint unless asked; without one every reader of the table (the
# Gold stream's start among them) replays every JSON commit since version 0. With this property
# delta-rs writes one every 10 commits, as Spark does.
SILVER_TABLE_PROPERTIES = {"delta.checkpointInterval": "10"}


class SilverWriteError(RuntimeError):
    """The frame or the existing table does not fit Silver_ML."""


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """The frame's Silver_ML columns, in order, as an Arrow table with SILVER_ML_ARROW_SCHEMA
    (NaN/None/NA become null; extra columns are ignored, a missing one is an error)."""
    missing = [c for c in SILVER_COLUMNS if c not in df.columns]
    if missing:
        raise SilverWriteError(f"Silver_ML frame lacks column(s): {', '.join(missing)}")
    frame = df.loc[:, list(SILVER_COLUMNS)]
    try:
        return pa.Table.from_pandas(frame, schema=SILVER_ML_ARROW_SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SilverWriteError(f"Silver_ML frame does not fit the schema: {exc}") from None


def append_silver(df: pd.DataFrame, config: GoldConfig) -> int | None:
    """Appends the rows as one Delta commit to config.paths.silver_flights_ml (creating the table
    on the first call) and returns the new table version; an empty frame writes nothing and
    returns None."""
    from deltalake import write_deltalake

    table = to_arrow(df)
    if table.num_rows == 0:
        return None
    path = config.paths.silver_flights_ml
    existing = open_table(path, config)
    if existing is not None:
        # Appending through the DeltaTable updates it in place: its version is our commit's.
        write_deltalake(existing, table, mode="append")
        version = existing.version()
    else:
        write_deltalake(
            table_uri(path),
            table,
            mode="append",
            storage_options=storage_options(config),
            configuration=SILVER_TABLE_PROPERTIES,
        )
        version = open_table(path, config).version()
    log.debug("appended %d rows to %s as version %s", table.num_rows, path, version)
    return version
