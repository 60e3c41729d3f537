"""The job refuses to start when running would corrupt a checkpoint: a second instance on the same
checkpoint, or a checkpoint written for another Silver_ML table than the one now at the path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from flight_gold.spark.guards import CheckpointInUseError, CheckpointLock
from support.expected import assert_gold_equal, expected_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    error_lines,
    gold,
    lakehouse_config,
    progress,
    run_job,
    silver_frame,
    start_job,
    stop,
    tree,
    wait_for,
)

DELAYS = {"flight_phase_counts": pd.Timedelta(minutes=2), "anomaly_alerts": pd.Timedelta(minutes=6)}


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_a_second_instance_refuses_to_start_and_the_first_is_not_harmed(tmp_path):
    config = lakehouse_config(tmp_path / "lakehouse")
    first_rows = silver_frame(600, START, 600, seed=31)
    append_silver(config, first_rows)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_job(config, first_log)
    try:
        wait_for(
            lambda: (
                {line["query"] for line in progress(first_log.read_text())} == set(TABLES)
                or first.poll() is not None
            ),
            900,
            what="the first instance's first batches",
        )
        assert first.poll() is None, first_log.read_text()[-4000:]

        second = start_job(config, second_log)
        try:
            code = second.wait(timeout=900)
        finally:
            if second.poll() is None:
                stop(second)
        stderr = second_log.read_text()
        assert code == 3, stderr[-4000:]
        errors = error_lines(stderr)
        assert len(errors) == 1, stderr[-4000:]
        assert "is in use by another running Gold job" in errors[0] and f"pid {first.pid} " in errors[0], (
            errors
        )
        assert config.paths.checkpoint(TABLES[0]) in errors[0]
        assert first.poll() is None, first_log.read_text()[-4000:]

        # The first instance goes on: more data, every window written once.
        second_rows = silver_frame(600, START + pd.Timedelta(minutes=10), 600, seed=32)
        append_silver(config, second_rows)
        rows = pd.concat([first_rows, second_rows], ignore_index=True)
        newest = rows["event_timestamp"].max()
        wait_for(
            lambda: (
                all(
                    any(
                        line["query"] == t
                        and pd.Timestamp(line["watermark"]) >= (newest - DELAYS[t]).floor("ms")
                        for line in progress(first_log.read_text())
                    )
                    for t in TABLES
                )
                or first.poll() is not None
            ),
            900,
            what="the first instance's final watermarks",
        )
        assert first.poll() is None, first_log.read_text()[-4000:]
    finally:
        code = stop(first)
    assert code == 0, first_log.read_text()[-4000:]
    expected = expected_gold(rows)
    for table, actual in gold(config).items():
        assert_gold_equal(actual, expected[table], table)


def test_the_lock_is_exclusive_names_its_holder_and_dies_with_it(tmp_path):
    checkpoint = str(tmp_path / "checkpoint")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from flight_gold.spark.guards import CheckpointLock
        CheckpointLock({checkpoint!r}, local=True).acquire()
        print("locked", flush=True)
        time.sleep(600)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointInUseError, match=f"pid {holder.pid} on "):
            CheckpointLock(checkpoint, local=True).acquire()
    finally:
        holder.kill()  # SIGKILL: no chance to release anything
        holder.wait()
    lock = CheckpointLock(checkpoint, local=True)
    lock.acquire()
    lock.release()


@pytest.mark.e2e
def test_a_replaced_silver_table_is_a_clear_error_and_nothing_is_written(tmp_path):
    config = lakehouse_config(tmp_path / "lakehouse")
    append_silver(config, silver_frame(300, START, 300, seed=33))
    run = run_job(config)
    assert run.returncode == 0, run.stderr[-4000:]
    root = Path(config.lakehouse_root)
    before = {"gold": tree(root / "gold"), "checkpoints": tree(root / "_checkpoints")}

    shutil.rmtree(config.paths.silver_flights_ml)
    append_silver(config, silver_frame(300, START + pd.Timedelta(minutes=30), 300, seed=34))
    run = run_job(config)
    assert run.returncode == 2, run.stderr[-4000:]
    errors = error_lines(run.stderr)
    assert len(errors) == 1, run.stderr[-4000:]
    message = errors[0]
    assert message.startswith("streaming_gold: error: checkpoint ")
    assert "belongs to another Silver_ML table" in message and "move aside" in message
    assert config.paths.checkpoint(TABLES[0]) in message and config.paths.silver_flights_ml in message
    after = {"gold": tree(root / "gold"), "checkpoints": tree(root / "_checkpoints")}
    # Only the lock file's holder record may change: nothing of Gold or of the stream state.
    for kind in before:

        def strip(t):
            return {k: v for k, v in t.items() if not k.endswith("_gold_job.lock")}

        assert strip(after[kind]) == strip(before[kind]), kind
