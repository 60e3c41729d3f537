"""The Gold tables' streaming sink: each micro-batch's closed windows appended to the Delta
table exactly once."""

from __future__ import annotations

import logging
import threading

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from flight_gold.core.config import GoldConfig
from flight_gold.spark.files import HadoopFiles
from flight_gold.spark.guards import clear_unborn_delta_log
from flight_gold.spark.schemas import GOLD_SCHEMAS

log = logging.getLogger("flight_gold.spark.sink")


def ensure_gold_table(spark: SparkSession, config: GoldConfig, name: str) -> None:
    """Creates the Gold table with its contract schema if it is not there, so that readers
    (dashboard, alerts) find an empty table rather than nothing before the first window closes."""
    from delta.tables import DeltaTable

    path = config.paths.gold_table(name)
    if clear_unborn_delta_log(HadoopFiles(spark), path):
        log.warning(
            "%s: removed an empty _delta_log left by a creation stopped before its first "
            "commit; creating the table",
            path,
        )
    (DeltaTable.createIfNotExists(spark).location(path).addColumns(GOLD_SCHEMAS[name]).execute())


class GoldTableWriter:
    """The Gold tables' streaming sink (foreachBatch): appends a micro-batch's closed windows to
    the Delta table, exactly once.

    Spark's Delta sink commits every micro-batch, also the five in six (10 s trigger, 1-minute
    windows) that close no window; each such empty commit still costs a state reconstruction of
    the Gold table (Delta 4.4 reads the SetTransactions that way). This writer commits only the
    batches that have rows, with the Delta sink's own idempotency keys (txnAppId = the query's
    id, txnVersion = the batch id): a batch replayed after a crash that had already committed is
    skipped by Delta, and tables written by the Delta sink carry on with the same records."""

    def __init__(self, path: str, compactor=None) -> None:
        self.path = path
        # flight_gold.spark.compaction.Compactor: compacts the table after an append when due,
        # in this thread, so that compactions and appends of the table never overlap.
        self.compactor = compactor
        self._query_id: str | None = None
        self._bound = threading.Event()

    def bind(self, query: StreamingQuery) -> None:
        self._query_id = str(query.id)
        self._bound.set()

    def __call__(self, batch, batch_id: int) -> None:
        # The first batch may start before start() has returned the query that bind() needs.
        if not self._bound.wait(timeout=120):
            raise RuntimeError(f"the Gold writer of {self.path} was never bound to its query")
        # count() runs the batch's stateful plan once, into the cache the write then reads: a
        # second run would apply the batch to the state store twice.
        batch.persist()
        try:
            if batch.count() == 0:
                return
            (
                batch.write.format("delta")
                .mode("append")
                .option("txnAppId", self._query_id)
                .option("txnVersion", batch_id)
                .save(self.path)
            )
        finally:
            batch.unpersist()
        if self.compactor is not None:
            self.compactor.appended()
