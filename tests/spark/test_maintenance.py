"""OPTIMIZE and VACUUM of real Gold tables (built by in-process available-now runs of the Gold
streams), checked against what delta-rs and the file system independently say: active files and
bytes, versions, which files are on disk, rows before and after, time travel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import GOLD_TABLE_NAMES as GOLD_TABLES
from flight_gold.core.errors import EXIT_ALL_MISSING
from flight_gold.core.intervals import delta_interval_hours
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.spark import maintenance as m
from support.expected import assert_gold_equal, expected_gold

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
ROWS_PER_RUN, RUNS = 1200, 3
JOB = Path(__file__).resolve().parents[2] / "jobs" / "maintenance.py"
HOUR = 3600


def silver_rows(run: int) -> pd.DataFrame:
    # One synthetic run cut in RUNS chunks: 4 minutes of event time each, in order.
    return generate(
        ROWS_PER_RUN,
        start=START,
        rate_per_s=5,
        aircraft=20,
        anomaly_share=0.05,
        seed=3,
        first_row=run * ROWS_PER_RUN,
    )


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """A lakehouse whose Gold tables were written by RUNS available-now runs (small files)."""
    from flight_gold.spark.queries import start_queries

    root = tmp_path_factory.mktemp("maintenance") / "lakehouse"
    config = GoldConfig.from_env(
        {}, lakehouse_root=str(root), spark_master="local[2]", trigger="available-now"
    )
    parts = []
    for run in range(RUNS):
        parts.append(silver_rows(run))
        append_silver(parts[-1], config)
        for query in start_queries(spark, config):
            query.awaitTermination()
            assert query.exception() is None
    return config, pd.concat(parts, ignore_index=True)


@pytest.fixture
def lake(built, tmp_path):
    """A private copy of the built lakehouse (Delta logs hold relative paths; mtimes are kept)."""
    config, silver = built
    root = tmp_path / "lakehouse"
    shutil.copytree(config.lakehouse_root, root)
    return config.replace(lakehouse_root=str(root)), silver


# -- independent views of a table ---------------------------------------------------------------


def active(path: str) -> dict[str, int]:
    """delta-rs's view of the latest snapshot: file name -> size."""
    actions = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pydict()
    return dict(zip(actions["path"], actions["size_bytes"]))


def on_disk(path: str) -> set[str]:
    """Every file of the table folder outside _delta_log, relative to it."""
    root = Path(path)
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "_delta_log" not in p.relative_to(root).parts
    }


def rows(path: str, version: int | None = None) -> pd.DataFrame:
    df = DeltaTable(path, version=version).to_pandas()
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def tree(path: str) -> dict[str, bytes]:
    """Every file under `path` with its content, but the checkpoint lock files: OPTIMIZE takes
    the table's checkpoint lock (creating its file), which changes nothing of the stream's state."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in Path(path).rglob("*")
        if p.is_file() and p.name != "_gold_job.lock"
    }


def commits(path: str) -> list[dict]:
    """delta-rs's history, oldest first."""
    return sorted(DeltaTable(path).history(), key=lambda c: c["version"])


def stray(path: str, name: str, age_hours: float) -> str:
    """A data file no commit knows (as a failed write leaves), `age_hours` old."""
    target = Path(path) / name
    source = next(Path(path).glob("part-*.parquet"))
    shutil.copyfile(source, target)
    then = time.time() - age_hours * HOUR
    os.utime(target, (then, then))
    return name


def run(spark, config, **request):
    return {r["table"]: r for r in m.run_maintenance(spark, config, m.MaintenanceRequest(**request))}


# -- OPTIMIZE + VACUUM on Spark-written Gold tables ---------------------------------------------


