"""A processing-time restart with a backlog: the head start's small batches first, then the queries
started again with the configured limit, and every window written exactly once across the switch
(flight_gold.spark.runner). The job runs in this process's Spark session."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flight_gold.spark import runner
from flight_gold.spark.checkpoints import nothing_due_after_a_stop
from flight_gold.spark.files import LocalFiles
from support.expected import expected_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    assert_gold_is,
    lakehouse_config,
    numbered,
    run_in_process,
    silver_frame,
    wait_for,
)
from support.streams import drained, run_stream_until, running_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

HEAD_START_FILES = 3
# Commits added before the restart: ten head-start batches' worth, so that the batches after the
# switch have files left to read whichever query reaches its second batch first.
BACKLOG = 30


def files_read_per_batch(config, table: str) -> list[int]:
    """Silver_ML commits (one file each here) each batch of the query's offset log read, no-data
    batches left out, from the checkpoint."""
    folder = Path(config.paths.checkpoint(table)) / "offsets"
    ends = [json.loads((folder / str(n)).read_text().splitlines()[-1]) for n in numbered(folder)]
    versions = [end["reservoirVersion"] for end in ends]
    return [b - a for a, b in zip(versions, versions[1:]) if b != a]


def test_a_restart_with_a_backlog_starts_with_small_batches_and_writes_every_window_once(
    spark, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(runner, "HEAD_START_FILES", HEAD_START_FILES)
    config = lakehouse_config(tmp_path / "lakehouse").replace(trigger_interval="1 second")
    minutes = [
        silver_frame(20, START + pd.Timedelta(minutes=k), 60, seed=900 + k) for k in range(4 + BACKLOG)
    ]
    for frame in minutes[:4]:
        append_silver(config, frame)
    assert run_in_process(spark, config.replace(trigger="available-now")) == 0
    before = {table: files_read_per_batch(config, table) for table in TABLES}
    for frame in minutes[4:]:
        append_silver(config, frame)

    with running_stream(spark, config, caplog) as stream:
        run_stream_until(stream, lambda: drained(caplog, pd.concat(minutes)), "the final watermarks")

    switch = "head start over: restarting the queries with batches of up to Delta's default of 1,000"
    assert any(message.startswith(switch) for message in caplog.messages)
    for table in TABLES:
        sizes = files_read_per_batch(config, table)[len(before[table]) :]
        # Head-start batches (at least two; more while the other query finishes its two, and one
        # cut by the switch is replayed as it was planned), then the configured limit (Delta's
        # 1,000) reads all that is left in one batch.
        assert sum(sizes) == BACKLOG, (table, sizes)
        assert sizes[:2] == [HEAD_START_FILES] * 2, (table, sizes)
        assert set(sizes[:-1]) == {HEAD_START_FILES} and sizes[-1] > HEAD_START_FILES, (table, sizes)
    assert_gold_is(config, expected_gold(pd.concat(minutes, ignore_index=True)), nonempty=True)


def test_a_backlog_of_exactly_the_head_start_ends_with_its_windows_written_without_new_data(
    spark, tmp_path, caplog, monkeypatch
):
    """The head start's two batches read the whole backlog, and no commit follows: the batch that
    writes the windows they closed is one without data, which Spark runs only in the same start.
    The switch waits for it (a switch before it left those windows for Silver_ML's next commit:
    test_stream_supervision waited 900 s for them). A 5 s trigger leaves seconds between the
    second batch and that one."""
    monkeypatch.setattr(runner, "HEAD_START_FILES", HEAD_START_FILES)
    config = lakehouse_config(tmp_path / "lakehouse").replace(trigger_interval="5 seconds")
    minutes = [silver_frame(20, START + pd.Timedelta(minutes=k), 60, seed=700 + k) for k in range(10)]
    for frame in minutes[:4]:
        append_silver(config, frame)
    assert run_in_process(spark, config.replace(trigger="available-now")) == 0
    for frame in minutes[4:]:
        append_silver(config, frame)

    with running_stream(spark, config, caplog) as stream:
        run_stream_until(stream, lambda: drained(caplog, pd.concat(minutes)), "the final watermarks")
        assert_gold_is(config, expected_gold(pd.concat(minutes, ignore_index=True)), nonempty=True)
    assert any(message.startswith("head start over: ") for message in caplog.messages)


def write_lines(path: Path, *entries: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["v1", *(json.dumps(e) for e in entries)]))


class Checkpoint:
    """A query's offset and commit logs in Spark's format, and Silver_ML's commit files."""

    def __init__(self, root: Path) -> None:
        self.checkpoint, self.silver = root / "checkpoint", root / "silver"
        (self.silver / "_delta_log").mkdir(parents=True)

    def planned(self, batch: int, watermark_ms: int, version: int, index: int = -1) -> None:
        offset = {"sourceVersion": 1, "reservoirId": "x", "reservoirVersion": version, "index": index}
        write_lines(self.checkpoint / "offsets" / str(batch), {"batchWatermarkMs": watermark_ms}, offset)

    def committed(self, batch: int, next_watermark_ms: int) -> None:
        write_lines(self.checkpoint / "commits" / str(batch), {"nextBatchWatermarkMs": next_watermark_ms})

    def silver_commit(self, version: int) -> None:
        (self.silver / "_delta_log" / f"{version:020d}.json").write_text("{}")

    def nothing_due(self) -> bool:
        return nothing_due_after_a_stop(LocalFiles(), str(self.checkpoint), str(self.silver))


