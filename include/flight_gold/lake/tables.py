"""JVM-free access to the lakehouse tables with the `deltalake` package (delta-rs).

The alert check and the dashboard read the Gold tables this way in well under a second; the
Silver_ML feed writes with it. Spark stays the only writer of the Gold tables.
"""

from __future__ import annotations

from flight_gold.core.config import GoldConfig
from flight_gold.core.s3 import S3Access


def storage_options(config: GoldConfig) -> dict[str, str] | None:
    """delta-rs options for an s3a:// root (same endpoint and credentials as Spark's S3A)."""
    return S3Access.of(config).delta_rs_options() if config.is_s3 else None


def table_uri(path: str) -> str:
    """delta-rs speaks s3://, Spark speaks s3a:// about the same objects."""
    return "s3://" + path[len("s3a://") :] if path.startswith("s3a://") else path


def open_table(path: str, config: GoldConfig, version: int | None = None):
    """The DeltaTable at `path`, or None when no Delta table is there yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_uri(path), version=version, storage_options=storage_options(config))
    except TableNotFoundError:
        return None
