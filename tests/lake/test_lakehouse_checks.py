"""The Silver_ML-has-a-commit check of the sensor, on a local folder and on S3 (moto's real S3 HTTP
server on loopback), with the endpoint and credentials the Spark job uses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.lake.checks import LakehouseCheckError, has_delta_commit, silver_ml_ready

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def rows(n: int = 20):
    return generate(n, start=START, rate_per_s=1, aircraft=2, seed=5)


def test_local_root_missing_empty_log_parquet_only_then_a_commit(lakehouse):
    silver = Path(lakehouse.paths.silver_flights_ml)
    assert silver_ml_ready(lakehouse) is False  # nothing at all

    (silver / "_delta_log").mkdir(parents=True)
    (silver / "_delta_log" / "00000000000000000000.json.tmp").write_text("{}")
    rows().to_parquet(silver / "part-0.parquet")
    assert silver_ml_ready(lakehouse) is False  # a log folder and data, but no commit

    (silver / "_delta_log" / "00000000000000000000.json.tmp").unlink()
    append_silver(rows(), lakehouse)
    assert silver_ml_ready(lakehouse) is True
    assert has_delta_commit(lakehouse.paths.flight_phase_counts, lakehouse) is False


@pytest.fixture
def s3(monkeypatch):
    from support.s3_server import running_s3_server

    with running_s3_server() as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        server.create_bucket("lake")
        yield server


def test_s3a_root_before_and_after_the_first_commit(s3):
    config = GoldConfig.from_env(lakehouse_root="s3a://lake/prod")
    assert silver_ml_ready(config) is False

    s3.client().put_object(
        Bucket="lake", Key="prod/silver/flights_ml/_delta_log/README", Body=b"not a commit"
    )
    assert silver_ml_ready(config) is False

    append_silver(rows(), config)
    assert "prod/silver/flights_ml/_delta_log/00000000000000000000.json" in s3.keys("lake")
    assert silver_ml_ready(config) is True
    assert silver_ml_ready(config.replace(lakehouse_root="s3a://lake/other")) is False


def test_an_unreachable_store_is_an_error_naming_the_path(s3, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    config = GoldConfig.from_env(lakehouse_root="s3a://lake/prod")

    with pytest.raises(LakehouseCheckError) as error:
        silver_ml_ready(config)

    message = str(error.value)
    assert message.startswith("cannot read s3a://lake/prod/silver/flights_ml/_delta_log: ")
    assert "\x1b[" not in message and "\n" not in message
