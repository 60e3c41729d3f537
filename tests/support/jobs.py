"""Shared by the reliability tests: Silver_ML frames, the Gold job as a real process, its logs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from flight_gold.core.config import GoldConfig
from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from flight_gold.spark.progress import PROGRESS_PREFIX, SUMMARY_PREFIX
from support.expected import assert_gold_equal, read_delta

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "jobs" / "streaming_gold.py"
START = pd.Timestamp("2024-05-01T10:00:00Z")
TABLES = ("flight_phase_counts", "anomaly_alerts")
PHASES = ["GROUND", "TAKEOFF", "CLIMB", "CRUISE", "DESCENT", "TRANSITION"]
COUNTRIES = ["France", "Germany", "Spain", "Italy"]


def lakehouse_config(root: Path) -> GoldConfig:
    return GoldConfig.from_env({}, lakehouse_root=str(root), spark_master="local[2]")


def silver_frame(n: int, start: pd.Timestamp, span_s: float, seed: int) -> pd.DataFrame:
    """`n` Silver_ML rows spread over `span_s` seconds from `start`, in event-time order, with
    a few altitude and velocity anomalies."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: pd.Series([None] * n, dtype=object) for c in SILVER_ML_ARROW_SCHEMA.names})
    offsets_us = np.sort(rng.integers(0, int(span_s * 1e6), n))
    df["event_timestamp"] = (start + pd.to_timedelta(offsets_us, unit="us")).astype("datetime64[us, UTC]")
    df["icao24"] = rng.choice([f"{i:06x}" for i in range(40)], n)
    df["origin_country"] = rng.choice(COUNTRIES, n)
    df["flight_phase"] = rng.choice(PHASES, n)
    df["altitude_meters"] = rng.uniform(-200, 12500, n).astype("float32")
    df["velocity_kmh"] = np.round(rng.uniform(0, 1050, n), 2)
    return df


def append_silver(config: GoldConfig, df: pd.DataFrame, schema: pa.Schema = SILVER_ML_ARROW_SCHEMA) -> None:
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    # from_pandas reads NaN as null: float columns are converted again so that a NaN stays a NaN.
    for i, field in enumerate(schema):
        if pa.types.is_floating(field.type) and df[field.name].dtype.kind == "f":
            table = table.set_column(
                i, field, pa.array(df[field.name].to_numpy(), type=field.type, from_pandas=False)
            )
    write_deltalake(config.paths.silver_flights_ml, table, mode="append")


class LiveFeed(threading.Thread):
    """A live Silver_ML writer: every `period_s` it appends `frame(k)` for k = 0, 1, 2... with
    `write(config, frame)` (`append()` also does it at once, before the thread starts). An error
    ends the thread and waits in `error` for the test; `done.set()` and `join()` stop it."""

    def __init__(
        self,
        config: GoldConfig,
        frame: Callable[[int], pd.DataFrame],
        write: Callable[[GoldConfig, pd.DataFrame], None] = append_silver,
        period_s: float = 1.0,
    ) -> None:
        super().__init__(daemon=True)
        self.config, self.frame, self.write, self.period_s = config, frame, write, period_s
        self.frames: list[pd.DataFrame] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def append(self) -> None:
        frame = self.frame(len(self.frames))
        self.write(self.config, frame)
        self.frames.append(frame)

    def run(self) -> None:
        try:
            while not self.done.wait(self.period_s):
                self.append()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def rows(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True)


def job_command(config: GoldConfig, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(JOB),
        "--lakehouse-root",
        config.lakehouse_root,
        "--master",
        "local[2]",
        *extra,
    ]


