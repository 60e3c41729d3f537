"""Silver_ML for the benchmark, with the project's synthetic generator and writer (delta-rs, one
commit per append): a history written at once, a backlog, and a real-pace feed thread."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta

from flight_gold.core.config import GoldConfig

log = logging.getLogger("bench.feed")


# A little of everything the anomaly query counts, as in real traffic.
ANOMALY_SHARE = 0.02


def _generate(n_rows: int, start: datetime, rate_per_s: float, seed: int, first_row: int):
    from flight_gold.feed.synthetic import generate

    return generate(
        n_rows,
        start=start,
        rate_per_s=rate_per_s,
        seed=seed,
        first_row=first_row,
        anomaly_share=ANOMALY_SHARE,
    )


def _append(df, config: GoldConfig):
    from flight_gold.feed.writer import append_silver

    return append_silver(df, config)


def write_history(
    config: GoldConfig, start: datetime, n_rows: int, rate_per_s: float, commit_rows: int, seed: int = 0
) -> dict:
    """n_rows at rate_per_s from `start` in commits of commit_rows: the state of Silver_ML after
    the feed ran while the job did not."""
    from flight_gold.feed.synthetic import write_synthetic

    t0 = time.perf_counter()
    write_synthetic(
        config,
        n_rows,
        commit_rows=commit_rows,
        start=start,
        rate_per_s=rate_per_s,
        seed=seed,
        anomaly_share=ANOMALY_SHARE,
    )
    return {
        "rows": n_rows,
        "commit_rows": commit_rows,
        "commits": -(-n_rows // commit_rows),
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=n_rows / rate_per_s)).isoformat(),
        "write_seconds": time.perf_counter() - t0,
    }


class RealPaceFeed(threading.Thread):
    """Appends, every `commit_s` seconds, the observations of the time since the last commit, with
    event times on the wall clock: event k is at t0 + k / rate, so there is no gap and no overlap
    between commits, whatever the writer's own delay."""

    def __init__(
        self,
        config: GoldConfig,
        rate_per_s: float,
        commit_s: float,
        t0: datetime,
        written: int = 0,
        seed: int = 1,
    ) -> None:
        super().__init__(name="real-pace-feed", daemon=True)
        self.config, self.rate, self.commit_s, self.t0 = config, rate_per_s, commit_s, t0
        self.seed = seed
        self.written = written
        self.commits: list[dict] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)

    def run(self) -> None:
        try:
            # Jittered, not on a wall-clock grid: commits in phase with the job's trigger (which
            # fires on multiples of its interval) would fake a constant wait instead of a uniform one.
            rng = random.Random(self.seed)
            while not self._halt.wait(self.commit_s * rng.uniform(0.5, 1.5)):
                now = datetime.now(UTC)
                target = int((now - self.t0).total_seconds() * self.rate)
                n = target - self.written
                if n <= 0:
                    continue
                df = _generate(n, self.t0, self.rate, self.seed, first_row=self.written)
                version = _append(df, self.config)
                self.commits.append({"version": version, "rows": n, "wall_ms": int(time.time() * 1000)})
                self.written = target
        except BaseException as exc:
            log.exception("real-pace feed failed")
            self.error = exc


def prefill(config: GoldConfig, minutes: float, rate_per_s: float, end: datetime, seed: int = 1) -> dict:
    """The last `minutes` of traffic before `end`, one commit per minute, so that the job starts on
    a table in steady state (windows of both queries already closing). The real-pace feed goes on
    with the same run (same seed and start, from row `rows`)."""
    start = end - timedelta(minutes=minutes)
    total = int(minutes * 60 * rate_per_s)
    info = write_history(config, start, total, rate_per_s, int(60 * rate_per_s), seed=seed)
    return {**info, "t0": start}