def test_optimize_then_default_vacuum_compacts_keeps_rows_and_time_travel(spark, lake):
    config, silver = lake
    paths = {t: config.paths.gold_table(t) for t in GOLD_TABLES}
    before = {t: (DeltaTable(p).version(), active(p), rows(p), on_disk(p)) for t, p in paths.items()}
    for table, (_, files, _, _) in before.items():
        # At most one file per run and shuffle partition (one partition by default): OPTIMIZE has
        # at least two to compact into one.
        assert len(files) >= 2, f"{table}: the available-now runs should leave several small files"
    checkpoints = tree(str(Path(config.lakehouse_root) / "_checkpoints"))

    report = run(spark, config)

    for table, path in paths.items():
        version, files, data, disk = before[table]
        row = report[table]
        after = active(path)
        assert row["status"] == "ok" and row["reason"] is None, row
        assert (row["version_before"], row["files_before"], row["bytes_before"]) == (
            version,
            len(files),
            sum(files.values()),
        )
        assert (row["optimize_files_removed"], row["optimize_files_added"]) == (len(files), 1)
        assert len(after) == 1
        assert (row["version_after"], row["files_after"], row["bytes_after"]) == (
            DeltaTable(path).version(),
            1,
            sum(after.values()),
        )
        # OPTIMIZE only: VACUUM writes nothing to the log (no VACUUM START/END commits), so it
        # is never a second writer beside the stream. (The retention it applies is checked by
        # test_vacuum_applies_the_retention_asked_and_keeps_younger_files.)
        assert [c["operation"] for c in commits(path)[version + 1 :]] == ["OPTIMIZE"]
        assert row["vacuum_files_removed"] == 0
        assert on_disk(path) == disk | set(after)
        # Same rows, exactly; still what the independent computation says; time travel works.
        pd.testing.assert_frame_equal(rows(path), data, check_exact=True)
        assert_gold_equal(rows(path), expected_gold(silver)[table], table)
        pd.testing.assert_frame_equal(rows(path, version), data, check_exact=True)
        by_spark = spark.read.format("delta").option("versionAsOf", version).load(path).toPandas()
        pd.testing.assert_frame_equal(
            by_spark.sort_values(list(data.columns)).reset_index(drop=True),
            data,
            check_exact=True,
            check_dtype=False,
        )
    assert tree(str(Path(config.lakehouse_root) / "_checkpoints")) == checkpoints


def test_zero_retention_override_removes_exactly_the_unreferenced_files(spark, lake):
    config, _ = lake
    path = config.paths.flight_phase_counts
    data = rows(path)
    run(spark, config, tables=("flight_phase_counts",), mode="optimize")
    orphan = stray(path, "part-99999-failed-write.snappy.parquet", age_hours=0)
    referenced, disk = set(active(path)), on_disk(path)
    unreferenced = disk - referenced
    # The orphan and the small files OPTIMIZE replaced (at least two, see the first test).
    assert orphan in unreferenced and len(unreferenced) >= 3
    log_before = set(os.listdir(Path(path) / "_delta_log"))
    checkpoints = tree(str(Path(config.lakehouse_root) / "_checkpoints"))

    row = run(
        spark,
        config,
        tables=("flight_phase_counts",),
        mode="vacuum",
        retention_hours=0,
        allow_unsafe_retention=True,
    )["flight_phase_counts"]

    assert row["status"] == "ok", row
    assert row["vacuum_files_removed"] == len(unreferenced)
    assert on_disk(path) == referenced
    assert (row["files_before"], row["files_after"]) == (1, 1)
    pd.testing.assert_frame_equal(rows(path), data, check_exact=True)
    assert log_before <= set(os.listdir(Path(path) / "_delta_log"))
    assert tree(str(Path(config.lakehouse_root) / "_checkpoints")) == checkpoints
    # The override lasted that one call: the session's safety check is back on.
    assert spark.conf.get(m.RETENTION_CHECK_CONF) == "true"
    assert spark.conf.get(m.RETENTION_WINDOW_IGNORE_CONF, None) is None
    with pytest.raises(m.RetentionTooShortError):
        run(spark, config, tables=("flight_phase_counts",), mode="vacuum", retention_hours=0)


def test_vacuum_applies_the_retention_asked_and_keeps_younger_files(spark, lake):
    config, _ = lake
    path = config.paths.anomaly_alerts
    referenced = set(active(path))
    old = stray(path, "part-99990-old.snappy.parquet", age_hours=8 * 24)
    almost = stray(path, "part-99991-almost-a-week.snappy.parquet", age_hours=7 * 24 - 1)
    fresh = stray(path, "part-99992-fresh.snappy.parquet", age_hours=0)
    disk = on_disk(path)

    # Ten days: Delta 4.4 would otherwise use the table's 7 days and delete the 8-day-old file.
    row = run(spark, config, tables=("anomaly_alerts",), mode="vacuum", retention_hours=240)["anomaly_alerts"]
    assert (row["status"], row["vacuum_files_removed"]) == ("ok", 0), row
    assert on_disk(path) == disk

    row = run(spark, config, tables=("anomaly_alerts",), mode="vacuum")["anomaly_alerts"]
    assert (row["status"], row["vacuum_files_removed"], row["retention_hours"]) == ("ok", 1, 168), row
    assert on_disk(path) == disk - {old}
    assert {almost, fresh} | referenced <= on_disk(path)