def run_job(config: GoldConfig, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """One available-now run to its end."""
    return subprocess.run(
        job_command(config, "--trigger", "available-now", *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_job(config: GoldConfig, log: Path, *extra: str) -> subprocess.Popen:
    """A processing-time run in its own process group (Python driver and Spark JVM), stderr to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            job_command(config, "--trigger", "processing-time", "--trigger-interval", "1 second", *extra),
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )


def kill9(proc: subprocess.Popen) -> None:
    """kill -9 of the whole job: the Python driver and its Spark JVM at the same instant."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def stop(proc: subprocess.Popen, timeout: float = 300) -> int:
    """SIGTERM, as Airflow stops the task; waits for the clean stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill9(proc)
        raise


def progress(stderr: str) -> list[dict]:
    return [
        json.loads(line.split(PROGRESS_PREFIX, 1)[1])
        for line in stderr.splitlines()
        if f" {PROGRESS_PREFIX} " in line
    ]


def summary(stderr: str) -> dict:
    lines = [line for line in stderr.splitlines() if f" {SUMMARY_PREFIX} " in line]
    assert lines, "no summary line in the job's log"
    return json.loads(lines[-1].split(SUMMARY_PREFIX, 1)[1])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("streaming_gold: ")]


def gold(config: GoldConfig, tables: Sequence[str] = TABLES) -> dict[str, pd.DataFrame]:
    return {t: read_delta(config.paths.gold_table(t)) for t in tables}


def assert_gold_is(
    config: GoldConfig,
    expected: dict[str, pd.DataFrame],
    *,
    nonempty: bool = False,
    tables: Sequence[str] = TABLES,
) -> None:
    """The Gold tables of the lakehouse (both, or `tables`) equal `expected` (the independent
    computation's); `nonempty`: and the expectation itself holds rows, so that two empty tables
    cannot pass."""
    actual = gold(config, tables)
    for table in tables:
        if nonempty:
            assert len(expected[table]) > 0, f"{table}: the independent computation has no rows"
        assert_gold_equal(actual[table], expected[table], table)


def gold_is(config: GoldConfig, expected: dict[str, pd.DataFrame]) -> bool:
    """assert_gold_is as a condition to wait for: False while a table is missing or differs."""
    try:
        assert_gold_is(config, expected)
    except Exception:
        return False
    return True


def tree(path: str | Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and modification time: 'untouched' means equal."""
    root = Path(path)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def wait_for(condition, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Polls until `condition()` is truthy (returns it) or fails after `timeout` seconds: a bound
    on waiting for the job, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def now_utc() -> datetime:
    return datetime.now(UTC)


def run_in_process(spark, config: GoldConfig, stop=None) -> int:
    """The job's run (guards, queries, wait) in this test process's Spark session: what
    jobs/streaming_gold.py does after parsing its flags, without a JVM start per run."""
    import threading

    from flight_gold.spark.runner import run_gold_streams

    return run_gold_streams(spark, config, stop or threading.Event())


def logged(caplog, prefix: str) -> list[dict]:
    """The JSON payloads of the job's `prefix` log lines (gold_progress, gold_summary) caught by
    pytest's caplog, oldest first."""
    return [
        json.loads(r.getMessage().split(prefix, 1)[1])
        for r in caplog.records
        if r.getMessage().startswith(prefix + " ")
    ]


def messages(caplog, level: int = 0) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def job_processes(config: GoldConfig) -> list:
    """The Gold job's processes on this lakehouse, however started (python jobs/streaming_gold.py,
    or spark-submit's JVM and the Python driver under it)."""
    import psutil

    found = []
    for p in psutil.process_iter():
        try:
            cmdline = p.cmdline()
        except psutil.Error:
            continue
        if "jobs/streaming_gold.py" in " ".join(cmdline) and config.lakehouse_root in cmdline:
            found.append(p)
    return found


def kill9_processes(processes: list) -> list[int]:
    """kill -9 of each process given (the job's JVM and its Python driver at once); their pids."""
    import psutil

    for p in processes:
        try:
            p.kill()
        except psutil.Error:
            pass
    return [p.pid for p in processes]


def numbered(folder: str | Path, pattern: str = r"^\d+$") -> list[int]:
    """The numbers leading the names in `folder` that match `pattern` (a checkpoint's offsets/
    or commits/, a _delta_log), sorted; [] when the folder is missing. Read while a job runs: its
    start removes the folders a killed first batch left, so the folder can go at any moment."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(int(re.match(r"\d+", name).group()) for name in names if re.match(pattern, name))


def committed_batches(config: GoldConfig, query: str) -> int:
    """Batches committed by a query's checkpoint."""
    ids = numbered(Path(config.paths.checkpoint(query)) / "commits")
    return ids[-1] + 1 if ids else 0


def progress_lines(log_lines: list[str]) -> list[dict]:
    """The gold_progress records of a task log's lines (the Airflow API gives one event a line)."""
    marker = f"{PROGRESS_PREFIX} "
    return [json.loads(line.split(marker, 1)[1]) for line in log_lines if marker in line]
