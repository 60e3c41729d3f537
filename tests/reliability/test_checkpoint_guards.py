"""The job refuses to start when running would corrupt a checkpoint: a second instance on the same
checkpoint, or a checkpoint written for another Silver_ML table than the one now at the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from flight_gold.spark.guards import CheckpointInUseError, CheckpointLock
from support.expected import expected_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    assert_gold_is,
    error_lines,
    lakehouse_config,
    progress,
    run_job,
    silver_frame,
    start_job,
    stop,
    tree,
    wait_for,
)
from support.streams import DELAYS


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
    assert_gold_is(config, expected)


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


def hold_lock(checkpoint: str, role: str, seconds: float) -> subprocess.Popen:
    """A process that holds the checkpoint lock as `role` for `seconds`, then exits."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from flight_gold.spark.guards import CheckpointLock
        CheckpointLock({checkpoint!r}, local=True, role={role!r}).acquire()
        print("locked", flush=True)
        time.sleep({seconds})
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_starting_stream_waits_for_a_maintenance_holder_and_refuses_a_stream_holder(tmp_path):
    import json
    import time

    from flight_gold.spark.guards import CheckpointBusyError, lock_checkpoints

    config = lakehouse_config(tmp_path / "lakehouse").replace(queries=("anomaly_alerts",))
    checkpoint = config.paths.checkpoint("anomaly_alerts")

    holder = hold_lock(checkpoint, "maintenance", 3)
    try:
        began = time.monotonic()
        locks = lock_checkpoints(config, wait_s=120, poll_s=0.2)
        waited = time.monotonic() - began
        assert holder.wait(timeout=60) == 0  # it let go by itself: the stream waited for it
        assert waited > 0.5, waited
        record = json.loads(Path(checkpoint, "_gold_job.lock").read_text())
        assert record["role"] == "stream" and record["pid"] == os.getpid()
        for lock in locks:
            lock.release()
    finally:
        holder.kill()
        holder.wait()

    holder = hold_lock(checkpoint, "maintenance", 600)
    try:
        with pytest.raises(CheckpointBusyError, match="still held by a maintenance job"):
            lock_checkpoints(config, wait_s=1, poll_s=0.2)
    finally:
        holder.kill()
        holder.wait()

    holder = hold_lock(checkpoint, "stream", 600)
    try:
        with pytest.raises(CheckpointInUseError, match="in use by another running Gold job") as caught:
            lock_checkpoints(config, wait_s=120, poll_s=0.2)
        assert caught.value.role == "stream"
    finally:
        holder.kill()
        holder.wait()


def test_maintenance_optimizes_only_with_the_lock_and_never_on_s3(tmp_path):
    import json

    from flight_gold.spark.maintenance import claim_for_optimize

    config = lakehouse_config(tmp_path / "lakehouse")
    checkpoint = config.paths.checkpoint("flight_phase_counts")
    holder = hold_lock(checkpoint, "stream", 600)
    try:
        lock, reason = claim_for_optimize(config, "flight_phase_counts")
        assert lock is None
        assert reason == "the running Gold stream compacts this table itself every 1 hour"
    finally:
        holder.kill()
        holder.wait()
    lock, reason = claim_for_optimize(config, "flight_phase_counts")
    assert reason is None
    assert json.loads(Path(checkpoint, "_gold_job.lock").read_text())["role"] == "maintenance"
    # While maintenance holds it, a second maintenance job skips too.
    assert claim_for_optimize(config, "flight_phase_counts") == (
        None,
        "another maintenance job is compacting flight_phase_counts now",
    )
    lock.release()

    on_s3 = config.replace(lakehouse_root="s3a://bucket/lake", compact_interval="15 minutes")
    lock, reason = claim_for_optimize(on_s3, "anomaly_alerts")
    assert lock is None
    assert reason.startswith("on object storage the Gold stream is the only writer of anomaly_alerts's log")
    assert reason.endswith("compacts this table itself every 15 minutes")
