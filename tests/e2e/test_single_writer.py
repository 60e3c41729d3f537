"""One writer per Gold table, on S3 and on a local root: the Gold job (processing-time, a commit
every ~2 s, compacting its own tables every few seconds) runs for over 3 minutes on a live feed
while jobs/maintenance.py runs in a loop beside it (VACUUM, and OPTIMIZE, which it must leave to
the stream). Afterwards every Gold commit the stream made is in the log exactly once, no log
version is missing or was ever overwritten, no maintenance run wrote to a Gold log, and both
Gold tables equal the independent computation.

On S3 (moto's server on loopback, bucket versioning on) a commit overwritten by a second driver
would leave two object versions of one `_delta_log/N.json`: the test looks for that too."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import GOLD_TABLE_NAMES as TABLES
from flight_gold.feed.writer import append_silver
from flight_gold.lake.tables import open_table
from flight_gold.spark.marks import commit_mark
from support.expected import assert_gold_equal, expected_gold
from support.jobs import REPO, START, LiveFeed, progress, silver_frame
from support.s3_server import running_s3_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

OVERLAP_S = 180
STATE_WAIT_S = 900
MAINTENANCE = REPO / "jobs" / "maintenance.py"
STREAM = REPO / "jobs" / "streaming_gold.py"
COMMIT = re.compile(r"_delta_log/(\d{20})\.json$")
MIN_COMPACTIONS = 5
MIN_WRITES = 10


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path, monkeypatch):
    """(GoldConfig, environment of the jobs, S3 server or None)."""
    # The stream compacts every few seconds; the maintenance job reads the same setting.
    base = {**os.environ, "GOLD_COMPACT_INTERVAL": "5 seconds"}
    if request.param == "local":
        root = str(tmp_path / "lakehouse")
        yield GoldConfig.from_env({}, lakehouse_root=root, spark_master="local[2]"), base, None
        return
    with running_s3_server() as server:
        bucket = f"lake-{uuid.uuid4().hex[:10]}"
        server.create_bucket(bucket, versioned=True)
        env = {**base, **server.env, "LAKEHOUSE_ROOT": f"s3a://{bucket}"}
        # This process's feed and log reads take the credentials from the environment, as every
        # client of the lakehouse does (core/s3.py).
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        yield GoldConfig.from_env(env, spark_master="local[2]"), env, server


def traffic(k: int) -> pd.DataFrame:
    """Frame k of the live feed, one a second: 15 s more of event time (40 rows), so that windows
    close all the time."""
    return silver_frame(40, START + pd.Timedelta(seconds=15 * k), 15, seed=9000 + k)


class MaintenanceLoop(threading.Thread):
    """jobs/maintenance.py --mode both, one run after the other, until stopped."""

    def __init__(self, config, env) -> None:
        super().__init__(daemon=True)
        self.config, self.env, self.done, self.runs = config, env, threading.Event(), []

    def run(self) -> None:
        while not self.done.is_set():
            self.runs.append(
                subprocess.run(
                    [sys.executable, str(MAINTENANCE), "--lakehouse-root", self.config.lakehouse_root]
                    + ["--master", "local[1]", "--mode", "both"],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=STATE_WAIT_S,
                )
            )


def log_files(config, server) -> dict[str, dict[int, str]]:
    """{table: {version: commit text}} of each Gold table's _delta_log."""
    out: dict[str, dict[int, str]] = {}
    for table in TABLES:
        path = config.paths.gold_table(table)
        out[table] = {}
        if server is None:
            for p in (Path(path) / "_delta_log").glob("*.json"):
                if p.name[:-5].isdigit():
                    out[table][int(p.name[:-5])] = p.read_text()
            continue
        bucket, prefix = path[len("s3a://") :].split("/", 1)
        client = server.client()
        for key in server.keys(bucket, prefix + "/_delta_log/"):
            match = COMMIT.search(key)
            if match:
                out[table][int(match.group(1))] = (
                    client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
                )
    return out


def compactions(log: str, table: str) -> list[str]:
    """The stream's log lines that say it compacted `table`."""
    return [line for line in log.splitlines() if f" compacted {table}: " in line]


def gold_writes(log: str, table: str) -> int:
    """Batches the stream logged as having written Gold rows to `table` (always logged)."""
    return sum(1 for p in progress(log) if p["query"] == table and p["gold_rows_written"])


def written_and_compacted(log: str) -> bool:
    return all(
        gold_writes(log, t) >= MIN_WRITES and len(compactions(log, t)) >= MIN_COMPACTIONS for t in TABLES
    )


