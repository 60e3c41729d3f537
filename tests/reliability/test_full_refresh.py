"""A deleted checkpoint must not duplicate Gold; --full-refresh rebuilds it; settings baked into a
stream's state cannot change under an existing checkpoint.

The job runs in this process's Spark session (run_in_process) except for the kill -9 test, which
kills the real job during a refresh."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from flight_gold.core.config import AnomalyThresholds
from support import expected as independent
from support.expected import assert_gold_equal, expected_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    assert_gold_is,
    error_lines,
    gold,
    job_command,
    kill9,
    lakehouse_config,
    run_in_process,
    run_job,
    silver_frame,
    tree,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


def state(config) -> dict:
    """Every file of the Gold tables and the checkpoints but the lock files' holder records."""
    root = Path(config.lakehouse_root)
    files = {**tree(root / "gold"), **{f"cp/{k}": v for k, v in tree(root / "_checkpoints").items()}}
    return {k: v for k, v in files.items() if not k.endswith("_gold_job.lock")}


def refused(capsys) -> list[str]:
    return error_lines(capsys.readouterr().err)


def table_id(path: str) -> str:
    first = (Path(path) / "_delta_log" / f"{0:020d}.json").read_text().splitlines()
    return next(json.loads(line)["metaData"]["id"] for line in first if "metaData" in line)


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """A lakehouse after one available-now run over 15 minutes of Silver_ML."""
    config = lakehouse_config(tmp_path_factory.mktemp("refresh") / "lakehouse").replace(
        trigger="available-now"
    )
    rows = silver_frame(1500, START, 900, seed=61)
    append_silver(config, rows)
    assert run_in_process(spark, config) == 0
    return config, rows


@pytest.fixture
def lake(built, tmp_path):
    config, rows = built
    root = tmp_path / "lakehouse"
    shutil.copytree(config.lakehouse_root, root)
    return config.replace(lakehouse_root=str(root)), rows


def test_a_deleted_checkpoint_is_refused_and_a_full_refresh_rebuilds_gold(spark, lake, capsys):
    config, rows = lake
    ids = {t: table_id(config.paths.gold_table(t)) for t in TABLES}
    for table in TABLES:
        shutil.rmtree(config.paths.checkpoint(table))
    before = state(config)

    assert run_in_process(spark, config) == 2
    errors = refused(capsys)
    assert len(errors) == 1, errors
    counts = {t: len(gold(config)[t]) for t in TABLES}
    assert errors[0] == (
        f"streaming_gold: error: Gold table flight_phase_counts at {config.paths.flight_phase_counts} "
        f"already holds {counts['flight_phase_counts']} rows but its checkpoint "
        f"{config.paths.checkpoint('flight_phase_counts')} has no batch (deleted, moved, or never made): "
        f"starting would append every window of Silver_ML a second time. Nothing was written. Put "
        f"the checkpoint back to resume, or run with --full-refresh to rebuild flight_phase_counts "
        f"from all of Silver_ML"
    )
    assert state(config) == before

    assert_full_refresh_rebuilds(spark, config, rows)
    for table in TABLES:
        # Same table (readers keep it), its rows deleted by one commit, then written again.
        assert table_id(config.paths.gold_table(table)) == ids[table]
        operations = [c["operation"] for c in DeltaTable(config.paths.gold_table(table)).history()]
        assert operations.count("DELETE") == 1

    # And on from there as usual.
    more = silver_frame(600, START + pd.Timedelta(minutes=15), 600, seed=62)
    append_silver(config, more)
    assert run_in_process(spark, config) == 0
    expected = expected_gold(pd.concat([rows, more], ignore_index=True))
    assert_gold_is(config, expected)


def assert_full_refresh_rebuilds(spark, config, rows: pd.DataFrame) -> None:
    """A --full-refresh run ends with Gold equal to the independent computation over `rows` and
    no refresh marker left."""
    assert run_in_process(spark, config.replace(full_refresh=True)) == 0
    expected = expected_gold(rows)
    assert_gold_is(config, expected)
    for table in TABLES:
        assert not Path(config.paths.refresh_marker(table)).exists()


def _marker(spark, config) -> None:
    for table in TABLES:
        Path(config.paths.refresh_marker(table)).write_text(json.dumps({"table": table}) + "\n")


def _checkpoint_cleared(spark, config) -> None:
    _marker(spark, config)
    for table in TABLES:
        for child in Path(config.paths.checkpoint(table)).iterdir():
            if child.name != "_gold_job.lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()


def _rows_deleted(spark, config) -> None:
    from delta.tables import DeltaTable as SparkDeltaTable

    _checkpoint_cleared(spark, config)
    for table in TABLES:
        SparkDeltaTable.forPath(spark, config.paths.gold_table(table)).delete()


