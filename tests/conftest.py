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
    # Every JVM the tests start (the in-process session, each job, Airflow's spark-submits) lives
    # seconds to minutes on two shared cores: C2's compiler threads and G1's concurrent threads
    # cost more CPU than they win back in that time. Measured on an idle machine: a job start to
    # its first batches 33 -> 19 CPU-s, the in-process Spark modules 107 -> 87 CPU-s. Tests only:
    # the product's weeks-long stream keeps the JVM's defaults. The java launcher prints one
    # "NOTE: Picked up JDK_JAVA_OPTIONS" line to stderr per JVM; nothing parses it.
    os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def pytest_collection_modifyitems(session, config, items):
    """Modules holding slow tests first, in their collection order, then the rest: with two
    workers taking whole modules in this order, the long ones start at once and run side by side
    instead of one of them starting last."""
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)


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
