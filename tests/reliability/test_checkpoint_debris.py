"""A kill during the first batch of a new checkpoint must not block every restart.

Each case builds, by hand, a state a kill -9 leaves in a checkpoint with no committed batch
(delta-findings Q5: Spark refuses to run batch 0 unless offsets/, commits/ and state/ list
nothing, temporary files and empty subfolders included, and cannot parse an empty `metadata`),
then starts the job: it removes what no committed batch owns, says so, and Gold equals the
independent computation. A checkpoint with a logged batch is never cleaned: its `metadata` holds
the query id the Gold writer's idempotency rests on."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pandas as pd
import pytest

from support.expected import expected_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    assert_gold_is,
    lakehouse_config,
    run_in_process,
    silver_frame,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def tmp_name(name: str) -> str:
    return f".{name}.{uuid.uuid4()}.tmp"


def touch(path: Path, data: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def metadata() -> bytes:
    """A checkpoint's `metadata`: its query's id (each checkpoint has its own)."""
    return b'{"id":"%s"}' % str(uuid.uuid4()).encode()


# What a kill during batch 0 of a new checkpoint leaves -> what the job must report removing.
DEBRIS = {
    "offsets temp file": (lambda cp: touch(cp / "offsets" / tmp_name("0")), ["offsets/"]),
    "empty metadata": (lambda cp: touch(cp / "metadata"), ["metadata"]),
    "unparsable metadata": (lambda cp: touch(cp / "metadata", b'{"id": "3f2'), ["metadata"]),
    "state delta temp file": (
        lambda cp: touch(cp / "state" / "0" / "0" / tmp_name("1.delta")),
        ["state/"],
    ),
    "commits temp file": (lambda cp: touch(cp / "commits" / tmp_name("0")), ["commits/"]),
    "empty folders": (
        lambda cp: [(cp / d).mkdir(parents=True) for d in ("offsets", "commits", "state/0/0")],
        ["offsets/", "commits/", "state/"],
    ),
    "state metadata, no offset": (
        lambda cp: (
            touch(cp / "state" / "0" / "_metadata" / "metadata", b'{"operatorInfo":{}}'),
            touch(cp / "state" / "0" / "0" / "_metadata" / "schema", b"v2"),
        ),
        ["state/"],
    ),
    "metadata, offsets temp file and state temp file": (
        lambda cp: (
            touch(cp / "metadata", metadata()),
            touch(cp / "offsets" / tmp_name("0")),
            touch(cp / "state" / "0" / "0" / tmp_name("1.delta")),
        ),
        ["offsets/", "state/"],
    ),
    # Spark itself tolerates these: nothing to remove.
    "sources temp file": (lambda cp: touch(cp / "sources" / "0" / tmp_name("0")), []),
    "metadata only": (
        lambda cp: touch(cp / "metadata", metadata()),
        [],
    ),
}


@pytest.mark.parametrize("case", list(DEBRIS))
def test_a_first_batch_killed_leaves_nothing_that_blocks_the_next_start(spark, tmp_path, caplog, case):
    build, removed = DEBRIS[case]
    config = lakehouse_config(tmp_path / "lakehouse").replace(trigger="available-now")
    rows = silver_frame(900, START, 900, seed=51)
    append_silver(config, rows)
    for table in TABLES:
        build(Path(config.paths.checkpoint(table)))

    caplog.set_level(logging.INFO)
    assert run_in_process(spark, config) == 0

    for table in TABLES:
        said = [m for m in caplog.messages if m.startswith(f"checkpoint {config.paths.checkpoint(table)}: ")]
        if removed:
            assert said == [
                f"checkpoint {config.paths.checkpoint(table)}: removed {', '.join(removed)}, left by a "
                f"first batch that never committed (a kill while it started); the query starts it again"
            ], said
        else:
            assert said == []
    expected = expected_gold(rows)
    assert_gold_is(config, expected)


def test_a_checkpoint_with_a_batch_is_never_cleaned(spark, tmp_path, caplog):
    """A kill after batch N's offsets were logged and before its commit was (a temporary commit
    file left behind): the next start replays batch N under the same query id, the Gold writer
    skips what it had already appended, and `metadata` is untouched."""
    config = lakehouse_config(tmp_path / "lakehouse").replace(trigger="available-now")
    first = silver_frame(600, START, 600, seed=52)
    append_silver(config, first)
    assert run_in_process(spark, config) == 0
    second = silver_frame(600, START + pd.Timedelta(minutes=10), 600, seed=53)
    append_silver(config, second)
    assert run_in_process(spark, config) == 0
    metadata = {}
    for table in TABLES:
        checkpoint = Path(config.paths.checkpoint(table))
        newest = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
        (checkpoint / "commits" / str(newest)).unlink()
        touch(checkpoint / "commits" / tmp_name(str(newest)))
        metadata[table] = (checkpoint / "metadata").read_bytes()

    caplog.set_level(logging.INFO)
    assert run_in_process(spark, config) == 0

    assert not [m for m in caplog.messages if ": removed " in m]
    expected = expected_gold(pd.concat([first, second], ignore_index=True))
    assert_gold_is(config, expected)
    for table in TABLES:
        assert (Path(config.paths.checkpoint(table)) / "metadata").read_bytes() == metadata[table]
