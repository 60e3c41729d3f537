"""The job's per-batch metrics table without Spark: buffered appends, the hourly upkeep (rows past
the retention deleted, small files compacted and vacuumed, the log checkpointed) and the reads the
dashboard makes."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
from deltalake import DeltaTable

from flight_gold.core.config import GoldConfig
from flight_gold.lake import metrics
from flight_gold.lake.metrics import SCHEMA, MetricsWriter, metrics_path, read_metrics

NOW = datetime(2024, 5, 8, 12, 0, tzinfo=UTC)


def row(at: datetime, query: str, batch_id: int) -> dict:
    values = {f.name: batch_id for f in SCHEMA if f.type == "int64"}
    values.update(
        batch_time=at,
        query=query,
        run_id="r1",
        input_rows_per_second=1.5 * batch_id,
        processed_rows_per_second=2.5 * batch_id,
        watermark=at - timedelta(minutes=2),
    )
    return values


def test_rows_are_appended_per_flush_and_read_back_by_time_range(tmp_path):
    config = GoldConfig.from_env({}, lakehouse_root=str(tmp_path))
    writer = MetricsWriter(config)
    assert writer.flush() == 0 and read_metrics(config, NOW - timedelta(days=1), NOW) is None
    for k in range(3):
        writer.add(row(NOW - timedelta(minutes=10 - k), "flight_phase_counts", k))
        writer.add(row(NOW - timedelta(minutes=10 - k), "anomaly_alerts", k))
    assert writer.flush() == 6
    writer.add(row(NOW - timedelta(minutes=1), "anomaly_alerts", 3))
    writer.close()
    dt = DeltaTable(metrics_path(config))
    assert metrics_path(config) == f"{tmp_path}/_metrics/gold_stream_progress"
    assert dt.version() == 1 and dt.metadata().configuration == {
        "delta.logRetentionDuration": "interval 1 days",
        "delta.deletedFileRetentionDuration": "interval 1 hours",
    }
    window = read_metrics(config, NOW - timedelta(minutes=9), NOW - timedelta(minutes=1))
    assert window.schema == SCHEMA
    assert list(zip(window["query"].to_pylist(), window["batch_id"].to_pylist())) == [
        ("anomaly_alerts", 1),
        ("flight_phase_counts", 1),
        ("anomaly_alerts", 2),
        ("flight_phase_counts", 2),
    ]


def test_upkeep_trims_compacts_and_vacuums(tmp_path, monkeypatch):
    config = GoldConfig.from_env({}, lakehouse_root=str(tmp_path), metrics_retention="7 days")
    writer = MetricsWriter(config)
    # Nine days of rows, one commit (one small file) each.
    for day in range(9, 0, -1):
        writer.add(row(NOW - timedelta(days=day, minutes=-1), "flight_phase_counts", day))
        writer.flush()
    folder = metrics_path(config)
    assert len([n for n in os.listdir(folder) if n.endswith(".parquet")]) == 9

    report = writer.upkeep(now=NOW)

    dt = DeltaTable(folder)
    kept = dt.to_pyarrow_table()
    # Days 9 and 8 are older than 7 days: gone; the 7 others compacted into one file.
    assert sorted(kept["batch_id"].to_pylist()) == [1, 2, 3, 4, 5, 6, 7]
    assert pc.min(kept["batch_time"]).as_py() == NOW - timedelta(days=7, minutes=-1)
    assert (report["rows_deleted"], report["files_compacted"], report["files_vacuumed"]) == (2, 7, 0)
    assert len(dt.file_uris()) == 1
    # The removed files go once they are VACUUM_RETENTION_HOURS old (the next upkeep); here at once.
    monkeypatch.setattr(metrics, "VACUUM_RETENTION_HOURS", 0)
    later = MetricsWriter(config).upkeep(now=NOW)
    assert (later["rows_deleted"], later["files_compacted"], later["files_vacuumed"]) == (0, 0, 9)
    assert [n for n in os.listdir(folder) if n.endswith(".parquet")] == [os.path.basename(dt.file_uris()[0])]
    assert [c["operation"] for c in DeltaTable(folder).history(5)] == [
        "VACUUM END",
        "VACUUM START",
        "OPTIMIZE",
        "DELETE",
        "WRITE",
    ]
