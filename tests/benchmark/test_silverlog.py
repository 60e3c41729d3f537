"""The restart benchmark's Silver_ML fixture (bench/silverlog.py): a log written by hand that a
Delta reader takes for the table it describes."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.compute as pc
from deltalake import DeltaTable

from bench.silverlog import COMMIT_SECONDS, ROWS, START, SilverLog


def test_the_hand_written_log_is_a_delta_table_with_its_checkpoints(tmp_path):
    path = tmp_path / "flights_ml"
    silver = SilverLog(path, checkpoint_every=10)
    silver.append_commits(25)
    silver.append_commits(240)  # versions 25-264: checkpoints at 30 ... 200, then the newest (260)
    log_dir = path / "_delta_log"
    checkpoints = sorted(int(p.name[:20]) for p in log_dir.glob("*.checkpoint.parquet"))
    assert checkpoints == [*range(10, 201, 10), 260]
    assert json.loads((log_dir / "_last_checkpoint").read_text())["version"] == 260
    table = DeltaTable(str(path))
    assert table.version() == 264
    rows = table.to_pyarrow_table()
    assert rows.num_rows == 265 * ROWS
    times = pc.unique(rows.column("event_timestamp")).to_pylist()
    assert min(times) == START.to_pydatetime()
    last = (
        START
        + pd.Timedelta(seconds=COMMIT_SECONDS * 264)
        + pd.Timedelta(seconds=COMMIT_SECONDS * (ROWS - 1) / ROWS)
    )
    assert max(times) == last.to_pydatetime()