def test_retention_below_the_table_minimum_is_refused_before_anything_changes(spark, lake):
    config, _ = lake
    before = {
        t: (DeltaTable(config.paths.gold_table(t)).version(), on_disk(config.paths.gold_table(t)))
        for t in GOLD_TABLES
    }
    with pytest.raises(m.RetentionTooShortError, match=r"24 h is below the 168 h that flight_phase_counts"):
        run(spark, config, retention_hours=24)
    assert before == {
        t: (DeltaTable(config.paths.gold_table(t)).version(), on_disk(config.paths.gold_table(t)))
        for t in GOLD_TABLES
    }


def test_a_missing_table_is_skipped_with_its_reason(spark, lake, tmp_path):
    config, _ = lake
    shutil.rmtree(config.paths.anomaly_alerts)
    report = m.run_maintenance(spark, config, m.MaintenanceRequest(mode="optimize"))
    assert [(r["table"], r["status"]) for r in report] == [
        ("flight_phase_counts", "ok"),
        ("anomaly_alerts", "skipped"),
    ]
    assert config.paths.anomaly_alerts in report[1]["reason"]
    assert report[0]["files_after"] == 1
    assert m.exit_code(report) == 0
    assert m.summary(report) == {
        "summary": True,
        "tables": 2,
        "ok": 1,
        "skipped": 1,
        "failed": 0,
        "exit_code": 0,
    }

    empty = config.replace(lakehouse_root=str(tmp_path / "empty"))
    report = m.run_maintenance(spark, empty, m.MaintenanceRequest())
    assert [r["status"] for r in report] == ["skipped", "skipped"]
    assert m.exit_code(report) == EXIT_ALL_MISSING == 99


# -- no Spark -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, hours",
    [
        ("interval 1 week", 168),
        ("interval 7 days", 168),
        ("interval 168 hours", 168),
        ("interval 2 days 12 hours", 60),
        ("INTERVAL 30 minutes", 0.5),
        ("3 days", 72),
        (None, None),
        ("", None),
        ("interval 1 month", None),
        ("a week", None),
    ],
)
def test_interval_hours(value, hours):
    assert delta_interval_hours(value) == hours


def test_minimum_retention_comes_from_the_table_property():
    assert m.minimum_retention_hours({}) == 168
    assert m.minimum_retention_hours({m.RETENTION_PROPERTY: "interval 1 day"}) == 24
    assert m.check_retention("t", 24, {m.RETENTION_PROPERTY: "interval 1 day"}, False) is False
    assert m.check_retention("t", 0, {}, True) is True
    with pytest.raises(m.RetentionTooShortError, match="167 h is below the 168 h that t keeps"):
        m.check_retention("t", 167, {}, False)


@pytest.mark.parametrize(
    "request_args, message",
    [
        ({"tables": ("flight_phase_counts", "nope")}, "tables must be among"),
        ({"tables": ()}, "tables must be among"),
        ({"tables": ("anomaly_alerts", "anomaly_alerts")}, "listed twice"),
        ({"mode": "compact"}, "mode must be one of"),
        ({"retention_hours": -1}, "whole number of hours >= 0"),
        ({"retention_hours": 1.5}, "whole number of hours >= 0"),
    ],
)
def test_bad_requests_are_refused(request_args, message):
    with pytest.raises(m.MaintenanceInputError, match=message):
        m.MaintenanceRequest(**request_args)


def test_format_row_is_one_line_per_table():
    row = dict.fromkeys(m.REPORT_KEYS) | dict(
        table="anomaly_alerts",
        status="ok",
        mode="both",
        version_before=7,
        version_after=10,
        files_before=12,
        bytes_before=40000,
        files_after=1,
        bytes_after=9000,
        optimize_files_removed=12,
        optimize_files_added=1,
        vacuum_files_removed=3,
        retention_hours=168,
    )
    assert m.format_row(row) == (
        "anomaly_alerts: ok, mode both, version 7 -> 10, active files 12 -> 1, bytes 40000 -> 9000, "
        "compacted 12 files into 1, VACUUM (168 h) removed 3 files"
    )
    skipped = dict.fromkeys(m.REPORT_KEYS) | dict(table="anomaly_alerts", status="skipped", reason="why")
    assert m.format_row(skipped) == "anomaly_alerts: skipped, why"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tables", "flight_phase_counts,bogus"], "tables must be among"),
        (["--retention-hours", "-5"], "whole number of hours >= 0"),
        (["--retention-hours", "a week"], "invalid int value"),
        (["--mode", "compact"], "invalid choice"),
    ],
)
def test_job_bad_input_is_exit_code_2_before_spark_starts(tmp_path, args, message):
    done = subprocess.run(
        [sys.executable, str(JOB), "--lakehouse-root", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.strip().splitlines()[-1]
    assert "SparkSession" not in done.stderr and not (tmp_path / "gold").exists()
