"""Test-wide setup: an isolated Airflow home (before anything imports Airflow) and the shared
fixtures for Spark and temporary lakehouses."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def pytest_configure(config):
    # Airflow reads its configuration when first imported: point it at a throw-away home now.
    home = Path(tempfile.mkdtemp(prefix="flight-gold-airflow-"))
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Jobs started by the tests serve their Prometheus endpoint on any free port, never on 4040
    # where another job of the machine may be; tests of the endpoint choose their own.
    os.environ.setdefault("GOLD_METRICS_PORT", "0")
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata database (SQLite) in the session's Airflow home."""
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture(scope="session")
def spark():
    """One Spark session with Delta for every in-process test (a JVM start costs ~5 s)."""
    from flight_gold.core.config import GoldConfig
    from flight_gold.spark.session import build_spark_session

    session = build_spark_session(GoldConfig.from_env({}, spark_master="local[2]"), "flight-gold-tests")
    yield session
    session.stop()


@pytest.fixture
def lakehouse(tmp_path):
    """A GoldConfig on an empty local lakehouse in a temporary folder."""
    from flight_gold.core.config import GoldConfig

    return GoldConfig.from_env({}, lakehouse_root=str(tmp_path / "lakehouse"), spark_master="local[2]")
