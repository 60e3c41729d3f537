"""Replays the recorded Paris traffic into Silver_ML, as upstream would have written it.

    python -m flight_gold.feed.replay --all-at-once              # the 3 h recording, 1 commit/minute
    python -m flight_gold.feed.replay --shift-to-now --speed 10  # live-looking feed, 10x real time

Two modes:

- all at once (`--all-at-once`): every row, in event-time order, one Delta commit per
  `--commit-every` seconds of event time (default 60: one commit per 1-minute Gold window),
  as fast as the writes go;
- continuous (default): one commit per `--commit-every` seconds of event time (default 10), each
  made when the replay clock has passed the end of its slice, the replay clock running `--speed`
  times faster than the wall clock. SIGTERM or SIGINT stops it after the commit under way.

A commit the storage refuses (an S3 server restarting) is logged and tried again, 1 s later, then
2, 4... up to 30 s apart, until it lands: the feed outlives a storage outage and writes each slice
once (it is Silver_ML's only writer, so a commit whose reply was lost is recognised by the table
version).

Slices are aligned to the epoch (like the Gold windows), so with a 60 s slice every commit holds
exactly one tumbling window's rows.

`--shift-to-now` moves every timestamp by the same whole number of seconds:

- all at once: the recording ends now (its last row is stamped within the last second);
- continuous: the replay clock never runs ahead of the wall clock and reaches it at the end: at
  `--speed 1` the recording starts now and every row is committed within one slice of its stamp
  (a live feed); at `--speed N` (N > 1) it starts (1 - 1/N) x its duration ago and catches up with
  the wall clock at its last commit. No row is ever stamped in the future, so the Gold job's
  future-skew guard drops none.

The replay keeps no position: a second run appends the recording again (with --shift-to-now, at
new times; without, as duplicates of the first run's rows).
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from flight_gold.core.config import ConfigError, GoldConfig
from flight_gold.core.errors import one_line
from flight_gold.core.times import iso
from flight_gold.feed.opensky import load_recording, to_silver
from flight_gold.feed.writer import append_silver
from flight_gold.lake.tables import open_table

log = logging.getLogger("flight_gold.feed.replay")

ALL_AT_ONCE_COMMIT_S = 60.0
CONTINUOUS_COMMIT_S = 10.0
# A commit the storage refuses is tried again after 1 s, then 2, 4... up to 30 s between tries.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


# -- building blocks ------------------------------------------------------------------------------


def recording_silver(
    minutes: float | None = None, path: str | None = None, silver: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The recording as Silver_ML rows in event-time order, cut to its first `minutes` of event
    time when given (rows stamped before first + minutes)."""
    df = silver if silver is not None else to_silver(load_recording(path))
    df = df.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    if minutes is not None and len(df):
        if minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {minutes}")
        end = df["event_timestamp"].iloc[0] + pd.Timedelta(minutes=minutes)
        df = df[df["event_timestamp"] < end].reset_index(drop=True)
    return df


def shifted(df: pd.DataFrame, seconds: int) -> pd.DataFrame:
    """A copy with every event_timestamp moved by a whole number of seconds."""
    out = df.copy()
    out["event_timestamp"] = out["event_timestamp"] + pd.Timedelta(seconds=int(seconds))
    return out


def slices(df: pd.DataFrame, every_s: float) -> Iterator[tuple[pd.Timestamp, pd.Timestamp, pd.DataFrame]]:
    """(slice start, slice end, rows) for each non-empty epoch-aligned slice of `every_s` seconds
    of event time, in order; `df` must be sorted by event_timestamp."""
    if every_s <= 0:
        raise ValueError(f"commit interval must be > 0 s, got {every_s}")
    if len(df) == 0:
        return
    step_us = int(round(every_s * 1_000_000))
    micros = df["event_timestamp"].astype("datetime64[us, UTC]").array.asi8
    buckets = micros // step_us
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], len(df)]
    for lo, hi in zip(starts, ends):
        start = pd.Timestamp(int(buckets[lo]) * step_us, unit="us", tz="UTC")
        yield start, start + pd.Timedelta(microseconds=step_us), df.iloc[lo:hi]


def _commit(part: pd.DataFrame, config: GoldConfig, start, end, stop: threading.Event | None = None) -> int:
    """Appends one slice; the rows committed (0 when `stop` was set while storage was down)."""
    version = _append_until_it_lands(part, config, stop or threading.Event())
    if version is _STOPPED:
        return 0
    ts = part["event_timestamp"]
    log.info(
        "commit version %s: %d rows, event time %s .. %s (slice %s .. %s)",
        version,
        len(part),
        iso(ts.iloc[0]),
        iso(ts.iloc[-1]),
        iso(start),
        iso(end),
    )
    return len(part)


_STOPPED = object()
_UNKNOWN = object()


def _append_until_it_lands(part: pd.DataFrame, config: GoldConfig, stop: threading.Event):
    """append_silver, tried again while the storage fails (an S3 server restarting: delta-rs
    gives up after ~3 s of refused connections), every RETRY_FIRST_S doubling to RETRY_MAX_S,
    until it lands or `stop` is set. Never twice: the feed is Silver_ML's only writer, so a
    table version past the one read before the first attempt is this slice's commit, whose reply
    was lost."""
    delay, before = RETRY_FIRST_S, _UNKNOWN
    while True:
        try:
            if before is _UNKNOWN:
                before = _table_version(config)
            return append_silver(part, config)
        except OSError as exc:
            failure = one_line(exc, chain=True)
        log.warning(
            "Silver_ML commit failed, storage unreachable? (%s): trying again in %.0f s", failure, delay
        )
        if stop.wait(delay):
            log.warning("stopped while the storage failed: the slice was not committed")
            return _STOPPED
        delay = min(delay * 2, RETRY_MAX_S)
        if before is _UNKNOWN:
            continue
        try:
            now = _table_version(config)
        except OSError:
            continue
        if now is not None and (before is None or now > before):
            log.info("the commit had landed (version %s) before its failure was reported", now)
            return now


