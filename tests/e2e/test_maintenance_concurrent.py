"""OPTIMIZE and VACUUM (jobs/maintenance.py, real processes) while the Gold job runs in
processing-time mode on a live feed: Delta 4.4's conflict handling checked from the transaction
logs, not assumed. Both sides must succeed, and the Gold tables must still equal the independent
computation once the stream has caught up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from flight_gold.core.contract import GOLD_TABLE_NAMES as GOLD_TABLES
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.spark.progress import PROGRESS_PREFIX
from support.expected import assert_gold_equal, expected_gold, read_delta, watermark

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STREAM_JOB = REPO / "jobs" / "streaming_gold.py"
MAINTENANCE_JOB = REPO / "jobs" / "maintenance.py"
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
CHUNK_ROWS = 300  # one minute of event time per feed commit (5 rows/s)
FEED_EVERY_S = 2.0
MAX_MAINTENANCE_RUNS = 6
# Guards against a hung process, not speed goals: the test waits for states, not for durations.
STATE_WAIT_S = 900
# The Gold writer's commits (a Delta append per micro-batch with rows; "STREAMING UPDATE" is
# what Spark's own Delta sink would write).
STREAM_WRITE = "WRITE"
CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "ConcurrentModificationException",
)


def chunk(k: int) -> pd.DataFrame:
    return generate(
        CHUNK_ROWS,
        start=START,
        rate_per_s=5,
        aircraft=25,
        anomaly_share=0.05,
        seed=9,
        first_row=k * CHUNK_ROWS,
    )


class Feed(threading.Thread):
    """Appends one minute of Silver_ML every FEED_EVERY_S seconds until stopped."""

    def __init__(self, config, first_chunk: int):
        super().__init__(daemon=True)
        self.config, self.next_chunk, self.stop = config, first_chunk, threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(FEED_EVERY_S):
                append_silver(chunk(self.next_chunk), self.config)
                self.next_chunk += 1
        except BaseException as exc:
            self.error = exc


def commits(path: str) -> list[dict]:
    return sorted(DeltaTable(path).history(), key=lambda c: c["version"])


def interleavings(path: str) -> dict[str, list[int]]:
    """Commits that landed while the other kind of writer was between its read and its commit.

    optimize_after_append: an OPTIMIZE whose snapshot was older than a stream commit it then
    committed on top of; append_after_optimize: a stream commit (blind append) likewise on top of
    an OPTIMIZE it did not read."""
    log = commits(path)
    by_version = {c["version"]: c["operation"] for c in log}
    found: dict[str, list[int]] = {"optimize_after_append": [], "append_after_optimize": []}
    for c in log:
        read = c.get("readVersion")
        if read is None or read >= c["version"] - 1:
            continue
        between = {by_version[v] for v in range(read + 1, c["version"])}
        if c["operation"] == "OPTIMIZE" and STREAM_WRITE in between:
            found["optimize_after_append"].append(c["version"])
        if c["operation"] == STREAM_WRITE and "OPTIMIZE" in between:
            found["append_after_optimize"].append(c["version"])
    return found


def stream_batches(path: str) -> list[int]:
    """The streaming batch ids the table committed, from the txn actions of its log."""
    batches = []
    for name in sorted(os.listdir(Path(path) / "_delta_log")):
        if name.endswith(".json") and name[:-5].isdigit():
            for line in (Path(path) / "_delta_log" / name).read_text().splitlines():
                action = json.loads(line)
                if "txn" in action:
                    batches.append(int(action["txn"]["version"]))
    return batches


def progress(stderr_file: Path) -> list[dict]:
    lines = stderr_file.read_text(errors="replace").splitlines()
    return [json.loads(line.split(PROGRESS_PREFIX, 1)[1]) for line in lines if f" {PROGRESS_PREFIX} " in line]


def wait_for(what: str, condition, stream: subprocess.Popen, stderr_file: Path) -> None:
    deadline = time.monotonic() + STATE_WAIT_S
    while not condition():
        assert stream.poll() is None, (
            f"the Gold job exited ({stream.returncode}) while waiting for "
            f"{what}:\n{stderr_file.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(1)


def maintain(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(MAINTENANCE_JOB),
            "--lakehouse-root",
            config.lakehouse_root,
            "--master",
            "local[1]",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=STATE_WAIT_S,
    )


def report_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_optimize_and_vacuum_while_the_gold_job_appends(lakehouse, tmp_path):
    config = lakehouse
    for k in range(3):
        append_silver(chunk(k), config)
    stderr_file = tmp_path / "stream.stderr"
    with open(stderr_file, "w") as err:
        stream = subprocess.Popen(
            [
                sys.executable,
                str(STREAM_JOB),
                "--lakehouse-root",
                config.lakehouse_root,
                "--master",
                "local[2]",
                "--trigger",
                "processing-time",
                "--trigger-interval",
                "1 second",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    feed = Feed(config, first_chunk=3)
    runs: list[subprocess.CompletedProcess] = []
    try:
        gold = {t: config.paths.gold_table(t) for t in GOLD_TABLES}

        def appended(n):
            # Each of the Gold writer's commits adds a file (a batch with no window writes none).
            return lambda: all(
                DeltaTable.is_deltatable(p) and sum(c["operation"] == STREAM_WRITE for c in commits(p)) >= n
                for p in gold.values()
            )

        feed.start()
        wait_for("several small Gold files", appended(3), stream, stderr_file)

        # Maintenance while the feed and the stream run, until the logs show each writer
        # committing on top of the other's concurrent commit.
        seen = {"optimize_after_append": [], "append_after_optimize": []}
        while len(runs) < MAX_MAINTENANCE_RUNS and not all(seen.values()):
            runs.append(maintain(config, "--mode", "both"))
            assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
            seen = {kind: [(t, v) for t, p in gold.items() for v in interleavings(p)[kind]] for kind in seen}
        assert all(seen.values()), f"no interleaving of both kinds after {len(runs)} runs: {seen}"
        for run in runs:
            rows = report_lines(run.stdout)
            assert [r["status"] for r in rows[:-1]] == ["ok", "ok"] and rows[-1]["exit_code"] == 0, run.stdout
            assert all(r["vacuum_files_removed"] == 0 for r in rows[:-1]), run.stdout

        # The stream catches up on everything fed, then is stopped cleanly.
        feed.stop.set()
        feed.join()
        assert feed.error is None, feed.error
        silver = pd.concat([chunk(k) for k in range(feed.next_chunk)], ignore_index=True)
        final = {
            "flight_phase_counts": watermark(silver, timedelta(minutes=2)),
            "anomaly_alerts": watermark(silver, timedelta(minutes=6)),
        }

        def caught_up():
            lines = progress(stderr_file)
            return all(
                any(
                    line["query"] == q and line["watermark"] and pd.Timestamp(line["watermark"]) == final[q]
                    for line in lines
                )
                for q in final
            )

        wait_for("the stream to catch up", caught_up, stream, stderr_file)
    finally:
        feed.stop.set()
        if stream.poll() is None:
            stream.send_signal(signal.SIGTERM)
        stream.wait(timeout=300)

    stream_log = stderr_file.read_text(errors="replace")
    assert stream.returncode == 0, stream_log[-3000:]
    for name in CONFLICTS:
        assert name not in stream_log
        assert all(name not in run.stderr for run in runs)
    expected = expected_gold(silver)
    for table, path in gold.items():
        # No batch failed, none was retried into a second commit: one txn per batch id, in order
        # (only the batches that closed a window write).
        batches = stream_batches(path)
        assert batches and batches == sorted(set(batches)), batches
        assert len(batches) == [c["operation"] for c in commits(path)].count(STREAM_WRITE)
        operations = [c["operation"] for c in commits(path)]
        assert operations.count("OPTIMIZE") >= 1 and operations.count("VACUUM END") == len(runs)
        assert_gold_equal(read_delta(path), expected[table], table)
