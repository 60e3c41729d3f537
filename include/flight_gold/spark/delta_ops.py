"""The Delta operations of the maintenance job on one table: its state, and VACUUM.

VACUUM never writes to the table's log. With `spark.databricks.delta.vacuum.logging.enabled`
unset, Delta 4.4 writes two commits per VACUUM (VACUUM START and VACUUM END) on file://, hdfs://,
abfs://, gs:// and a few more (not on s3a://): a second writer beside the Gold stream, the one
writer of a Gold table's log (see flight_gold.spark.compaction). vacuum_table turns that logging
off for its call on every root, and counts the files it deletes from a DRY RUN just before.

Delta 4.4 ignores VACUUM's `RETAIN n HOURS` unless n is 0 (internal setting
`spark.databricks.delta.vacuum.retentionWindowIgnore.enabled`, on by default) and uses the
table's `delta.deletedFileRetentionDuration` instead: a retention asked above the table's would
silently delete more than asked. `vacuum_table` turns that setting off for its one call, so the
retention asked is the retention applied, still under Delta's safety check. Delta rounds it to
whole hours, hence an integer here.

VACUUM lists the table's folder with Spark's parallel partition discovery, sized for clusters
(~10,000 tasks on an 8-file table: 55-107 s here); on a local master two tasks do it in 8-10 s.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flight_gold.spark.session import is_local_master

RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"
RETENTION_WINDOW_IGNORE_CONF = "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled"
VACUUM_LOGGING_CONF = "spark.databricks.delta.vacuum.logging.enabled"
PARTITION_DISCOVERY_CONF = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
LOCAL_DISCOVERY_PARALLELISM = "2"


def table_exists(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def latest_version(spark, path: str) -> int:
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def table_stats(spark, path: str) -> dict[str, Any]:
    """Version, active files and bytes of one snapshot (DESCRIBE DETAIL), and the properties.

    DESCRIBE DETAIL does not say which version it describes; reading the latest version before
    and after it, and retrying when a concurrent commit slipped in between, ties the two."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    before = latest_version(spark, path)
    for _ in range(5):
        detail = table.detail().first()
        after = latest_version(spark, path)
        if after == before:
            break
        before = after
    return {
        "version": after,
        "files": int(detail["numFiles"]),
        "bytes": int(detail["sizeInBytes"]),
        "properties": dict(detail["properties"] or {}),
    }


def _sql_path(path: str) -> str:
    return "delta.`" + path.replace("`", "``") + "`"


@contextlib.contextmanager
def session_conf(spark, settings: dict[str, str]):
    """Spark settings for the duration of a block: the session may be shared (tests, a longer
    job), and an override must not outlive the one call it was meant for."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def vacuum_table(spark, path: str, retention_hours: int, lift_retention_check: bool = False) -> int:
    """VACUUM with the given retention, writing nothing to the table's log; returns how many
    files it deleted (the DRY RUN list taken just before)."""
    from delta.tables import DeltaTable

    settings = {RETENTION_WINDOW_IGNORE_CONF: "false", VACUUM_LOGGING_CONF: "false"}
    if lift_retention_check:
        settings[RETENTION_CHECK_CONF] = "false"
    if is_local_master(spark.sparkContext.master):
        settings[PARTITION_DISCOVERY_CONF] = LOCAL_DISCOVERY_PARALLELISM
    with session_conf(spark, settings):
        dry_run = spark.sql(f"VACUUM {_sql_path(path)} RETAIN {int(retention_hours)} HOURS DRY RUN").count()
        DeltaTable.forPath(spark, path).vacuum(int(retention_hours))
    return int(dry_run)
