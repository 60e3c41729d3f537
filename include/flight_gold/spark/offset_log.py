"""Spark's offset and commit logs in a streaming checkpoint, as the job's guards read them.

`offsets/<batch id>` and `commits/<batch id>`: a format version line (`v1`), then JSON lines. An
offset file holds the batch's metadata (its watermark and the session settings Spark keeps using)
and then one offset per source (the Gold queries have one, Delta's); a commit file holds the
watermark of the next batch."""

from __future__ import annotations

import json

from flight_gold.core.paths import join
from flight_gold.spark.files import FileAccess

OFFSETS = "offsets"
COMMITS = "commits"


def batch_ids(files: FileAccess, checkpoint: str, log: str = OFFSETS) -> list[int]:
    """The batch ids of the checkpoint's offset (or commit) log, ascending."""
    return sorted(int(n) for n in (files.list(join(checkpoint, log)) or []) if n.isdigit())


def log_file(checkpoint: str, batch_id: int, log: str = OFFSETS) -> str:
    return join(checkpoint, log, str(batch_id))


def read_entries(files: FileAccess, path: str) -> list[dict]:
    """The JSON lines of an offset or commit file after its version line. ValueError when one
    does not parse."""
    return [json.loads(line) for line in files.read(path).decode("utf-8", "replace").splitlines()[1:]]
