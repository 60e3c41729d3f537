"""`--full-refresh`: rebuild chosen Gold tables from all of Silver_ML.

Under the checkpoint lock, per table, in this order:

1. write the refresh marker `_checkpoints/gold/streaming_aggregations/<table>.full_refresh`
   (beside the checkpoint folder, so that clearing the folder keeps it);
2. delete everything in the checkpoint folder except its lock file;
3. delete every row of the Gold table with one Delta DELETE commit: the table, its id and its
   history stay, so readers (dashboard, alerts) keep working and see it fill again;
4. remove the marker.

Then the job runs as usual on a new checkpoint. A kill at any step leaves the marker: a plain
start refuses ("a full refresh of X was started and not finished"), and `--full-refresh` again
redoes every step (each is idempotent), so the end state is always Gold rebuilt from Silver_ML,
never a mix of old and new rows.
"""

from __future__ import annotations

import json
import logging
import time

from pyspark.sql import SparkSession

from flight_gold.core.config import GoldConfig
from flight_gold.spark.checkpoints import clear_checkpoint
from flight_gold.spark.compaction import forget
from flight_gold.spark.files import FileAccess
from flight_gold.spark.guards import GuardError

log = logging.getLogger("flight_gold.spark.refresh")


class UnfinishedRefreshError(GuardError):
    """A full refresh was started and did not finish: a plain start would mix old and new."""


def marker_path(config: GoldConfig, name: str) -> str:
    return config.paths.refresh_marker(name)


def _marker_exists(files: FileAccess, config: GoldConfig, name: str) -> bool:
    parent, _, base = marker_path(config, name).rpartition("/")
    return base in (files.list(parent) or [])


def check_no_unfinished_refresh(files: FileAccess, config: GoldConfig) -> None:
    for name in config.queries:
        if _marker_exists(files, config, name):
            raise UnfinishedRefreshError(
                f"a full refresh of {name} was started and not finished: run with --full-refresh "
                f"again (its marker {marker_path(config, name)} says so)"
            )


def full_refresh(spark: SparkSession, files: FileAccess, config: GoldConfig) -> None:
    """Steps 1-4 above for every configured table. Run it with the checkpoints locked."""
    from delta.tables import DeltaTable

    for name in config.queries:
        checkpoint, gold = config.paths.checkpoint(name), config.paths.gold_table(name)
        marker = marker_path(config, name)
        began = time.monotonic()
        record = {"table": name, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        files.write(marker, (json.dumps(record) + "\n").encode())
        removed = clear_checkpoint(files, checkpoint)
        deleted = 0
        if DeltaTable.isDeltaTable(spark, gold):
            table = DeltaTable.forPath(spark, gold)
            deleted = table.toDF().count()
            if deleted:
                table.delete()
        forget(gold)
        files.delete(marker)
        log.warning(
            "full refresh of %s: checkpoint %s cleared (%s), %d rows deleted from %s in %.1f s; "
            "rebuilding it from all of Silver_ML",
            name,
            checkpoint,
            ", ".join(removed) or "it was empty",
            deleted,
            gold,
            time.monotonic() - began,
        )
