"""Keeps Delta's cached snapshot of Silver_ML current between triggers.

At a trigger that finds a new Silver_ML commit, Delta's streaming source (delta-spark 4.4) brings
the table's DeltaLog up to date before it can plan the batch, and a new snapshot needs the table's
protocol and metadata: read from the version's checksum file (`.crc`) when the writer left one
(delta-spark does), otherwise with a Spark job over the newest checkpoint and the commits after it.
delta-rs writes no checksum file, so on a Silver_ML it writes that job ran inside every real-time
batch: 150-400 ms of a ~1 s batch on the bench's 2-core machine, in both queries (the second waits
for the first's snapshot lock). See docs/performance.md, "Silver_ML's snapshot between triggers".

The follower does that work just before each trigger: in the last seconds before it (LEAD_S;
Spark starts processing-time triggers at multiples of the interval since the epoch), a thread
checks a few times a second whether Silver_ML's next commit file exists (one `stat`, or one HEAD
request a second on S3; no listing), and when it does and no batch is running, updates the
DeltaLog that Delta caches per path and shares with the streams' source, with the call the source
itself makes (update_delta_log; resolving the table as a DataFrame if that call is gone). The
trigger then finds the snapshot current, unless a commit came in its last moments. The cost:
about one update per trigger, as before, plus one for each commit inside the lead; a batch that
starts during a load waits for it (Delta's snapshot lock) as it would have waited for its own,
and a load never starts during a batch, which updates the snapshot itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from py4j.protocol import Py4JError

from flight_gold.core.paths import delta_commit, delta_log, join
from flight_gold.spark.files import FileAccess

log = logging.getLogger("flight_gold.spark.silver_snapshot")

# How often the next commit file is looked for: a commit found later than this before a trigger
# is loaded by the trigger itself. Less often on S3, where each look is a billed request.
CHECK_EVERY_S = 0.25
CHECK_EVERY_S_S3 = 1.0
# After a failed load (storage unreachable), the next try waits this long.
RETRY_AFTER_S = 10.0
# Loads happen this long before a trigger at most (half the interval for short ones).
LEAD_S = 3.0


def seconds_to_next_trigger(interval_s: float, now: float) -> float:
    """Spark's processing-time trigger fires at the multiples of its interval since the epoch
    (when the batch before ended in time)."""
    interval_ms = max(1, round(interval_s * 1000))
    now_ms = int(now * 1000)
    return (interval_ms - now_ms % interval_ms) / 1000


def newest_version(files: FileAccess, table: str, since: int | None = None) -> int | None:
    """Silver_ML's newest committed version, found without listing its log: from `since` (or the
    version of its newest checkpoint, `_last_checkpoint`, or 0) forward while the next commit file
    exists. None when not even the first one does."""
    version = since
    if version is None:
        version, last_checkpoint = -1, join(delta_log(table), "_last_checkpoint")
        if files.exists(last_checkpoint):
            try:
                version = int(json.loads(files.read(last_checkpoint))["version"])
            except (ValueError, KeyError, TypeError):
                log.debug("%s is not readable; looking for commits from version 0", last_checkpoint)
    # From a checkpoint the table is at least at its version, whether or not its own commit file
    # is still there (log cleanup); from -1 the first probe is version 0.
    while files.exists(delta_commit(table, version + 1)):
        version += 1
    return version if version >= 0 else None


class SilverSnapshotFollower:
    """A thread that loads Silver_ML's newest snapshot into Delta's cache after each new commit
    (module docstring). A failed load is logged and retried at the next commit: the streams do
    the same update themselves, so nothing depends on it but the batches' latency."""

    def __init__(
        self,
        spark,
        files: FileAccess,
        table: str,
        every_s: float = CHECK_EVERY_S,
        busy=lambda: False,
        trigger_every_s: float | None = None,
        clock=time.time,
    ) -> None:
        self.spark = spark
        self.files = files
        self.table = table
        self.every_s = every_s
        # None: load each new commit whenever it comes (no trigger to wait for).
        self.trigger_every_s = trigger_every_s
        self.lead_s = None if trigger_every_s is None else min(LEAD_S, trigger_every_s / 2)
        self.clock = clock
        # "update": Delta's internal call (update_delta_log); "read": the public fallback.
        self.method = "update"
        # True while a batch runs: the load waits for its end (the batch updated the snapshot).
        self.busy = busy
        # The newest version loaded (None before the first load); read by tests and logs.
        self.loaded: int | None = None
        self.loads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SilverSnapshotFollower:
        log.info(
            "following %s's commits: each is loaded into Delta's snapshot %s",
            self.table,
            "at once" if self.lead_s is None else f"in the last {self.lead_s:g} s before a trigger",
        )
        self._thread = threading.Thread(target=self._run, name="silver-snapshot-follower", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            # A load stuck on unreachable storage must not hold up a stop: the thread is a daemon.
            self._thread.join(timeout=5)
        log.info("stopped following %s's commits after %d load(s)", self.table, self.loads)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.every_s):
            if not self._trigger_near():
                continue
            try:
                newest = newest_version(self.files, self.table, self.loaded)
                if newest is None or newest == self.loaded or self.busy():
                    continue
                self.load()
                self.loaded = newest
                if failing:
                    log.info("Silver_ML snapshot follower: loading %s again", self.table)
                failing = False
            except Exception as exc:  # a stopping session, a storage outage
                if self._stop.is_set():
                    return
                if not failing:
                    log.warning(
                        "Silver_ML snapshot follower: could not load %s (%s); the streams load it "
                        "themselves meanwhile",
                        self.table,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    )
                failing = True
                self._stop.wait(RETRY_AFTER_S)

    def _trigger_near(self) -> bool:
        if self.trigger_every_s is None:
            return True
        return seconds_to_next_trigger(self.trigger_every_s, self.clock()) <= self.lead_s

    def load(self) -> None:
        if self.method == "update":
            try:
                update_delta_log(self.spark, self.table)
            except Py4JError as exc:
                if "does not exist in the JVM" not in str(exc) and "Method update" not in str(exc):
                    raise
                log.warning(
                    "Delta's DeltaLog.update is not callable as this job calls it (delta-spark "
                    "upgraded?): loading %s as a table instead (a little more work per commit)",
                    self.table,
                )
                self.method = "read"
        if self.method == "read":
            # Resolving the table updates the same cached DeltaLog; no data is read.
            self.spark.read.format("delta").load(self.table)
        self.loads += 1


def update_delta_log(spark, table: str) -> None:
    """Delta's own update of its cached DeltaLog for the path, the call its streaming source
    makes at a trigger. Internal API (delta-spark 4.4: DeltaLog.forTable, update(stalenessAcceptable,
    checkIfUpdatedSinceTs, catalogTableOpt)), called only here; the public way, resolving the
    table as a DataFrame, does the same update plus an analysis of the relation (~200 ms more in
    a new JVM). tests/spark/test_silver_snapshot.py fails when an upgrade changes it."""
    jvm = spark.sparkContext._jvm
    none = jvm.scala.Option.empty()
    jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, table).update(False, none, none)
