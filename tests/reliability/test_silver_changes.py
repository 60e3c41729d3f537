"""Silver_ML as production makes it: compacted and Z-ordered before the job's first start, stamped
by a clock that runs fast, given a column while the stream runs, purged by a DELETE. Each ends in
Gold equal to the independent computation of the rows the stream read.

The job runs in this process's Spark session (run_in_process), in a thread for the
processing-time runs."""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from flight_gold.spark import runner
from support.expected import drop_future, expected_gold, streamed_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    assert_gold_is,
    lakehouse_config,
    logged,
    now_utc,
    run_in_process,
    silver_frame,
)
from support.streams import drained, read_all, read_through, run_stream_until, running_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


def summary(caplog) -> dict:
    return logged(caplog, "gold_summary")[-1]


def test_a_first_start_on_a_z_ordered_silver_reads_its_snapshot_in_one_batch(spark, tmp_path, caplog):
    config = lakehouse_config(tmp_path / "lakehouse").replace(
        trigger="available-now", max_files_per_trigger=2
    )
    # 30 commits of one minute each, then Z-ordered by country into small files that each span
    # all 30 minutes: in file order, the event times jump back and forth.
    minutes = [silver_frame(120, START + pd.Timedelta(minutes=k), 60, seed=700 + k) for k in range(30)]
    for frame in minutes:
        append_silver(config, frame)
    silver = DeltaTable(config.paths.silver_flights_ml)
    silver.optimize.z_order(["origin_country"], target_size=16 * 1024)
    files = pa.table(DeltaTable(config.paths.silver_flights_ml).get_add_actions(flatten=True)).to_pydict()
    spans = [hi - lo for lo, hi in zip(files["min.event_timestamp"], files["max.event_timestamp"])]
    assert len(spans) >= 4 and min(spans) > timedelta(minutes=20), (len(spans), spans)

    caplog.set_level(logging.INFO)
    assert run_in_process(spark, config) == 0

    rows = pd.concat(minutes, ignore_index=True)
    expected = expected_gold(rows)
    assert_gold_is(config, expected)
    for table in TABLES:
        assert summary(caplog)[table]["late_rows_dropped"] == 0
        assert summary(caplog)[table]["input_rows"] == len(rows)
    first = [p for p in logged(caplog, "gold_progress") if p["batch_id"] == 0]
    assert sorted(p["input_rows"] for p in first) == [len(rows)] * 2

    # The configured limit applies from then on: 4 new commits, 2 a batch.
    more = [silver_frame(120, START + pd.Timedelta(minutes=30 + k), 60, seed=800 + k) for k in range(4)]
    for frame in more:
        append_silver(config, frame)
    caplog.clear()
    assert run_in_process(spark, config) == 0
    with_data = [p["input_rows"] for p in logged(caplog, "gold_progress") if p["input_rows"]]
    assert with_data == [240, 240, 240, 240], with_data
    expected = expected_gold(pd.concat([rows, *more], ignore_index=True))
    assert_gold_is(config, expected)


def test_a_burst_from_a_fast_clock_is_dropped_and_makes_no_row_late(spark, tmp_path, caplog):
    config = lakehouse_config(tmp_path / "lakehouse").replace(trigger="available-now")
    now = pd.Timestamp(now_utc())
    on_time = silver_frame(700, now - pd.Timedelta(minutes=12), 660, seed=71)
    append_silver(config, on_time)
    assert run_in_process(spark, config) == 0

    # A source whose clock runs 4 to 6 minutes fast, among on-time rows; then on-time rows only.
    # (Stamped from the time of writing: the margin to the job's 60-second horizon is minutes.)
    now = pd.Timestamp(now_utc())
    burst = silver_frame(40, now + pd.Timedelta(minutes=4), 120, seed=72)
    v1 = pd.concat([silver_frame(60, now - pd.Timedelta(seconds=60), 20, seed=73), burst], ignore_index=True)
    v2 = silver_frame(60, now - pd.Timedelta(seconds=40), 20, seed=74)
    v3 = silver_frame(60, now - pd.Timedelta(seconds=20), 20, seed=75)
    for version in (v1, v2, v3):
        append_silver(config, version)
    caplog.set_level(logging.INFO)
    # One Silver version per batch: the burst's batch sets the watermark the batch after next
    # filters late rows with (Spark filters with the previous batch's eviction watermark).
    assert run_in_process(spark, config.replace(max_files_per_trigger=1)) == 0

    batches = [drop_future(v, now.to_pydatetime(), timedelta(seconds=60)) for v in (on_time, v1, v2, v3)]
    expected, late = streamed_gold([batches[0], batches[0].iloc[:0], *batches[1:]])
    assert_gold_is(config, expected)
    for table in TABLES:
        assert late[table] == [0, 0, 0, 0, 0]
        counters = summary(caplog)[table]
        assert counters["dropped_future_timestamp"] == len(burst)
        assert counters["late_rows_dropped"] == 0
    # With the old 10-minute default the burst would have passed: a watermark 2 to 4 minutes
    # ahead of every real row, and the on-time rows of v3 late for the phase counts.
    _, old_late = streamed_gold([on_time, on_time.iloc[:0], v1, v2, v3])
    assert old_late["flight_phase_counts"][4] == len(v3)


