"""A processing-time restart with a backlog: the head start's small batches first, then the queries
started again with the configured limit, and every window written exactly once across the switch
(flight_gold.spark.runner). The job runs in this process's Spark session."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flight_gold.spark import runner
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