@pytest.mark.parametrize(
    "stopped_after",
    [_marker, _checkpoint_cleared, _rows_deleted],
    ids=["marker written", "checkpoint deleted", "rows deleted"],
)
def test_an_unfinished_refresh_refuses_a_plain_start_and_a_new_refresh_completes(
    spark, lake, capsys, stopped_after
):
    config, rows = lake
    stopped_after(spark, config)
    before = state(config)

    assert run_in_process(spark, config) == 2
    assert refused(capsys) == [
        f"streaming_gold: error: a full refresh of flight_phase_counts was started and not finished: "
        f"run with --full-refresh again (its marker {config.paths.refresh_marker('flight_phase_counts')} "
        f"says so)"
    ]
    assert state(config) == before

    assert_full_refresh_rebuilds(spark, config, rows)


def test_a_kill_9_during_a_full_refresh_then_a_full_refresh_again(built, tmp_path):
    config, rows = built
    root = tmp_path / "lakehouse"
    shutil.copytree(config.lakehouse_root, root)
    config = config.replace(lakehouse_root=str(root))
    markers = [Path(config.paths.refresh_marker(t)) for t in TABLES]
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            job_command(config, "--trigger", "available-now", "--full-refresh"),
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while not any(m.exists() for m in markers):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the refresh never started"
            time.sleep(0.005)
    finally:
        kill9(proc)
    # The kill landed inside the refresh: its marker is still there.
    assert any(m.exists() for m in markers), log.read_text()[-3000:]

    plain = run_job(config)
    assert plain.returncode == 2, plain.stderr[-3000:]
    assert "was started and not finished: run with --full-refresh again" in error_lines(plain.stderr)[0]

    again = run_job(config, "--full-refresh")
    assert again.returncode == 0, again.stderr[-3000:]
    expected = expected_gold(rows)
    assert_gold_is(config, expected)
    assert not any(m.exists() for m in markers)


def test_changed_thresholds_or_partitions_are_refused_until_a_full_refresh(
    spark, lake, capsys, caplog, monkeypatch
):
    config, rows = lake
    before = state(config)
    stricter = config.replace(thresholds=AnomalyThresholds(altitude_max_m=11000.0))

    assert run_in_process(spark, stricter) == 2
    assert refused(capsys) == [
        f"streaming_gold: error: ANOMALY_ALTITUDE_MAX_M of anomaly_alerts is 11000.0 but its checkpoint "
        f"{config.paths.checkpoint('anomaly_alerts')} was started with 12000.0: the stream's open "
        f"windows were computed with the old value, and mixing both would be silently wrong. Nothing "
        f"was written. Start with ANOMALY_ALTITUDE_MAX_M 12000.0 again, or run with --full-refresh "
        f"to rebuild anomaly_alerts from all of Silver_ML with 11000.0"
    ]
    assert run_in_process(spark, config.replace(shuffle_partitions=2)) == 2
    errors = refused(capsys)
    assert len(errors) == 1 and errors[0].startswith(
        "streaming_gold: error: GOLD_SHUFFLE_PARTITIONS of flight_phase_counts is 2 but its checkpoint "
    )
    assert state(config) == before
    # The phase counts do not depend on the thresholds: that stream alone starts.
    assert run_in_process(spark, stricter.replace(queries=("flight_phase_counts",))) == 0

    # A checkpoint from before settings were recorded: this start's are recorded, with a warning;
    # the partition count Spark recorded in its offsets is still checked.
    settings = Path(config.paths.checkpoint("anomaly_alerts")) / "_gold_settings.json"
    recorded = json.loads(settings.read_text())
    settings.unlink()
    assert run_in_process(spark, config.replace(shuffle_partitions=3, queries=("anomaly_alerts",))) == 2
    assert "GOLD_SHUFFLE_PARTITIONS of anomaly_alerts is 3" in refused(capsys)[0]
    caplog.set_level(logging.WARNING)
    assert run_in_process(spark, config.replace(queries=("anomaly_alerts",))) == 0
    assert any("has no record of the settings it was started with" in m for m in caplog.messages)
    assert json.loads(settings.read_text()) == recorded

    # New thresholds reach history through a full refresh.
    assert run_in_process(spark, stricter.replace(full_refresh=True)) == 0
    monkeypatch.setattr(independent, "ALTITUDE_MAX", 11000.0)
    expected = expected_gold(rows)
    actual = gold(config)
    assert_gold_equal(actual["anomaly_alerts"], expected["anomaly_alerts"], "anomaly_alerts")
    assert json.loads(settings.read_text())["ANOMALY_ALTITUDE_MAX_M"] == 11000.0
