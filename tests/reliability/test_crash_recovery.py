"""kill -9 of the Gold job (processing-time mode, live Silver_ML feed) at random moments, each
followed by a restart: once the feed is drained, both Gold tables equal the independent
computation, with no window missing and none written twice.

The kill moments are drawn three ways, in turn: at a random time after the Spark session is up
(guards, query start, batches, idle waits), while a micro-batch is in flight (its offsets are
logged, its commit is not), and right after a Gold Delta commit appeared (most often before the
checkpoint recorded the batch as done: the case Delta's idempotent sink commit is there for)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pandas as pd
import pytest

from support.expected import expected_gold
from support.jobs import (
    START,
    TABLES,
    LiveFeed,
    assert_gold_is,
    kill9,
    lakehouse_config,
    numbered,
    progress,
    silver_frame,
    start_job,
    stop,
    wait_for,
)
from support.streams import DELAYS

pytestmark = pytest.mark.e2e

MODES = ("random", "mid-batch", "after-gold-commit")
STARTUP_TIMEOUT = 600  # a loaded 2-core machine can take minutes to start a JVM
BATCH_TIMEOUT = 600


def overlapping_traffic(seed: int):
    """Frame k of a live feed: 15 s more of event time (60 rows), reaching up to 20 s back into
    frame k-1 (out of order, well within the watermark)."""

    def frame(k: int) -> pd.DataFrame:
        start = START + pd.Timedelta(seconds=15 * k - 20 * (k > 0))
        return silver_frame(60, start, 35 if k else 15, seed=seed * 100_000 + k)

    return frame


def newest_batches(config) -> dict[str, int]:
    return {t: max(numbered(Path(config.paths.checkpoint(t)) / "offsets"), default=-1) for t in TABLES}


def batches_in_flight(config, since: dict[str, int] | None = None) -> list[str]:
    """Queries whose newest logged batch has no commit yet; with `since`, only batches logged
    after that snapshot (a batch left open by the previous kill is not this run's)."""
    busy = []
    for table in TABLES:
        checkpoint = Path(config.paths.checkpoint(table))
        offsets, commits = numbered(checkpoint / "offsets"), numbered(checkpoint / "commits")
        if (
            offsets
            and (not commits or offsets[-1] > commits[-1])
            and (since is None or offsets[-1] > since[table])
        ):
            busy.append(table)
    return busy


def gold_versions(config) -> dict[str, int]:
    return {
        t: max(numbered(Path(config.paths.gold_table(t)) / "_delta_log", r"^\d{20}\.json$"), default=-1)
        for t in TABLES
    }


def kill_once(config, mode: str, rng: random.Random, log: Path) -> str:
    """Starts the job, kills it -9 at a moment drawn by `mode`; returns what was going on then."""
    logged_before = newest_batches(config)
    proc = start_job(config, log)
    try:
        wait_for(
            lambda: " session flight-gold-streaming" in log.read_text() or proc.poll() is not None,
            STARTUP_TIMEOUT,
            what="the Spark session",
        )
        if mode == "random":
            time.sleep(rng.uniform(0, 20))
        elif mode == "mid-batch":
            wait_for(
                lambda: batches_in_flight(config, logged_before) or proc.poll() is not None,
                BATCH_TIMEOUT,
                interval=0.01,
                what="a batch in flight",
            )
            time.sleep(rng.uniform(0, 0.3))
        else:
            before = gold_versions(config)
            wait_for(
                lambda: gold_versions(config) != before or proc.poll() is not None,
                BATCH_TIMEOUT,
                interval=0.002,
                what="a Gold commit",
            )
        assert proc.poll() is None, (
            f"the job ended by itself (exit {proc.returncode}):\n{log.read_text()[-4000:]}"
        )
        in_flight = batches_in_flight(config)
        kill9(proc)
    finally:
        if proc.poll() is None:
            kill9(proc)
    return f"{mode}: " + (f"batch in flight in {', '.join(in_flight)}" if in_flight else "between batches")


def drain(config, rows: pd.DataFrame, log: Path) -> None:
    """A last processing-time run until each query's watermark reached the one the complete feed
    gives (its windows are then written), then a clean stop (SIGTERM)."""
    newest = pd.to_datetime(rows["event_timestamp"], utc=True).max()
    final = {t: (newest - DELAYS[t]).floor("ms") for t in TABLES}

    def reached() -> bool:
        lines = progress(log.read_text())
        return all(
            any(
                line["query"] == t and line["watermark"] and pd.Timestamp(line["watermark"]) >= final[t]
                for line in lines
            )
            for t in TABLES
        )

    proc = start_job(config, log)
    try:
        wait_for(
            lambda: reached() or proc.poll() is not None,
            STARTUP_TIMEOUT + BATCH_TIMEOUT,
            what="the final watermarks",
        )
        assert proc.poll() is None, (
            f"the job ended by itself (exit {proc.returncode}):\n{log.read_text()[-4000:]}"
        )
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-4000:]


def kill_loop(tmp_path: Path, kills: int, seed: int) -> list[str]:
    config = lakehouse_config(tmp_path / "lakehouse")
    rng = random.Random(seed)
    feed = LiveFeed(config, overlapping_traffic(seed))
    feed.append()  # the job's sensor would wait for this first commit
    feed.start()
    moments = []
    try:
        for i in range(kills):
            moments.append(kill_once(config, MODES[i % len(MODES)], rng, tmp_path / f"run-{i:02d}.log"))
    finally:
        feed.done.set()
        feed.join()
    assert feed.error is None, feed.error
    rows = feed.rows()
    drain(config, rows, tmp_path / "final.log")

    assert_gold_is(config, expected_gold(rows), nonempty=True)
    print(
        f"{kills} kills (seed {seed}), {len(rows)} Silver rows in {len(feed.frames)} commits:\n  "
        + "\n  ".join(moments)
    )
    return moments


@pytest.mark.timeout(2400)
def test_kill_9_and_restart_lose_and_double_nothing(tmp_path):
    moments = kill_loop(tmp_path, kills=3, seed=9)
    assert sum("batch in flight" in m for m in moments) >= 1, moments


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_twenty_kills_lose_and_double_nothing(tmp_path):
    moments = kill_loop(tmp_path, kills=20, seed=2020)
    # By construction most mid-batch and after-commit kills land inside a batch.
    assert sum("batch in flight" in m for m in moments) >= 5, moments
