"""The progress listener's sampling with its default interval (one line per query and minute, plus
every batch that wrote Gold or dropped rows, plus the held-back newest batch when the query goes
idle or the job stops), on progress events shaped like Spark's, with a clock the test moves."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from flight_gold.core.config import GoldConfig
from flight_gold.spark.progress import PROGRESS_PREFIX, ProgressLogger

QUERY_ID = "5b9e0c7e-0000-0000-0000-000000000001"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def event(batch_id: int, rows: int, removed: int = 0, dropped_by_watermark: int = 0):
    operator = SimpleNamespace(
        numRowsDroppedByWatermark=dropped_by_watermark,
        numRowsTotal=10,
        numRowsRemoved=removed,
        memoryUsedBytes=1000,
    )
    return SimpleNamespace(
        progress=SimpleNamespace(
            name="flight_phase_counts",
            id=QUERY_ID,
            runId="run-1",
            batchId=batch_id,
            numInputRows=rows,
            processedRowsPerSecond=100.0,
            inputRowsPerSecond=50.0,
            batchDuration=700,
            timestamp="2024-05-01T10:00:00.000Z",
            eventTime={"watermark": "2024-05-01T09:58:00.000Z"},
            stateOperators=[operator],
            observedMetrics={},
        )
    )


def logged_batches(caplog) -> list[int]:
    return [
        json.loads(r.getMessage().split(PROGRESS_PREFIX, 1)[1])["batch_id"]
        for r in caplog.records
        if r.getMessage().startswith(PROGRESS_PREFIX)
    ]


def test_a_line_per_minute_plus_gold_writes_drops_and_the_newest_on_idle(caplog):
    caplog.set_level(logging.INFO, logger="flight_gold.streaming")
    clock, rows = Clock(), []
    listener = ProgressLogger(
        GoldConfig.from_env({}, trigger="processing-time"),
        metrics=SimpleNamespace(add=rows.append),
        clock=clock,
    )
    listener.onQueryStarted(SimpleNamespace(name="flight_phase_counts", id=QUERY_ID, runId="run-1"))
    # A 10-second trigger: batch k at 10 k seconds; batch 3 closes windows, batch 8 drops rows.
    for k in range(17):
        clock.now = 10.0 * k
        listener.onQueryProgress(
            event(k, rows=100, removed=6 if k == 3 else 0, dropped_by_watermark=2 if k == 8 else 0)
        )
    # 0 (the first), 3 (wrote Gold), 8 (dropped rows), 14 (nothing logged for a minute since 8)
    assert logged_batches(caplog) == [0, 3, 8, 14]
    clock.now = 170.0
    listener.onQueryIdle(SimpleNamespace(id=QUERY_ID))
    listener.onQueryIdle(SimpleNamespace(id=QUERY_ID))
    assert logged_batches(caplog) == [0, 3, 8, 14, 16]
    # Every batch is in the metrics rows, logged or not.
    assert [r["batch_id"] for r in rows] == list(range(17))
    assert rows[3]["gold_rows_written"] == 6 and rows[8]["late_rows_dropped"] == 2
    assert listener.lines_logged == 5


def test_the_newest_batch_is_logged_when_the_job_stops(caplog):
    caplog.set_level(logging.INFO, logger="flight_gold.streaming")
    clock = Clock()
    listener = ProgressLogger(GoldConfig.from_env({}, trigger="available-now-loop"), clock=clock)
    for k in range(3):
        listener.onQueryProgress(event(k, rows=5))
    assert logged_batches(caplog) == [0]
    listener.log_summary()
    assert logged_batches(caplog) == [0, 2]


def test_one_shot_runs_and_zero_interval_log_every_batch(caplog):
    caplog.set_level(logging.INFO, logger="flight_gold.streaming")
    for config in (
        GoldConfig.from_env({}, trigger="available-now"),
        GoldConfig.from_env({}, trigger="processing-time", progress_log_every="0 seconds"),
    ):
        caplog.clear()
        listener = ProgressLogger(config, clock=Clock())
        for k in range(4):
            listener.onQueryProgress(event(k, rows=5))
        assert logged_batches(caplog) == [0, 1, 2, 3]


# A stop that cut an S3A read (the job's log on S3, abridged).
S3A_CUT = "\n".join(
    [
        "java.io.UncheckedIOException: java.io.IOException: Error while reading data. Read interrupted",
        "\tat io.delta.storage.LineCloseableIterator.hasNext(LineCloseableIterator.java:72)",
        "Caused by: java.io.IOException: Error while reading data. Read interrupted while waiting for data",
        "\tat software.amazon.s3.analyticsaccelerator.io.physical.data.Block.awaitData(Block.java:189)",
        "Caused by: java.lang.InterruptedException",
        "\tat java.base/java.util.concurrent.CountDownLatch.await(CountDownLatch.java:230)",
    ]
)
FAILURE = """org.apache.spark.SparkException: [INTERNAL_ERROR] boom
\tat org.apache.spark.SparkException$.internalError(SparkException.scala:104)
Caused by: java.io.IOException: No space left on device
"""


def test_a_stop_that_cut_a_read_is_a_warning_and_a_failure_an_error(caplog):
    caplog.set_level(logging.INFO, logger="flight_gold.streaming")
    listener = ProgressLogger(GoldConfig.from_env({}))
    listener.onQueryTerminated(SimpleNamespace(id=QUERY_ID, exception=S3A_CUT))
    listener.onQueryTerminated(SimpleNamespace(id=QUERY_ID, exception=FAILURE))
    listener.onQueryTerminated(SimpleNamespace(id=QUERY_ID, exception=None))
    said = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records]
    assert said == [
        ("WARNING", f"query {QUERY_ID} stopped mid-batch (java.io.UncheckedIOException"),
        ("ERROR", f"query {QUERY_ID} terminated with an error"),
        ("INFO", f"query {QUERY_ID} terminated"),
    ]
