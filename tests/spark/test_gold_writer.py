"""The Gold tables' foreachBatch writer, called as Spark calls it (a DataFrame and a batch id) on a
real Delta table: a batch with rows is one commit marked with (query id, batch id), an empty batch
is no commit, a replayed batch is skipped."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from flight_gold.spark.schemas import GOLD_SCHEMAS
from flight_gold.spark.sink import GoldTableWriter, ensure_gold_table

TABLE = "flight_phase_counts"


def rows(spark, *phases_and_counts):
    data = [
        (datetime(2024, 5, 1, 10, m), datetime(2024, 5, 1, 10, m + 1), phase, count, 1000.0, 500.0)
        for m, (phase, count) in enumerate(phases_and_counts)
    ]
    return spark.createDataFrame(data, GOLD_SCHEMAS[TABLE])


def log_actions(path: str) -> list[dict]:
    """Every action of the table's JSON commits, in commit order."""
    return [
        json.loads(line)
        for commit in sorted((Path(path) / "_delta_log").glob("[0-9]" * 20 + ".json"))
        for line in commit.read_text().splitlines()
    ]


def txns(path: str) -> list[tuple[str, int]]:
    """(query id, batch id) of every commit's mark (commitInfo.userMetadata), in commit order."""
    marks = []
    for action in log_actions(path):
        if "commitInfo" in action and action["commitInfo"].get("userMetadata"):
            meta = json.loads(action["commitInfo"]["userMetadata"])
            marks.append((meta["gold_query_id"], meta["gold_batch_id"]))
        assert "txn" not in action  # no Delta txn check: it rebuilds the table's state
    return marks


