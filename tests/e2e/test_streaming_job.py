"""End to end: Silver_ML Delta table written by the feed -> jobs/streaming_gold.py as a real
process (spark-submit style, available-now and available-now-loop) -> Gold Delta tables, compared
with the independent DuckDB computation of tests/expected.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from deltalake.exceptions import TableNotFoundError

from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from support.expected import assert_gold_equal, expected_gold, read_delta
from support.jobs import assert_gold_is, progress, run_job

pytestmark = pytest.mark.e2e

JOB = Path(__file__).resolve().parents[2] / "jobs" / "streaming_gold.py"
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def gold(config) -> dict[str, pd.DataFrame]:
    return {t: read_delta(config.paths.gold_table(t)) for t in ("flight_phase_counts", "anomaly_alerts")}


def assert_matches(config, silver: pd.DataFrame) -> None:
    expected = expected_gold(silver)
    assert_gold_is(config, expected)


def test_available_now_runs_resume_and_equal_the_independent_computation(lakehouse):
    first = generate(6000, start=START, rate_per_s=10, aircraft=40, anomaly_share=0.08, seed=1)
    append_silver(first.iloc[:3000], lakehouse)
    append_silver(first.iloc[3000:], lakehouse)
    run = run_job(lakehouse)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_matches(lakehouse, first)
    lines = progress(run.stderr)
    assert {line["query"] for line in lines} == {"flight_phase_counts", "anomaly_alerts"}
    for line in lines:
        assert {
            "batch_id",
            "input_rows",
            "rows_per_second",
            "batch_duration_ms",
            "watermark",
            "late_rows_dropped",
            "state_rows",
        } <= set(line)
    assert sum(line["input_rows"] for line in lines if line["query"] == "anomaly_alerts") == 6000

    # More Silver data: the second run resumes from the checkpoints, no window twice, none missing.
    second = generate(
        6000,
        start=first["event_timestamp"].max().to_pydatetime(),
        rate_per_s=10,
        aircraft=40,
        anomaly_share=0.08,
        seed=2,
    )
    append_silver(second, lakehouse)
    run = run_job(lakehouse)
    assert run.returncode == 0, run.stderr[-3000:]
    both = pd.concat([first, second], ignore_index=True)
    assert_matches(lakehouse, both)
    assert (
        sum(line["input_rows"] for line in progress(run.stderr) if line["query"] == "anomaly_alerts") == 6000
    )

    # Rows older than the watermark are dropped and counted; on-time rows still land.
    newest = both["event_timestamp"].max()
    late = generate(
        40, start=(newest - pd.Timedelta(minutes=30)).to_pydatetime(), rate_per_s=10, aircraft=5, seed=3
    )
    on_time = generate(1200, start=newest.to_pydatetime(), rate_per_s=10, aircraft=40, seed=4)
    append_silver(pd.concat([late, on_time], ignore_index=True), lakehouse)
    run = run_job(lakehouse)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_matches(lakehouse, pd.concat([both, on_time], ignore_index=True))
    for query in ("flight_phase_counts", "anomaly_alerts"):
        last = [line for line in progress(run.stderr) if line["query"] == query][-1]
        assert last["cumulative"]["late_rows_dropped"] == len(late), last


def wait_until_gold_matches(
    config, silver: pd.DataFrame, job: subprocess.Popen, log: Path, timeout_s: float = 600
) -> None:
    """Polls the Gold tables until they equal the independent computation over `silver`; the
    timeout guards against a hung job, it is no speed goal."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert job.poll() is None, f"the job ended with {job.returncode}: {log.read_text()[-3000:]}"
        try:
            assert_matches(config, silver)
            return
        except (AssertionError, TableNotFoundError):  # not created yet
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def test_available_now_loop_runs_every_interval_until_stopped(lakehouse, tmp_path):
    first = generate(6000, start=START, rate_per_s=10, aircraft=40, anomaly_share=0.08, seed=1)
    append_silver(first.iloc[:3000], lakehouse)
    append_silver(first.iloc[3000:], lakehouse)
    log = tmp_path / "job.log"
    with log.open("w") as err:
        job = subprocess.Popen(
            [
                sys.executable,
                str(JOB),
                "--lakehouse-root",
                lakehouse.lakehouse_root,
                "--master",
                "local[2]",
                "--trigger",
                "available-now-loop",
                "--trigger-interval",
                "2 seconds",
                # Every batch in the log: the assertions below follow each one.
                "--progress-log-every",
                "0 seconds",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        wait_until_gold_matches(lakehouse, first, job, log)
        # A later commit is picked up by a later run of the same process, which also writes the
        # windows that commit closed (the run ends with the no-data batch that evicts them).
        second = generate(
            6000,
            start=first["event_timestamp"].max().to_pydatetime(),
            rate_per_s=10,
            aircraft=40,
            anomaly_share=0.08,
            seed=2,
        )
        append_silver(second, lakehouse)
        both = pd.concat([first, second], ignore_index=True)
        wait_until_gold_matches(lakehouse, both, job, log)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if job.poll() is None:
            job.kill()
    stderr = log.read_text()
    assert "stopped cleanly" in stderr, stderr[-3000:]
    lines = progress(stderr)
    for query in ("flight_phase_counts", "anomaly_alerts"):
        own = [line for line in lines if line["query"] == query]
        assert sum(line["input_rows"] for line in own) == 12000
        # One batch id sequence across the runs: each run resumes from the checkpoint.
        assert [line["batch_id"] for line in own] == list(range(len(own)))
        # Two runs found new data; each ended with the no-data batch that wrote what it closed.
        assert [line["input_rows"] > 0 for line in own] == [True, False, True, False], own
        # A query is started once per run, but its start is logged once (INFO) per process.
        assert sum(f"started query {query} " in line for line in stderr.splitlines()) == 1
    # Stopped and started again: nothing new to write, no window twice.
    assert run_job(lakehouse).returncode == 0
    assert_matches(lakehouse, both)


def test_gold_tables_are_readable_by_spark_and_delta_rs(lakehouse, spark):
    rows = generate(1500, start=START, rate_per_s=2, aircraft=20, seed=7)
    append_silver(rows, lakehouse)
    assert run_job(lakehouse).returncode == 0
    for table, by_delta_rs in gold(lakehouse).items():
        by_spark = spark.read.format("delta").load(lakehouse.paths.gold_table(table)).toPandas()
        assert len(by_spark) == len(by_delta_rs) > 0
        assert_gold_equal(by_spark, by_delta_rs, table)


def _silver_frame(n: int = 10) -> pd.DataFrame:
    return generate(n, start=START, rate_per_s=1, aircraft=2, seed=11)


def _no_column(config):
    df = _silver_frame().drop(columns=["flight_phase"])
    schema = pa.schema([f for f in SILVER_ML_ARROW_SCHEMA if f.name != "flight_phase"])
    write_deltalake(
        config.paths.silver_flights_ml, pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    )
    return "flight_phase"


def _wrong_type(config):
    df = _silver_frame()
    df["altitude_meters"] = df["altitude_meters"].astype(str)
    schema = pa.schema(
        [
            pa.field("altitude_meters", pa.string()) if f.name == "altitude_meters" else f
            for f in SILVER_ML_ARROW_SCHEMA
        ]
    )
    write_deltalake(
        config.paths.silver_flights_ml, pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    )
    return "altitude_meters"


def _not_delta(config):
    path = Path(config.paths.silver_flights_ml)
    path.mkdir(parents=True)
    _silver_frame().to_parquet(path / "part-0.parquet")
    return config.paths.silver_flights_ml


def _missing(config):
    return config.paths.silver_flights_ml


@pytest.mark.parametrize(
    "make_bad_silver",
    [_missing, _not_delta, _no_column, _wrong_type],
    ids=["missing", "not-delta", "missing-column", "wrong-type"],
)
def test_bad_silver_is_a_one_line_error_with_exit_code_2(lakehouse, make_bad_silver):
    named = make_bad_silver(lakehouse)
    run = run_job(lakehouse)
    assert run.returncode == 2, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("streaming_gold: error:")]
    assert len(errors) == 1 and named in errors[0], run.stderr[-3000:]
    assert not (Path(lakehouse.lakehouse_root) / "gold").exists()
    assert not (Path(lakehouse.lakehouse_root) / "_checkpoints").exists()


def test_bad_configuration_is_exit_code_2(lakehouse):
    run = run_job(lakehouse, "--trigger-interval", "soon")
    assert run.returncode == 2
    assert "trigger_interval" in run.stderr.strip().splitlines()[-1]