def add_squawk(config, frames: list[pd.DataFrame]) -> None:
    """Upstream adds a column (schema evolution by merge) and writes `frames` with it."""
    schema = pa.schema([*SILVER_ML_ARROW_SCHEMA, pa.field("squawk", pa.string())])
    for frame in frames:
        frame["squawk"] = np.where(np.arange(len(frame)) % 2 == 0, "7000", None)
        write_deltalake(
            config.paths.silver_flights_ml,
            pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False),
            mode="append",
            schema_mode="merge",
        )


def test_a_column_added_while_the_stream_runs_restarts_the_queries_and_loses_nothing(spark, tmp_path, caplog):
    # A limit of HEAD_START_FILES (one file a commit here: no batch is smaller for it) means no
    # head start: the head start's own restart of the queries would read a column that landed
    # before it without a schema restart, and this test is about the schema restart.
    config = lakehouse_config(tmp_path / "lakehouse").replace(
        trigger_interval="2 seconds", max_files_per_trigger=runner.HEAD_START_FILES
    )
    first = silver_frame(600, START, 600, seed=81)
    append_silver(config, first)
    extra = [silver_frame(300, START + pd.Timedelta(minutes=10 + 5 * k), 300, seed=82 + k) for k in range(3)]
    with running_stream(spark, config, caplog) as stream:
        # The first start reads the snapshot in a run of its own; a row of version 1 read means
        # the main run's queries are running (a change before that is the next test's case).
        run_stream_until(stream, lambda: read_all(caplog, len(first)), "the first rows")
        append_silver(config, extra[0])
        run_stream_until(stream, lambda: read_through(config, 1), "Silver_ML version 1 read")
        add_squawk(config, extra[1:])
        rows = pd.concat([first, *extra], ignore_index=True)
        run_stream_until(stream, lambda: drained(caplog, rows), "the final watermarks")
    assert "Silver_ML's schema changed at version 2: restarting the queries" in caplog.messages
    expected = expected_gold(rows)
    assert_gold_is(config, expected)


def test_a_column_added_before_the_query_reads_it_restarts_it_too(spark, tmp_path, caplog, monkeypatch):
    """The column lands after the query's DataFrame was analysed and before its source started
    (seen at the switch from the first-start run to the main run): Spark's "Invalid batch"
    assertion, not Delta's error. Made certain here by adding it right after the analysis; one
    query, so that no other query's source starts in between."""
    import flight_gold.spark.queries as queries

    table = "flight_phase_counts"
    config = lakehouse_config(tmp_path / "lakehouse").replace(trigger="available-now", queries=(table,))
    first = silver_frame(600, START, 600, seed=71)
    append_silver(config, first)
    assert run_in_process(spark, config) == 0
    extra = [silver_frame(300, START + pd.Timedelta(minutes=10 + 5 * k), 300, seed=72 + k) for k in range(2)]
    analyse = queries.silver_stream

    def analysed_then_changed(spark, config):
        frame = analyse(spark, config)
        if "squawk" not in extra[0]:
            add_squawk(config, extra)
        return frame

    monkeypatch.setattr(queries, "silver_stream", analysed_then_changed)
    caplog.set_level(logging.INFO)
    assert run_in_process(spark, config) == 0
    assert "Silver_ML's schema changed at version (unknown): restarting the queries" in caplog.messages
    expected = expected_gold(pd.concat([first, *extra], ignore_index=True))
    assert_gold_is(config, expected, nonempty=True, tables=(table,))


def test_a_delete_on_silver_is_skipped_and_later_rows_still_arrive(spark, tmp_path, caplog):
    config = lakehouse_config(tmp_path / "lakehouse").replace(trigger_interval="2 seconds")
    first = silver_frame(900, START, 900, seed=91)
    append_silver(config, first)
    with running_stream(spark, config, caplog) as stream:
        run_stream_until(
            stream,
            lambda: read_all(caplog, len(first)) and read_all(caplog, len(first), "anomaly_alerts"),
            "the first rows",
        )
        # A purge upstream: Spain's rows go, in windows already written and in open ones.
        DeltaTable(config.paths.silver_flights_ml).delete("origin_country = 'Spain'")
        later = [
            silver_frame(300, START + pd.Timedelta(minutes=15 + 5 * k), 300, seed=92 + k) for k in range(2)
        ]
        for frame in later:
            append_silver(config, frame)
        rows = pd.concat([first, *later], ignore_index=True)
        run_stream_until(stream, lambda: drained(caplog, rows), "the final watermarks")
    # What the stream read: every row of the first commit (read before the purge, so still
    # counted) and every later append; the DELETE commit's rewritten files are not read again.
    expected = expected_gold(rows)
    assert_gold_is(config, expected)
    skipped = [
        m for m in caplog.messages if m.startswith("Silver_ML version 1 (DELETE) removes or rewrites rows")
    ]
    assert len(skipped) == 1, [m for m in caplog.messages if "Silver_ML version" in m]