def actions(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def query_id(config, server, table: str) -> str:
    path = config.paths.checkpoint(table) + "/metadata"
    if server is None:
        return json.loads(Path(path).read_text())["id"]
    bucket, key = path[len("s3a://") :].split("/", 1)
    return json.loads(server.client().get_object(Bucket=bucket, Key=key)["Body"].read())["id"]


def test_the_stream_is_the_only_writer_of_its_gold_tables(lake, tmp_path):
    config, env, server = lake
    # The product's writer, which reaches an S3 lakehouse too.
    feed = LiveFeed(config, traffic, write=lambda config, frame: append_silver(frame, config))
    for _ in range(8):  # two minutes of event time before the job starts
        feed.append()
    stderr = tmp_path / "stream.log"
    with open(stderr, "wb") as out:
        stream = subprocess.Popen(
            [sys.executable, str(STREAM), "--lakehouse-root", config.lakehouse_root, "--master", "local[2]"]
            + ["--trigger", "processing-time", "--trigger-interval", "2 seconds"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    maintenance = MaintenanceLoop(config, env)

    def wait(what, condition):
        deadline = time.monotonic() + STATE_WAIT_S
        while not condition():
            assert stream.poll() is None, f"the job ended ({stream.returncode}): {stderr.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(1)

    try:
        wait("the first batches", lambda: {p["query"] for p in progress(stderr.read_text())} == set(TABLES))
        began = time.monotonic()
        feed.start()
        maintenance.start()
        # The writes and compactions asserted below are waited for too: on a loaded machine a
        # start (its head-start batches, the queries started again) can take a minute of the overlap.
        wait(
            f"3 minutes of overlap, 2 maintenance runs, {MIN_WRITES} writes and {MIN_COMPACTIONS} "
            f"compactions of each table",
            lambda: (
                time.monotonic() - began >= OVERLAP_S
                and len(maintenance.runs) >= 2
                and written_and_compacted(stderr.read_text())
            ),
        )
        maintenance.done.set()
        feed.done.set()
        feed.join()
        maintenance.join()
        assert feed.error is None, feed.error
        rows = feed.rows()
        newest = pd.to_datetime(rows["event_timestamp"], utc=True).max()
        final = {
            "flight_phase_counts": newest - pd.Timedelta(minutes=2),
            "anomaly_alerts": newest - pd.Timedelta(minutes=6),
        }
        wait(
            "the final watermarks",
            lambda: all(
                any(
                    p["query"] == t
                    and p["watermark"]
                    and pd.Timestamp(p["watermark"]) >= final[t].floor("ms")
                    for p in progress(stderr.read_text())
                )
                for t in TABLES
            ),
        )
    finally:
        maintenance.done.set()
        feed.done.set()
        if stream.poll() is None:
            stream.send_signal(signal.SIGTERM)
        stream.wait(timeout=300)
    text = stderr.read_text(errors="replace")
    assert stream.returncode == 0, text[-3000:]

    # Maintenance ran beside the stream, VACUUMed, and left OPTIMIZE to it.
    for run in maintenance.runs:
        assert run.returncode == 0, run.stderr[-3000:]
        report = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        for row in report[:-1]:
            assert row["status"] == "ok" and row["vacuum_files_removed"] == 0, row
            assert row["optimize_files_removed"] is None, row
            assert row["optimize_skipped"].endswith("compacts this table itself every 5 seconds"), row

    logs = log_files(config, server)
    expected = expected_gold(rows)
    for table in TABLES:
        versions = sorted(logs[table])
        assert versions == list(range(len(versions))), f"{table}: a log version is missing"
        commits = {v: actions(logs[table][v]) for v in versions}
        operations = [
            next(a["commitInfo"]["operation"] for a in commits[v] if "commitInfo" in a) for v in versions
        ]
        marks = [mark for v in versions if (mark := commit_mark(commits[v])) is not None]
        # Every batch the stream committed is there once, under the query id of its checkpoint.
        assert len(marks) == len(set(marks)) == operations.count("WRITE") >= MIN_WRITES, (table, operations)
        assert {app for app, _ in marks} == {query_id(config, server, table)}
        # The stream compacted the table many times, nobody else wrote to its log.
        compacted = compactions(text, table)
        assert operations.count("OPTIMIZE") == len(compacted) >= MIN_COMPACTIONS, (table, len(compacted))
        assert set(operations) == {"CREATE TABLE", "WRITE", "OPTIMIZE"}, set(operations)
        gold = open_table(config.paths.gold_table(table), config).to_pandas()
        assert_gold_equal(gold, expected[table], table)
    if server is not None:
        # No commit object was ever written twice (bucket versioning keeps every write).
        bucket = config.lakehouse_root[len("s3a://") :].split("/")[0]
        pages = server.client().get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="gold/")
        written = [v["Key"] for p in pages for v in p.get("Versions", []) if COMMIT.search(v["Key"])]
        assert len(written) == len(set(written)) == sum(len(v) for v in logs.values())
