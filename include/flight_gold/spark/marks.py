"""Which micro-batch wrote a Gold commit, read straight from the table's `_delta_log`.

Each Gold append carries a mark in its commitInfo.userMetadata: {"gold_query_id": the query's id
(its checkpoint's), "gold_batch_id": the micro-batch}. The Gold table has exactly one writer
(the stream, which also compacts it in the same thread), so the newest commit that wrote rows
tells which batch was committed last: a batch replayed after a crash was already written iff the
newest mark is its query's with a batch id at or above it. Tables written before the mark
existed carry Delta's txn action (appId, version) instead; it counts the same.

This replaces Delta's own check (txnAppId/txnVersion), which Delta 4.4 answers with a full state
reconstruction of the table on every batch that writes (snapshot.setTransactions: ~1.2 s)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flight_gold.core.paths import delta_commit, delta_log
from flight_gold.spark.files import FileAccess, commits_newest_first

QUERY_KEY, BATCH_KEY = "gold_query_id", "gold_batch_id"
# Commits that only rewrite or describe files (compaction, VACUUM's log entries, properties).
NO_DATA_OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES")


@dataclass(frozen=True)
class Mark:
    query_id: str | None
    batch_id: int | None
    version: int


class LogUnansweredError(RuntimeError):
    """The log's JSON commits were cleaned up before a commit that wrote rows was found."""


def user_metadata(query_id: str, batch_id: int) -> str:
    return json.dumps({QUERY_KEY: query_id, BATCH_KEY: int(batch_id)}, sort_keys=True)


def commit_mark(actions: list[dict]) -> tuple[str | None, int | None] | None:
    """(query id, batch id) of a commit that added rows; (None, None) for rows added without a
    mark (another writer); None for a commit that added no rows."""
    info = next((a["commitInfo"] or {} for a in actions if "commitInfo" in a), {})
    for action in actions:
        if "txn" in action:
            return str(action["txn"]["appId"]), int(action["txn"]["version"])
    if info.get("userMetadata"):
        try:
            meta = json.loads(info["userMetadata"])
        except ValueError:
            meta = None
        if isinstance(meta, dict) and QUERY_KEY in meta and BATCH_KEY in meta:
            return str(meta[QUERY_KEY]), int(meta[BATCH_KEY])
    if info.get("operation") in NO_DATA_OPERATIONS:
        return None
    adds = [a["add"] for a in actions if "add" in a and (a["add"] or {}).get("dataChange", True)]
    return (None, None) if adds else None


def _actions(files: FileAccess, path: str) -> list[dict]:
    return [json.loads(line) for line in files.read(path).decode("utf-8").splitlines() if line.strip()]


def newest_mark(files: FileAccess, table: str) -> Mark | None:
    """The mark of the newest commit that added rows (None when no commit ever did), walking back
    from the newest JSON commit: one or two small reads, as compactions are the only commits
    between appends. LogUnansweredError when the walk reaches a cleaned-up commit first."""
    versions = commits_newest_first(files, table)
    expected = versions[0] if versions else None
    for version in versions:
        if version != expected:
            break
        mark = commit_mark(_actions(files, delta_commit(table, version)))
        if mark is not None:
            return Mark(mark[0], mark[1], version)
        if version == 0:
            return None
        expected = version - 1
    if not versions:
        return None
    raise LogUnansweredError(f"{delta_log(table)}: no JSON commit before version {expected + 1} left to read")


def already_written(mark: Mark | None, query_id: str, batch_id: int) -> bool:
    """True when `batch_id` of `query_id` was committed: the newest rows are its query's, from
    that batch or a later one (batches commit in order, one writer)."""
    return (
        mark is not None
        and mark.query_id == query_id
        and mark.batch_id is not None
        and mark.batch_id >= batch_id
    )
