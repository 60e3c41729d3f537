"""The lakehouse on S3, end to end, against a real S3-compatible HTTP server on loopback (moto's
server mode, see tests/support/s3_server.py): Silver_ML written by the feed to s3a://, the Gold job run as
a process with an s3a:// LAKEHOUSE_ROOT (hadoop-aws's S3A client, Delta's S3SingleDriverLogStore,
checkpoints on S3), both Gold tables on the server equal to the independent DuckDB computation;
and the sensor of gold_streaming (and the replay service's health check) seeing the S3 table."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import GOLD_TABLE_NAMES as GOLD_TABLES
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.lake.checks import has_delta_commit, silver_ml_ready
from flight_gold.lake.tables import open_table
from support.expected import assert_gold_equal, expected_gold
from support.jobs import progress, run_job
from support.s3_server import running_s3_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
COMMIT = re.compile(r"_delta_log/\d{20}\.json$")


@pytest.fixture(scope="module")
def s3_server():
    with running_s3_server() as server:
        yield server


def lakehouse_in_new_bucket(s3_server, monkeypatch, versioned: bool) -> GoldConfig:
    """A GoldConfig on an empty bucket of the server, with the environment a worker would have
    (the job and the sensor read LAKEHOUSE_ROOT, S3_ENDPOINT and AWS_* from it)."""
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    s3_server.create_bucket(bucket, versioned=versioned)
    for key, value in {**s3_server.env, "LAKEHOUSE_ROOT": f"s3a://{bucket}"}.items():
        monkeypatch.setenv(key, value)
    return GoldConfig.from_env(spark_master="local[2]")


@pytest.fixture
def s3_lakehouse(s3_server, monkeypatch) -> GoldConfig:
    return lakehouse_in_new_bucket(s3_server, monkeypatch, versioned=True)


@pytest.fixture
def s3_lakehouse_unversioned(s3_server, monkeypatch) -> GoldConfig:
    # For tests that delete objects and then list their folder (S3Server.create_bucket).
    return lakehouse_in_new_bucket(s3_server, monkeypatch, versioned=False)


def bucket_of(config: GoldConfig) -> str:
    return config.lakehouse_root[len("s3a://") :].split("/")[0]


def input_rows(stderr: str, query: str) -> int:
    return sum(line["input_rows"] for line in progress(stderr) if line["query"] == query)


def gold_on_s3(config: GoldConfig) -> dict[str, pd.DataFrame]:
    tables = {}
    for name in GOLD_TABLES:
        table = open_table(config.paths.gold_table(name), config)
        assert table is not None, f"no Delta table at {config.paths.gold_table(name)}"
        tables[name] = table.to_pandas()
    return tables


def test_gold_job_with_an_s3a_lakehouse_equals_the_independent_computation(s3_server, s3_lakehouse):
    config = s3_lakehouse
    first = generate(4000, start=START, rate_per_s=5, aircraft=30, anomaly_share=0.08, seed=21)
    append_silver(first.iloc[:2000], config)
    append_silver(first.iloc[2000:], config)

    run = run_job(config)
    assert run.returncode == 0, run.stderr[-4000:]
    expected = expected_gold(first)
    for name, actual in gold_on_s3(config).items():
        assert len(expected[name]) > 10, name  # the data closes windows: the comparison has rows
        assert_gold_equal(actual, expected[name], name)
    assert input_rows(run.stderr, "flight_phase_counts") == input_rows(run.stderr, "anomaly_alerts") == 4000

    # Everything is on the server, in the contract's layout, checkpoints apart from the tables.
    keys = s3_server.keys(bucket_of(config))
    for name in GOLD_TABLES:
        assert f"gold/streaming_aggregations/{name}/_delta_log/00000000000000000000.json" in keys
        assert f"_checkpoints/gold/streaming_aggregations/{name}/offsets/0" in keys
        assert f"_checkpoints/gold/streaming_aggregations/{name}/commits/0" in keys
    assert not [k for k in keys if k.startswith("gold/") and "_checkpoints" in k]

    # Delta on S3 needs no rename: every commit was written once, in place, never copied from a
    # temporary object (which would have left a deleted version behind). Only the optional .crc
    # checksum files go through a temporary object.
    pages = list(
        s3_server.client()
        .get_paginator("list_object_versions")
        .paginate(Bucket=bucket_of(config), Prefix="gold/")
    )
    log_writes = [v["Key"] for p in pages for v in p.get("Versions", []) if "/_delta_log/" in v["Key"]]
    deleted = [m["Key"] for p in pages for m in p.get("DeleteMarkers", []) if "/_delta_log/" in m["Key"]]
    assert not [k for k in deleted if ".json" in k], deleted
    commits = [k for k in log_writes if COMMIT.search(k)]
    assert len(commits) == len(set(commits)) >= 4, commits
    assert not [k for k in log_writes if re.search(r"\.json\.[0-9a-f-]+\.tmp$", k)]

    # More Silver data: the second run resumes from the checkpoints on S3: only the new rows are
    # read, no window is written twice, none is missing.
    second = generate(
        2000,
        start=first["event_timestamp"].max().to_pydatetime(),
        rate_per_s=5,
        aircraft=30,
        anomaly_share=0.08,
        seed=22,
    )
    append_silver(second, config)
    run = run_job(config)
    assert run.returncode == 0, run.stderr[-4000:]
    assert input_rows(run.stderr, "flight_phase_counts") == input_rows(run.stderr, "anomaly_alerts") == 2000
    expected = expected_gold(pd.concat([first, second], ignore_index=True))
    for name, actual in gold_on_s3(config).items():
        assert_gold_equal(actual, expected[name], name)


def test_the_sensor_and_the_replay_health_check_see_the_s3_silver_table(s3_lakehouse):
    from flight_gold.airflow.streaming import SilverMLSensor

    config = s3_lakehouse
    sensor = SilverMLSensor(task_id="wait_for_silver_ml")
    health = replay_health_check()

    assert silver_ml_ready(config) is False
    assert sensor.poke({}) is False
    assert health().returncode == 1

    append_silver(generate(50, start=START, rate_per_s=1, aircraft=3, seed=5), config)

    assert has_delta_commit(config.paths.silver_flights_ml, config) is True
    assert silver_ml_ready(config) is True
    assert sensor.poke({}) is True
    result = health()
    assert result.returncode == 0, result.stderr[-2000:]


def replay_health_check():
    """The silver-replay service's health check command from docker-compose.yaml, runnable here."""
    service = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]["silver-replay"]
    kind, program, *args = service["healthcheck"]["test"]
    assert (kind, program) == ("CMD", "python")
    return lambda: subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_a_first_batch_killed_on_s3_leaves_nothing_that_blocks_the_next_start(
    s3_server, s3_lakehouse_unversioned
):
    """What a kill during a new checkpoint's first batch can leave on S3 (Spark writes an offset
    to a temporary object, then copies it: a kill in between leaves the temporary one; a kill
    mid-write of `metadata` an empty object): the job removes it and starts."""
    config = s3_lakehouse_unversioned
    rows = generate(1500, start=START, rate_per_s=5, aircraft=20, anomaly_share=0.08, seed=23)
    append_silver(rows, config)
    bucket, client = bucket_of(config), s3_server.client()
    for name in GOLD_TABLES:
        prefix = f"_checkpoints/gold/streaming_aggregations/{name}"
        client.put_object(Bucket=bucket, Key=f"{prefix}/offsets/.0.{uuid.uuid4()}.tmp", Body=b"")
        client.put_object(Bucket=bucket, Key=f"{prefix}/state/0/0/.1.delta.{uuid.uuid4()}.tmp", Body=b"")
        client.put_object(Bucket=bucket, Key=f"{prefix}/metadata", Body=b"")

    run = run_job(config)
    assert run.returncode == 0, run.stderr[-4000:]
    for name in GOLD_TABLES:
        assert (
            f"checkpoint {config.paths.checkpoint(name)}: removed offsets/, state/, metadata, left by a "
            f"first batch that never committed" in run.stderr
        )
    expected = expected_gold(rows)
    for name, actual in gold_on_s3(config).items():
        assert_gold_equal(actual, expected[name], name)