def versions(spark, path: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history().count()


@pytest.fixture
def table(spark, lakehouse):
    ensure_gold_table(spark, lakehouse, TABLE)
    return lakehouse.paths.gold_table(TABLE)


def test_batches_with_rows_commit_once_each_and_empty_batches_not_at_all(spark, table):
    query_id = str(uuid.uuid4())
    writer = GoldTableWriter(table)
    writer.bind(SimpleNamespace(id=query_id))
    created = versions(spark, table)

    writer(rows(spark, ("CRUISE", 3), ("CLIMB", 2)), 0)
    writer(rows(spark).limit(0), 1)
    writer(rows(spark, ("DESCENT", 5)), 2)
    assert versions(spark, table) == created + 2
    assert txns(table) == [(query_id, 0), (query_id, 2)]

    # A crash after the commit and before the checkpoint recorded the batch: Spark calls the
    # writer of a new process again with the same batch id, which skips it.
    restarted = GoldTableWriter(table)
    restarted.bind(SimpleNamespace(id=query_id))
    restarted(rows(spark, ("DESCENT", 5)), 2)
    writer(rows(spark, ("DESCENT", 5)), 2)
    assert versions(spark, table) == created + 2
    got = sorted((r.flight_phase, r.flight_count) for r in spark.read.format("delta").load(table).collect())
    assert got == [("CLIMB", 2), ("CRUISE", 3), ("DESCENT", 5)]


def test_appends_keep_statistics_of_the_window_columns_only(spark, table):
    writer = GoldTableWriter(table)
    writer.bind(SimpleNamespace(id=str(uuid.uuid4())))
    writer(rows(spark, ("CRUISE", 3), ("CLIMB", 2)), 0)
    adds = [action["add"] for action in log_actions(table) if "add" in action]
    assert len(adds) == 1  # a batch's windows are one file, whatever the cores
    stats = [json.loads(add["stats"]) for add in adds]
    assert sum(s["numRecords"] for s in stats) == 2
    for s in stats:
        assert set(s["minValues"]) == set(s["maxValues"]) == {"window_start", "window_end"}
    assert min(s["minValues"]["window_start"] for s in stats).startswith("2024-05-01T10:00:00")
    assert max(s["maxValues"]["window_end"] for s in stats).startswith("2024-05-01T10:02:00")


def test_a_writer_never_bound_to_its_query_fails_clearly(spark, table, monkeypatch):
    writer = GoldTableWriter(table)
    monkeypatch.setattr(writer._bound, "wait", lambda timeout: False)
    with pytest.raises(RuntimeError, match="never bound to its query"):
        writer(rows(spark, ("CRUISE", 1)), 0)


def test_a_creation_killed_before_its_first_commit_is_started_again(spark, lakehouse):
    # What a kill -9 in DeltaTable.createIfNotExists left in the 20-kill loop: folders, no file.
    path = Path(lakehouse.paths.gold_table(TABLE))
    (path / "_delta_log" / "_staged_commits").mkdir(parents=True)
    ensure_gold_table(spark, lakehouse, TABLE)
    assert sorted(p.name for p in (path / "_delta_log").glob("*.json")) == ["00000000000000000000.json"]
    assert spark.read.format("delta").load(str(path)).schema == GOLD_SCHEMAS[TABLE]
    ensure_gold_table(spark, lakehouse, TABLE)  # an existing table is left as it is
    assert versions(spark, str(path)) == 1


def test_a_log_with_files_is_never_removed(spark, lakehouse):
    # Not a creation cut short: Delta's own error stands and the file stays.
    path = Path(lakehouse.paths.gold_table(TABLE))
    (path / "_delta_log").mkdir(parents=True)
    (path / "_delta_log" / "00000000000000000000.json").write_text("not json\n")
    with pytest.raises(Exception):  # noqa: B017 - Delta's own error, whatever Py4J wraps it in
        ensure_gold_table(spark, lakehouse, TABLE)
    assert (path / "_delta_log" / "00000000000000000000.json").read_text() == "not json\n"


def operations(path: str) -> list[str]:
    return [action["commitInfo"]["operation"] for action in log_actions(path) if "commitInfo" in action]


def test_the_writer_compacts_its_table_when_due_and_only_then(spark, table, caplog):
    import logging

    from flight_gold.spark.compaction import Compactor, forget, read_compaction_state
    from flight_gold.spark.files import LocalFiles

    forget(table)
    caplog.set_level(logging.INFO)
    # Due at once (interval ~0) as soon as two files were appended since the last compaction.
    writer = GoldTableWriter(table, Compactor(spark, LocalFiles(), table, TABLE, 1e-9))
    writer.bind(SimpleNamespace(id=str(uuid.uuid4())))
    writer(rows(spark, ("CRUISE", 3)), 0)
    assert operations(table) == ["CREATE TABLE", "WRITE"]
    writer(rows(spark, ("CLIMB", 2)), 1)
    assert operations(table) == ["CREATE TABLE", "WRITE", "WRITE", "OPTIMIZE"]
    assert [m for m in caplog.messages if m.startswith("compacted ")][0].startswith(
        "compacted flight_phase_counts: 2 files -> 1 in "
    )
    writer(rows(spark, ("DESCENT", 5)), 2)
    assert operations(table)[-1] == "WRITE"
    # What a new process reads back from the log: the compaction's time, one file since.
    state = read_compaction_state(LocalFiles(), table)
    optimize_ms = next(
        json.loads(line)["commitInfo"]["timestamp"]
        for line in (Path(table) / "_delta_log" / f"{3:020d}.json").read_text().splitlines()
        if "commitInfo" in line
    )
    assert (state.last_compaction, state.files_since) == (optimize_ms / 1000, 1)

    # Not due for an hour: appends only.
    forget(table)
    hourly = GoldTableWriter(table, Compactor(spark, LocalFiles(), table, TABLE, 3600))
    hourly.bind(SimpleNamespace(id=str(uuid.uuid4())))
    for batch in range(3):
        hourly(rows(spark, ("GROUND", batch + 1)), batch)
    assert operations(table)[4:] == ["WRITE"] * 4
    got = sorted((r.flight_phase, r.flight_count) for r in spark.read.format("delta").load(table).collect())
    assert got == [("CLIMB", 2), ("CRUISE", 3), ("DESCENT", 5), ("GROUND", 1), ("GROUND", 2), ("GROUND", 3)]
