"""The streaming job compacts its own Gold tables: one writer per Gold table's `_delta_log`.

Why in the stream: on S3, Delta's S3SingleDriverLogStore only keeps writers apart inside one JVM.
A second driver committing to the same table (an OPTIMIZE from the maintenance job) can write
the same `_delta_log/N.json` as a stream batch and silently replace it: that batch's rows and
its transaction mark vanish while the checkpoint has moved on. So the stream is the only process
that commits to a Gold table's log, on every root: it runs OPTIMIZE (bin-packing) itself, in the
query's own foreachBatch thread right after an append, so a compaction is serialised with that
table's appends. The maintenance job only VACUUMs (with VACUUM's own log commits turned off),
and runs OPTIMIZE only on a local root while it holds the table's checkpoint lock, that is while
no stream runs.

A compaction runs when the table's last one is older than GOLD_COMPACT_INTERVAL and at least two
files were appended since. The time of the last one is read once per table and process from the
newest commits of the log (no state reconstruction), then remembered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from flight_gold.core.errors import one_line
from flight_gold.core.paths import delta_commit
from flight_gold.spark.files import FileAccess, commits_newest_first

log = logging.getLogger("flight_gold.spark.compaction")

# Commits read back from the newest to find the last compaction; past this many, the table is
# taken as due (a compaction is harmless, and the log holds that many appends at least).
SCAN_LIMIT = 200
APPENDS = ("WRITE", "STREAMING UPDATE")


@dataclass
class CompactionState:
    """What one process knows about one Gold table: when it was last compacted (epoch seconds;
    0 when never within SCAN_LIMIT commits) and how many files were appended since."""

    last_compaction: float
    files_since: int


def read_compaction_state(files: FileAccess, table: str) -> CompactionState:
    """From the newest commits of `table`'s log: the last OPTIMIZE's time and the files appended
    after it. A table never compacted counts from its creation, so a new table is not compacted
    before one interval has passed."""
    versions = commits_newest_first(files, table)
    appended = 0
    for version in versions[:SCAN_LIMIT]:
        info, adds = _commit_summary(files, delta_commit(table, version))
        stamp = float(info.get("timestamp") or 0) / 1000
        if info.get("operation") == "OPTIMIZE":
            return CompactionState(stamp, appended)
        if info.get("operation") in APPENDS:
            appended += adds
        if version == 0:
            return CompactionState(stamp, appended)
    return CompactionState(0.0, appended)


def _commit_summary(files: FileAccess, path: str) -> tuple[dict, int]:
    info, adds = {}, 0
    try:
        lines = files.read(path).decode("utf-8", "replace").splitlines()
    except Exception:  # a commit removed by log cleanup meanwhile: nothing to learn from it
        return info, adds
    for line in lines:
        try:
            action = json.loads(line)
        except ValueError:
            continue
        if "commitInfo" in action:
            info = action["commitInfo"] or {}
        elif "add" in action and (action["add"] or {}).get("dataChange", True):
            adds += 1
    return info, adds


class Compactor:
    """Decides and runs the compaction of one Gold table after the writer's appends."""

    _states: dict[str, CompactionState] = {}
    _lock = threading.Lock()

    def __init__(self, spark, files: FileAccess, table: str, name: str, interval_s: float | None) -> None:
        self.spark, self.files, self.table, self.name, self.interval_s = spark, files, table, name, interval_s

    def appended(self, files_added: int = 1) -> None:
        """Called after each append: compacts when due. A failed compaction is logged and
        tried again one interval later; it never fails the batch, whose rows are committed."""
        if self.interval_s is None:
            return
        # Per process and table: the available-now-loop makes new writers every run.
        with Compactor._lock:
            state = Compactor._states.get(self.table)
            if state is None:
                # Read after this append's commit: the log already counts its files.
                state = Compactor._states[self.table] = read_compaction_state(self.files, self.table)
            else:
                state.files_since += files_added
        if state.files_since < 2 or time.time() - state.last_compaction < self.interval_s:
            return
        began = time.monotonic()
        try:
            metrics = optimize(self.spark, self.table)
        except Exception as exc:
            state.last_compaction = time.time()
            log.warning(
                "compaction of %s failed, next try in %.0f s: %s", self.name, self.interval_s, one_line(exc)
            )
            return
        state.last_compaction, state.files_since = time.time(), 0
        before = metrics["files_considered"]
        if not metrics["files_removed"]:
            log.debug("compaction of %s: nothing to compact (%d files)", self.name, before)
            return
        log.info(
            "compacted %s: %d files -> %d in %.1f s",
            self.name,
            before,
            before - metrics["files_removed"] + metrics["files_added"],
            time.monotonic() - began,
        )


def optimize(spark, path: str) -> dict[str, int]:
    """Bin-packing compaction (OPTIMIZE); returns the files and bytes it removed and added."""
    from delta.tables import DeltaTable

    metrics = DeltaTable.forPath(spark, path).optimize().executeCompaction().first()["metrics"]
    return {
        "files_considered": int(metrics["totalConsideredFiles"] or 0),
        "files_removed": int(metrics["numFilesRemoved"]),
        "files_added": int(metrics["numFilesAdded"]),
        "bytes_removed": int(metrics["filesRemoved"]["totalSize"] or 0),
        "bytes_added": int(metrics["filesAdded"]["totalSize"] or 0),
    }


def forget(table: str) -> None:
    """Drops what this process remembers of a table (after a full refresh rewrote it)."""
    with Compactor._lock:
        Compactor._states.pop(table, None)
