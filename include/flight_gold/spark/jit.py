"""The driver JVM's just-in-time compilers, run in the CPU time the real-time stream leaves idle.

A new driver compiles Spark's, Delta's and the generated code for minutes: in a quick run of the
real-time job (docs/performance.md, "The JIT compilers in the gaps") the compiler threads used
~45 s of CPU in the first four minutes of real time, as much as the batches themselves, and they
run while a batch runs, as the batch is what makes methods hot, so on two cores a batch waits for
them. Between two triggers the machine is mostly idle. With the compiler threads at a lower
scheduling priority (a higher nice value) a batch gets the cores first and the compilations
queue for the idle time after it.

Only once the real-time run has caught up (CaughtUpWatch: every query's last two batches took at
most half the trigger interval): during a catch-up every core is busy with batches, and
compilers starved there leave the backlog to interpreted code (a quick run's head start took 27 s
instead of 11 with the compilers niced from the JVM's start). The change is one way: an
unprivileged process may raise its threads' nice value, not lower it again.

HotSpot's thread names ("C1 CompilerThread0", "C2 CompilerThread1", cut by Linux to 15
characters) are not an interface of the JVM: this is the one place that relies on them, and
tests/spark/test_jit.py fails when a JVM names them otherwise. Linux only (/proc); elsewhere
nothing changes."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

COMPILER_THREAD_PREFIXES = ("C1 CompilerThre", "C2 CompilerThre")


def compiler_threads(pid: int) -> list[int]:
    """The thread ids of a HotSpot JVM's JIT compiler threads, from /proc/<pid>/task."""
    tids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # a thread that ended meanwhile
            continue
        if name.startswith(COMPILER_THREAD_PREFIXES):
            tids.append(int(task.name))
    return tids


def jvm_pid(spark) -> int:
    """The process id of the driver JVM (the parent under spark-submit, a child otherwise)."""
    return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())


def compile_in_background(pid: int, nice: int) -> int:
    """Raises the nice value of JVM `pid`'s compiler threads to `nice` (0: leaves them); returns
    how many threads it changed. Failing to is logged, never an error: only latency depends on
    it."""
    if nice <= 0 or not Path("/proc/self/task").is_dir():
        return 0
    try:
        tids = compiler_threads(pid)
        changed = 0
        for tid in tids:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
    except OSError as exc:
        log.warning("JIT compiler threads of JVM %d left at their priority: %s", pid, exc)
        return 0
    if not tids:
        log.warning("no JIT compiler threads found in JVM %d; their priority is left as it is", pid)
        return 0
    if changed:
        # A run restarted in the same JVM (a Silver_ML schema change) finds them there already.
        log.info(
            "JIT compilers of JVM %d (%d threads) at nice %d: they compile between triggers",
            pid,
            changed,
            nice,
        )
    return changed


# Batches in a row, per query, that must leave at least half the trigger interval idle.
QUICK_BATCHES = 2


class CaughtUpWatch:
    """A thread that calls `on_caught_up` once, when every query has caught up (its last
    QUICK_BATCHES batches each took at most half the trigger interval), then ends; a context
    manager around a real-time run."""

    def __init__(self, queries, interval_s: float, on_caught_up) -> None:
        self.queries, self.interval_s, self.on_caught_up = list(queries), interval_s, on_caught_up
        self.done = threading.Event()
        self._stop = threading.Event()
        self._streaks: dict[str, tuple[int, int]] = {}
        self._thread = threading.Thread(target=self._run, name="jit-caught-up-watch", daemon=True)

    def __enter__(self):
        if self.queries:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def caught_up(self) -> bool:
        return all(self._quick_streak(q) >= QUICK_BATCHES for q in self.queries)

    def _quick_streak(self, query) -> int:
        """Consecutive batches (of those seen) that took at most half the interval."""
        progress = query.lastProgress
        last_batch, streak = self._streaks.get(query.id, (-1, 0))
        if progress is None or progress["batchId"] == last_batch:
            return streak
        took_ms = (progress.get("durationMs") or {}).get("triggerExecution")
        quick = took_ms is not None and took_ms <= self.interval_s * 1000 / 2
        streak = streak + 1 if quick else 0
        self._streaks[query.id] = (progress["batchId"], streak)
        return streak

    def _run(self) -> None:
        while not self._stop.wait(max(self.interval_s / 2, 0.5)):
            try:
                if not self.caught_up():
                    continue
            except Exception as exc:  # a query stopping under the call
                log.debug("caught-up watch ended: %s", exc)
                return
            try:
                self.on_caught_up()
            except Exception as exc:  # only latency depends on it: never the run
                log.warning("caught up, but the JIT compilers were left as they are: %s", exc)
            self.done.set()
            return
