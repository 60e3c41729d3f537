"""The Gold writer's "already written" decision, on hand-written `_delta_log` folders: which
commit's mark counts (the newest that added rows), and what each mark means for a replayed batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flight_gold.spark.files import LocalFiles
from flight_gold.spark.marks import LogUnansweredError, Mark, already_written, newest_mark, user_metadata

Q, OTHER = "9d3c-query", "other-query"


def commit(table: Path, version: int, operation: str, *, meta=None, txn=None, adds=1, data_change=True):
    lines = [
        {
            "commitInfo": {
                "timestamp": 1000 + version,
                "operation": operation,
                **({"userMetadata": meta} if meta else {}),
            }
        }
    ]
    if txn:
        lines.append({"txn": {"appId": txn[0], "version": txn[1], "lastUpdated": 1}})
    lines += [
        {"add": {"path": f"part-{version}-{i}.parquet", "dataChange": data_change}} for i in range(adds)
    ]
    log = table / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_marks_written_by_the_writer_are_read_back(tmp_path):
    assert json.loads(user_metadata(Q, 7)) == {"gold_query_id": Q, "gold_batch_id": 7}
    commit(tmp_path, 0, "CREATE TABLE", adds=0)
    assert newest_mark(LocalFiles(), str(tmp_path)) is None
    commit(tmp_path, 1, "WRITE", meta=user_metadata(Q, 4))
    commit(tmp_path, 2, "WRITE", meta=user_metadata(Q, 9))
    assert newest_mark(LocalFiles(), str(tmp_path)) == Mark(Q, 9, 2)


def test_compactions_and_vacuum_entries_are_walked_past(tmp_path):
    commit(tmp_path, 0, "CREATE TABLE", adds=0)
    commit(tmp_path, 1, "WRITE", meta=user_metadata(Q, 3))
    commit(tmp_path, 2, "OPTIMIZE", adds=1, data_change=False)
    commit(tmp_path, 3, "VACUUM START", adds=0)
    commit(tmp_path, 4, "VACUUM END", adds=0)
    assert newest_mark(LocalFiles(), str(tmp_path)) == Mark(Q, 3, 1)


def test_a_delta_txn_action_of_the_earlier_writer_counts_as_a_mark(tmp_path):
    commit(tmp_path, 0, "CREATE TABLE", adds=0)
    commit(tmp_path, 1, "WRITE", txn=(Q, 12))
    assert newest_mark(LocalFiles(), str(tmp_path)) == Mark(Q, 12, 1)


def test_rows_without_a_mark_belong_to_no_query(tmp_path):
    commit(tmp_path, 0, "CREATE TABLE", adds=0)
    commit(tmp_path, 1, "WRITE", meta=user_metadata(Q, 3))
    commit(tmp_path, 2, "WRITE")  # a hand-made append
    mark = newest_mark(LocalFiles(), str(tmp_path))
    assert mark == Mark(None, None, 2)
    assert not already_written(mark, Q, 3)


def test_a_log_cleaned_up_before_any_append_cannot_answer(tmp_path):
    # Versions 0-9 cleaned up after a checkpoint; 10-11 are compactions only.
    commit(tmp_path, 10, "OPTIMIZE", data_change=False)
    commit(tmp_path, 11, "OPTIMIZE", data_change=False)
    with pytest.raises(LogUnansweredError, match="no JSON commit before version 10"):
        newest_mark(LocalFiles(), str(tmp_path))


@pytest.mark.parametrize(
    ("mark", "query", "batch", "written"),
    [
        (None, Q, 0, False),  # nothing appended yet
        (Mark(Q, 5, 3), Q, 5, True),  # the replay of the last committed batch
        (Mark(Q, 5, 3), Q, 4, True),  # an older batch (cannot be replayed, but was written)
        (Mark(Q, 5, 3), Q, 6, False),  # the next batch
        (Mark(OTHER, 9, 3), Q, 2, False),  # rows of another checkpoint (a full refresh's)
        (Mark(None, None, 3), Q, 0, False),
    ],
)
def test_already_written(mark, query, batch, written):
    assert already_written(mark, query, batch) is written
