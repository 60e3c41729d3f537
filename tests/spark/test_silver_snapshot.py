"""The follower that keeps Delta's cached snapshot of Silver_ML current between triggers
(flight_gold.spark.silver_snapshot): how it finds the newest commit without listing the log, that
it brings the DeltaLog the streams' source shares up to each new commit of a table written by
delta-rs (no checksum files), and that a failing load is logged, not fatal."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from py4j.protocol import Py4JError

from flight_gold.spark import silver_snapshot
from flight_gold.spark.files import LocalFiles
from flight_gold.spark.runner import silver_snapshot_follower
from flight_gold.spark.silver_snapshot import (
    LEAD_S,
    SilverSnapshotFollower,
    newest_version,
    seconds_to_next_trigger,
)
from support.stream_data import feed


def commits(table: Path, versions, checkpoint: int | None = None) -> str:
    log = table / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    for v in versions:
        (log / f"{v:020d}.json").write_text('{"commitInfo":{}}\n')
    if checkpoint is not None:
        (log / "_last_checkpoint").write_text(json.dumps({"version": checkpoint, "size": 3}))
    return str(table)


def test_the_newest_version_is_found_from_the_last_checkpoint_or_from_the_start(tmp_path):
    files = LocalFiles()
    assert newest_version(files, str(tmp_path / "missing")) is None
    assert newest_version(files, commits(tmp_path / "a", range(0, 4))) == 3
    # From the checkpoint on: the commits before it are not probed (here: cleaned up).
    assert newest_version(files, commits(tmp_path / "b", range(20, 26), checkpoint=20)) == 25
    # The checkpoint's own commit cleaned up, its successor there.
    assert newest_version(files, commits(tmp_path / "c", range(21, 23), checkpoint=20)) == 22
    # From a version already seen, forward only.
    assert newest_version(files, str(tmp_path / "a"), since=1) == 3
    assert newest_version(files, str(tmp_path / "a"), since=3) == 3
    # An unreadable _last_checkpoint counts as none.
    table = commits(tmp_path / "d", range(0, 2))
    (tmp_path / "d" / "_delta_log" / "_last_checkpoint").write_text("{not json")
    assert newest_version(files, table) == 1


def cached_version(spark, path: str) -> int:
    """The version of the snapshot Delta holds for the path: the DeltaLog that Delta caches per
    path and that the streams' DeltaSource reads through. Internal API, read here only: this test
    fails if an upgrade of delta-spark renames it, and then the follower must be checked again
    (bench/run.py --quick --only realtime-job: latestOffset of each batch)."""
    delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    return int(delta_log.unsafeVolatileSnapshot().version())


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_follower_brings_deltas_cached_snapshot_to_each_new_silver_commit(spark, lakehouse):
    path = lakehouse.paths.silver_flights_ml
    feed(lakehouse, 0, 1)
    spark.read.format("delta").load(path)
    assert cached_version(spark, path) == 0
    with SilverSnapshotFollower(spark, LocalFiles(), path, every_s=0.05) as follower:
        # The follower cannot know what Delta holds: it loads the version it finds first. Waited
        # for here, as the next commit written during its first look would make that one load
        # version 1 instead (one load fewer: the count below depended on the machine's speed).
        wait_for(lambda: follower.loaded == 0)
        # Past the checkpoint delta-rs writes at the tenth commit (version 9).
        for version in range(1, 13):
            feed(lakehouse, version, 1)
            # Nothing else reads the table: only the follower moves Delta's snapshot.
            wait_for(lambda v=version: follower.loaded == v)
            assert cached_version(spark, path) == version
        assert (Path(path) / "_delta_log" / "00000000000000000009.checkpoint.parquet").exists()
        assert follower.loads == 13
        # Through Delta's internal update, not the fallback: this fails when an upgrade of
        # delta-spark changes it (see update_delta_log).
        assert follower.method == "update"


def test_without_deltas_internal_update_the_table_is_resolved_instead(spark, lakehouse, caplog, monkeypatch):
    path = lakehouse.paths.silver_flights_ml
    feed(lakehouse, 0, 1)
    spark.read.format("delta").load(path)

    def gone(spark, table):
        raise Py4JError(
            "An error occurred while calling o77.update. Trace:\npy4j.Py4JException: Method "
            "update([class java.lang.Boolean, class scala.None$, class scala.None$]) does not exist"
        )

    monkeypatch.setattr(silver_snapshot, "update_delta_log", gone)
    follower = SilverSnapshotFollower(spark, LocalFiles(), path, every_s=0.05)
    with caplog.at_level(logging.WARNING, logger="flight_gold.spark.silver_snapshot"), follower:
        for version in (1, 2):
            feed(lakehouse, version, 1)
            wait_for(lambda v=version: follower.loaded == v)
            assert cached_version(spark, path) == version
    assert follower.method == "read"
    assert [r.getMessage() for r in caplog.records] == [
        "Delta's DeltaLog.update is not callable as this job calls it (delta-spark upgraded?): "
        f"loading {path} as a table instead (a little more work per commit)"
    ]


def test_a_failing_load_is_logged_once_and_the_follower_goes_on(spark, lakehouse, caplog, monkeypatch):
    path = lakehouse.paths.silver_flights_ml
    feed(lakehouse, 0, 1)
    follower = SilverSnapshotFollower(spark, LocalFiles(), path, every_s=0.05)
    real_load, failures = follower.load, []

    def load():
        if len(failures) < 3:
            failures.append(1)
            raise RuntimeError("storage unreachable\nstack trace")
        real_load()

    follower.load = load
    monkeypatch.setattr(silver_snapshot, "RETRY_AFTER_S", 0.05)
    with caplog.at_level(logging.INFO, logger="flight_gold.spark.silver_snapshot"), follower:
        wait_for(lambda: follower.loaded == 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"Silver_ML snapshot follower: could not load {path} (storage unreachable); the streams "
        "load it themselves meanwhile"
    ]
    assert any("loading" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert len(failures) == 3 and follower.loads == 1


def test_only_real_time_runs_after_the_head_start_follow_silver(spark, lakehouse):
    # Built, not entered: the follower's thread starts on entry.
    real_time = lakehouse.replace(trigger="processing-time")
    assert isinstance(silver_snapshot_follower(spark, real_time), SilverSnapshotFollower)
    assert not isinstance(
        silver_snapshot_follower(spark, real_time, until=lambda q: True), SilverSnapshotFollower
    )
    for trigger in ("available-now", "available-now-loop"):
        assert not isinstance(
            silver_snapshot_follower(spark, lakehouse.replace(trigger=trigger)), SilverSnapshotFollower
        )


def test_no_load_starts_while_a_batch_runs(spark, lakehouse):
    path = lakehouse.paths.silver_flights_ml
    feed(lakehouse, 0, 1)
    batch_running = True
    follower = SilverSnapshotFollower(spark, LocalFiles(), path, every_s=0.05, busy=lambda: batch_running)
    with follower:
        time.sleep(1.0)
        assert follower.loads == 0
        batch_running = False
        wait_for(lambda: follower.loaded == 0)
    assert follower.loads == 1


def test_the_next_trigger_is_at_the_next_multiple_of_the_interval():
    assert seconds_to_next_trigger(10.0, 1_000_000_003.25) == 6.75
    assert seconds_to_next_trigger(10.0, 1_000_000_000.0) == 10.0
    assert seconds_to_next_trigger(0.5, 1_000_000_000.1) == 0.4


def test_loads_happen_only_in_the_lead_before_a_trigger(spark, lakehouse):
    path = lakehouse.paths.silver_flights_ml
    feed(lakehouse, 0, 1)
    now = [1_000_000_000.0]  # a trigger just fired: the next one is 10 s away
    follower = SilverSnapshotFollower(
        spark, LocalFiles(), path, every_s=0.05, trigger_every_s=10.0, clock=lambda: now[0]
    )
    assert follower.lead_s == LEAD_S
    with follower:
        now[0] += 10.0 - LEAD_S - 0.5
        time.sleep(1.0)
        assert follower.loads == 0
        now[0] += 1.0
        wait_for(lambda: follower.loaded == 0)
    assert follower.loads == 1
    # A short interval: the lead is half of it.
    assert SilverSnapshotFollower(spark, LocalFiles(), path, trigger_every_s=2.0).lead_s == 1.0
