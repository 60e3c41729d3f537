"""A Silver_ML table of many commits, written straight into its `_delta_log` (benchmark fixture).

Version 0 is written by delta-rs (so protocol and metaData are what the feed writes); every later
commit is one small parquet file (ROWS rows, event time increasing by COMMIT_SECONDS a commit) and
one JSON commit with an add action carrying stats, as delta-rs writes them. With
`checkpoint_every`, delta-rs writes a Delta checkpoint at each multiple of it among the first
commits (the resume point) and at the newest multiple after each append: a reader starts from
the newest checkpoint at or below the version it loads, and the stream reads the JSON commits
after its resume version whatever checkpoints exist.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA

START = pd.Timestamp("2024-05-01T00:00:00Z")
COMMIT_SECONDS = 5
ROWS = 3
PHASES = ["GROUND", "TAKEOFF", "CLIMB", "CRUISE", "DESCENT", "TRANSITION"]
COUNTRIES = ["France", "Germany", "Spain", "Italy"]
FIRST_CHECKPOINTS = 200  # versions below this get every checkpoint; later ones only the newest


class SilverLog:
    def __init__(self, path: Path, checkpoint_every: int | None = 10) -> None:
        self.path = Path(path)
        self.checkpoint_every = checkpoint_every
        self.version = -1
        self.rng = np.random.default_rng(7)

    def _rows(self, version: int) -> pa.Table:
        base = START + pd.Timedelta(seconds=COMMIT_SECONDS * version)
        times = [base + pd.Timedelta(seconds=COMMIT_SECONDS * i / ROWS) for i in range(ROWS)]
        columns = {f.name: pa.nulls(ROWS, f.type) for f in SILVER_ML_ARROW_SCHEMA}
        columns["event_timestamp"] = pa.array(
            times, type=SILVER_ML_ARROW_SCHEMA.field("event_timestamp").type
        )
        columns["icao24"] = pa.array([f"{self.rng.integers(0, 400):06x}" for _ in range(ROWS)])
        columns["origin_country"] = pa.array(self.rng.choice(COUNTRIES, ROWS).tolist())
        columns["flight_phase"] = pa.array(self.rng.choice(PHASES, ROWS).tolist())
        columns["altitude_meters"] = pa.array(self.rng.uniform(0, 12500, ROWS), type=pa.float32())
        columns["velocity_kmh"] = pa.array(np.round(self.rng.uniform(0, 1050, ROWS), 2))
        arrays = [columns[f.name].cast(f.type) for f in SILVER_ML_ARROW_SCHEMA]
        return pa.Table.from_arrays(arrays, schema=SILVER_ML_ARROW_SCHEMA)

    def append_commits(self, n: int) -> None:
        from deltalake import DeltaTable, write_deltalake

        first = self.version + 1
        if self.version < 0:
            write_deltalake(str(self.path), self._rows(0), mode="append")
            self.version, n = 0, n - 1
        log_dir = self.path / "_delta_log"
        for _ in range(n):
            self.version += 1
            self._write_commit(log_dir, self.version)
        if self.checkpoint_every:
            every = self.checkpoint_every
            wanted = [
                v for v in range(first, min(self.version, FIRST_CHECKPOINTS) + 1) if v and v % every == 0
            ]
            newest = self.version - self.version % every
            if newest and newest >= first and newest not in wanted:
                wanted.append(newest)
            for v in wanted:
                DeltaTable(str(self.path), version=v).create_checkpoint()

    def _write_commit(self, log_dir: Path, version: int) -> None:
        table = self._rows(version)
        name = f"part-{version:05d}-{uuid.uuid4()}-c000.snappy.parquet"
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
        (self.path / name).write_bytes(data)
        ts = table.column("event_timestamp")
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
        stats = {
            "numRecords": table.num_rows,
            "minValues": {"event_timestamp": ts[0].as_py().strftime(fmt)},
            "maxValues": {"event_timestamp": ts[-1].as_py().strftime(fmt)},
            "nullCount": {"event_timestamp": 0},
        }
        now = int(time.time() * 1000)
        actions = [
            {
                "add": {
                    "path": name,
                    "partitionValues": {},
                    "size": len(data),
                    "modificationTime": now,
                    "dataChange": True,
                    "stats": json.dumps(stats),
                }
            },
            {
                "commitInfo": {
                    "timestamp": now,
                    "operation": "WRITE",
                    "operationParameters": {"mode": "Append"},
                    "clientVersion": "bench-silverlog",
                }
            },
        ]
        target = log_dir / f"{version:020d}.json"
        tmp = log_dir / f".{version:020d}.json.tmp"
        tmp.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
        tmp.rename(target)