def test_a_stop_is_safe_once_no_window_waits_for_a_batch_without_data(tmp_path):
    log = Checkpoint(tmp_path)
    assert log.nothing_due()  # no batch yet
    for version in range(8):
        log.silver_commit(version)
    # Batch 3 reads versions up to 7 and is in flight: it may commit before a stop lands.
    log.planned(3, watermark_ms=1_000, version=8)
    assert not log.nothing_due()
    # It moved the watermark: the batch without data that writes the windows is due.
    log.committed(3, next_watermark_ms=2_000)
    assert not log.nothing_due()
    # Silver_ML's next commit: a new start reads it, with the watermark the commit log kept.
    log.silver_commit(8)
    assert log.nothing_due()
    # Batch 4, that batch without data, planned then committed: nothing is due any more.
    log.planned(4, watermark_ms=2_000, version=9)
    assert not log.nothing_due()
    log.committed(4, next_watermark_ms=2_000)
    assert log.nothing_due()


def test_a_batch_that_ended_inside_a_version_counts_the_next_version_as_unread(tmp_path):
    log = Checkpoint(tmp_path)
    for version in range(6):
        log.silver_commit(version)
    log.planned(0, watermark_ms=0, version=5, index=3)
    log.committed(0, next_watermark_ms=500)
    assert not log.nothing_due()
    log.silver_commit(6)
    assert log.nothing_due()


def windowed_counts(spark, silver: str, checkpoint: str, emitted: list) -> None:
    """One start of a stream of 1-minute counts with a 1-minute watermark over `silver`, stopped
    after its first trigger (a processing-time trigger runs one batch at most; the next would be an
    hour later), appending what each batch emitted."""
    from pyspark.sql import functions as F

    query = (
        spark.readStream.format("delta")
        .load(silver)
        .withWatermark("ts", "1 minute")
        .groupBy(F.window("ts", "1 minute"))
        .count()
        .writeStream.outputMode("append")
        .foreachBatch(
            lambda batch, batch_id: emitted.extend((batch_id, str(r.window.start)) for r in batch.collect())
        )
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime="1 hour")
        .start()
    )
    try:
        wait_for(
            lambda: query.status["message"] == "Waiting for next trigger" or query.exception(),
            120,
            interval=0.1,
            what="the first trigger",
        )
        assert query.exception() is None, query.exception()
    finally:
        query.stop()


def test_a_silver_commit_without_rows_is_enough_for_the_next_start_to_write_the_due_windows(spark, tmp_path):
    """nothing_due_after_a_stop takes any Silver_ML commit past the newest batch's end for one the
    next start reads. Delta's source plans a batch for a commit that adds no rows too (an OPTIMIZE
    of Silver_ML), and that batch, with the watermark the commit log kept, writes the windows."""
    from deltalake import DeltaTable, write_deltalake

    silver, checkpoint = str(tmp_path / "silver"), str(tmp_path / "checkpoint")
    for minute in (0, 1, 3):
        row = pd.Timestamp("2026-01-01 10:00:30", tz="UTC") + pd.Timedelta(minutes=minute)
        write_deltalake(silver, pd.DataFrame({"ts": [row]}), mode="append")
    emitted: list = []
    windowed_counts(spark, silver, checkpoint, emitted)
    # Batch 0 read the rows and moved the watermark to 10:02:30; the batch that writes the windows
    # it closed would have been the next trigger's.
    assert emitted == []
    assert not nothing_due_after_a_stop(LocalFiles(), checkpoint, silver)

    windowed_counts(spark, silver, checkpoint, emitted)
    assert emitted == [], "a start with no new Silver_ML commit ran a batch"

    DeltaTable(silver).optimize.compact()
    assert nothing_due_after_a_stop(LocalFiles(), checkpoint, silver)
    windowed_counts(spark, silver, checkpoint, emitted)
    assert sorted(emitted) == [(1, "2026-01-01 10:00:00"), (1, "2026-01-01 10:01:00")]