def _table_version(config: GoldConfig) -> int | None:
    table = open_table(config.paths.silver_flights_ml, config)
    return None if table is None else table.version()


# -- the two modes --------------------------------------------------------------------------------


def replay_all_at_once(
    config: GoldConfig,
    minutes: float | None = None,
    shift_to_now: bool = False,
    commit_every_s: float = ALL_AT_ONCE_COMMIT_S,
    *,
    path: str | None = None,
    silver: pd.DataFrame | None = None,
) -> int:
    """Appends the recording (its first `minutes` when given) to Silver_ML in event-time order,
    one commit per `commit_every_s` seconds of event time; returns the number of rows written.
    With shift_to_now the recording ends now. `silver` short-cuts loading the recording."""
    df = recording_silver(minutes, path, silver)
    if shift_to_now and len(df):
        now = pd.Timestamp.now(tz="UTC")
        df = shifted(df, math.floor((now - df["event_timestamp"].iloc[-1]).total_seconds()))
    rows = commits = 0
    for start, end, part in slices(df, commit_every_s):
        rows += _commit(part, config, start, end)
        commits += 1
    log.info("replayed %d rows in %d commits to %s", rows, commits, config.paths.silver_flights_ml)
    return rows


def replay_continuous(
    config: GoldConfig,
    minutes: float | None = None,
    shift_to_now: bool = False,
    speed: float = 1.0,
    commit_every_s: float = CONTINUOUS_COMMIT_S,
    *,
    path: str | None = None,
    silver: pd.DataFrame | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Appends the recording slice by slice following event time, `speed` times faster than real
    time, until it ends or `stop` is set (checked between commits); returns the rows written."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    stop = stop or threading.Event()
    df = recording_silver(minutes, path, silver)
    if not len(df):
        return 0
    start_wall = clock()
    first = df["event_timestamp"].iloc[0]
    if shift_to_now:
        duration = (df["event_timestamp"].iloc[-1] - first).total_seconds()
        origin = start_wall - duration * max(0.0, 1.0 - 1.0 / speed)
        df = shifted(df, math.floor(origin - first.timestamp()))
        first = df["event_timestamp"].iloc[0]
    origin_event = first.timestamp()
    last_event = df["event_timestamp"].iloc[-1].timestamp()
    rows = commits = 0
    for start, end, part in slices(df, commit_every_s):
        # A slice is committed once the replay clock has passed its end (or the last row).
        due = start_wall + (min(end.timestamp(), last_event + 1e-6) - origin_event) / speed
        if stop.wait(max(0.0, due - clock())):
            break
        written = _commit(part, config, start, end, stop)
        rows += written
        commits += 1 if written else 0
        if stop.is_set():
            break
    if stop.is_set():
        log.info("stopped after %d commits (%d rows)", commits, rows)
    else:
        log.info("replayed %d rows in %d commits to %s", rows, commits, config.paths.silver_flights_ml)
    return rows


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flight_gold.feed.replay",
        description="Replay the recorded OpenSky traffic around Paris (2021-10-07, 3 h, 213 aircraft) "
        "into the Silver_ML Delta table, one Delta commit per slice of event time.",
        epilog="--shift-to-now: with --all-at-once the recording ends now; in continuous mode the "
        "replay clock reaches the wall clock at the last commit (at --speed 1 the recording "
        "starts now) and no row is ever stamped in the future.",
    )
    parser.add_argument(
        "--lakehouse-root",
        metavar="URI",
        default=None,
        help="storage root, a folder or s3a://bucket/prefix (env LAKEHOUSE_ROOT; "
        f"default {GoldConfig.lakehouse_root})",
    )
    parser.add_argument(
        "--s3-endpoint", metavar="URL", default=None, help="S3 endpoint for an s3a:// root (env S3_ENDPOINT)"
    )
    parser.add_argument(
        "--all-at-once",
        action="store_true",
        help="append everything now, in event-time order, without waiting",
    )
    parser.add_argument(
        "--shift-to-now", action="store_true", help="move the timestamps to the present (see below)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        metavar="N",
        help="continuous mode: N times real time (default 1)",
    )
    parser.add_argument(
        "--commit-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"seconds of event time per commit (default {ALL_AT_ONCE_COMMIT_S:g} with "
        f"--all-at-once, {CONTINUOUS_COMMIT_S:g} in continuous mode)",
    )
    parser.add_argument(
        "--minutes", type=float, default=None, metavar="M", help="only the first M minutes of the recording"
    )
    parser.add_argument(
        "--recording",
        default=None,
        metavar="PATH",
        help="another recording in the same format (default: the packaged one)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from flight_gold.core.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.all_at_once and args.speed is not None:
        parser.error("--speed applies to continuous mode, not to --all-at-once")
    for name in ("speed", "commit_every", "minutes"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value:g}")
    try:
        config = GoldConfig.from_env(lakehouse_root=args.lakehouse_root, s3_endpoint=args.s3_endpoint)
    except ConfigError as exc:
        parser.error(str(exc))
    configure_logging()
    if args.all_at_once:
        replay_all_at_once(
            config,
            args.minutes,
            args.shift_to_now,
            args.commit_every or ALL_AT_ONCE_COMMIT_S,
            path=args.recording,
        )
        return 0

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("%s received: stopping after the commit under way", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    replay_continuous(
        config,
        args.minutes,
        args.shift_to_now,
        args.speed or 1.0,
        args.commit_every or CONTINUOUS_COMMIT_S,
        path=args.recording,
        stop=stop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
