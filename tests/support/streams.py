"""The Gold job in processing-time mode in a thread of the test process (its Spark session), and
the conditions tests wait for while it runs."""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from support.jobs import TABLES, logged, numbered, run_in_process, wait_for

# The contract's watermark delays, written out: the tests check the job against them.
DELAYS = {"flight_phase_counts": pd.Timedelta(minutes=2), "anomaly_alerts": pd.Timedelta(minutes=6)}


class Stream(threading.Thread):
    """The job in processing-time mode, in a thread of this process, until `stop` is set."""

    def __init__(self, spark, config) -> None:
        super().__init__(daemon=True)
        self.spark, self.config, self.stop, self.code = spark, config, threading.Event(), None

    def run(self) -> None:
        self.code = run_in_process(self.spark, self.config, self.stop)


def read_all(caplog, rows: int, table: str = "flight_phase_counts") -> bool:
    return sum(p["input_rows"] for p in logged(caplog, "gold_progress") if p["query"] == table) >= rows


def read_through(config, version: int, table: str = "flight_phase_counts") -> bool:
    """The query committed a batch that read Silver_ML up to `version` included (its Delta
    offset points past it). Not from the log: a processing-time run samples its progress lines."""
    checkpoint = Path(config.paths.checkpoint(table))
    commits = numbered(checkpoint / "commits")
    if not commits:
        return False
    offset = json.loads((checkpoint / "offsets" / str(commits[-1])).read_text().splitlines()[-1])
    return offset["reservoirVersion"] > version


def drained(caplog, rows: pd.DataFrame) -> bool:
    newest = pd.to_datetime(rows["event_timestamp"], utc=True).max()
    lines = logged(caplog, "gold_progress")
    return all(
        any(
            p["query"] == t
            and p["watermark"]
            and pd.Timestamp(p["watermark"]) >= (newest - DELAYS[t]).floor("ms")
            for p in lines
        )
        for t in TABLES
    )


@contextmanager
def running_stream(spark, config, caplog):
    """The Stream, started with INFO logs captured; stopped on leaving, and it must end with 0."""
    caplog.set_level(logging.INFO)
    stream = Stream(spark, config)
    stream.start()
    try:
        yield stream
    finally:
        stream.stop.set()
        stream.join(timeout=300)
    assert stream.code == 0, f"the job ended with exit code {stream.code}"


def run_stream_until(stream: Stream, condition, what: str) -> None:
    wait_for(lambda: condition() or not stream.is_alive(), 900, what=what)
    assert stream.is_alive(), f"the job ended ({stream.code}) while waiting for {what}"
