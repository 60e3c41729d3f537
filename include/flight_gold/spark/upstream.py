"""Silver_ML changing under the running stream.

- A column added upstream (schema evolution): Delta 4.4 stops the query once with
  [DELTA_SCHEMA_CHANGED_WITH_VERSION] and asks for a restart (no option avoids it); restarting
  the same query on the same checkpoint continues with nothing lost or doubled, and the Gold
  transformations only read their five columns. The run loop (flight_gold.spark.runner) does
  that restart; `schema_change_version` recognises the error, by its text: PySpark gives no
  error condition for it. When the column lands between the moment a query's DataFrame is
  analysed and the moment its source starts (seen at the switch from the first-start run to the
  main run), Spark fails the batch instead with its own "Invalid batch" assertion (the source's
  columns differ from the plan's): the same restart, which analyses Silver_ML again, fixes it.
- A commit that removes or rewrites rows (DELETE, UPDATE, MERGE, an overwrite): the source
  skips it (skipChangeCommits, see flight_gold.spark.queries); SkippedCommitLog names each one
  in the job's log, from the commits the micro-batches covered.
"""

from __future__ import annotations

import json
import logging
import re
import threading

from flight_gold.core.paths import delta_commit
from flight_gold.spark.files import FileAccess

log = logging.getLogger("flight_gold.spark.upstream")

SCHEMA_CHANGED = "[DELTA_SCHEMA_CHANGED_WITH_VERSION]"
# MicroBatchExecution's check that a source's batch has the columns of the analysed plan.
PLAN_SCHEMA_STALE = "assertion failed: Invalid batch: "
_SCHEMA_VERSION = re.compile(r"schema change in version (\d+)")
# Silver_ML versions read back per progress event at most: a skipped commit is rare, a backlog
# of thousands of commits is not.
INSPECT_LIMIT = 100


def schema_change_version(exc) -> int | None:
    """The Silver_ML version whose schema change stopped a query, -1 when the version is not
    named, None when `exc` is another error."""
    text = str(exc)
    if PLAN_SCHEMA_STALE in text:
        return -1
    if SCHEMA_CHANGED not in text:
        return None
    match = _SCHEMA_VERSION.search(text)
    return int(match.group(1)) if match else -1


def _offset(raw) -> dict | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) and "reservoirVersion" in raw else None


class SkippedCommitLog:
    """Logs a warning for each Silver_ML commit the stream skipped as a non-append change."""

    def __init__(self, files: FileAccess, silver: str) -> None:
        self.files, self.silver = files, silver
        self._checked: set[int] = set()
        self._lock = threading.Lock()

    def observe(self, start_offset, end_offset) -> None:
        """The source's offsets of one micro-batch (JSON text or dicts)."""
        start, end = _offset(start_offset), _offset(end_offset)
        if start is None or end is None:
            # The first batch of a new checkpoint reads a snapshot: nothing in it was skipped.
            return
        low = int(start["reservoirVersion"]) + (1 if start.get("isStartingVersion") else 0)
        versions = range(low, int(end["reservoirVersion"]) + 1)
        with self._lock:
            todo = [v for v in versions if v not in self._checked]
        if len(todo) > INSPECT_LIMIT:
            log.warning(
                "Silver_ML versions %d-%d not inspected for skipped changes (%d versions in one batch)",
                todo[0],
                todo[-INSPECT_LIMIT - 1],
                len(todo) - INSPECT_LIMIT,
            )
            todo = todo[-INSPECT_LIMIT:]
        for version in todo:
            found = self._inspect(version)
            if found is None:
                continue
            with self._lock:
                if version in self._checked:
                    continue
                self._checked.add(version)
                if len(self._checked) > 10 * INSPECT_LIMIT:
                    self._checked = set(sorted(self._checked)[-INSPECT_LIMIT:])
            if found:
                log.warning(
                    "Silver_ML version %d (%s) removes or rewrites rows: the stream skips it. Rows "
                    "it removed stay counted in the windows that already hold them; rows it added "
                    "are not read (append new observations in commits of their own)",
                    version,
                    found,
                )

    def _inspect(self, version: int) -> str | None:
        """The operation of a commit that removes data, "" for any other commit, None when the
        commit cannot be read (not written yet)."""
        try:
            lines = self.files.read(delta_commit(self.silver, version)).decode("utf-8", "replace")
        except Exception:
            return None
        operation, removes = "unknown operation", False
        for line in lines.splitlines():
            try:
                action = json.loads(line)
            except ValueError:
                continue
            if "commitInfo" in action:
                operation = (action["commitInfo"] or {}).get("operation") or operation
            elif "remove" in action and (action["remove"] or {}).get("dataChange", True):
                removes = True
        return operation if removes else ""
