"""Silver_ML fed a few minutes at a time, and Gold as a healthy stream would have written it by
then (the independent computation's closed windows), for the freshness tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from flight_gold.core.config import GoldConfig
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.lake.schemas import GOLD_ARROW_SCHEMAS
from flight_gold.lake.tables import open_table
from support.expected import expected_gold

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
ROWS_PER_MINUTE = 600


def feed(config: GoldConfig, minute: int, minutes: int, start: datetime = START) -> pd.DataFrame:
    """Minutes [minute, minute + minutes) of one synthetic traffic from `start`, as one commit."""
    rows = generate(
        ROWS_PER_MINUTE * minutes,
        start=start,
        rate_per_s=ROWS_PER_MINUTE / 60,
        aircraft=30,
        anomaly_share=0.05,
        seed=11,
        first_row=ROWS_PER_MINUTE * minute,
    )
    append_silver(rows, config)
    return rows


def catch_up(config: GoldConfig, silver: pd.DataFrame) -> None:
    """Appends the closed windows of `silver` that Gold lacks (one commit per table)."""
    for table, expected in expected_gold(silver).items():
        path = config.paths.gold_table(table)
        existing = open_table(path, config)
        have = set(existing.to_pandas(columns=["window_start"])["window_start"]) if existing else set()
        new = expected[~expected["window_start"].isin(have)]
        arrow = pa.Table.from_pandas(new, schema=GOLD_ARROW_SCHEMAS[table], preserve_index=False)
        write_deltalake(path, arrow, mode="append")
