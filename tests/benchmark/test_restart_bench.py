"""The restart benchmark (bench/restart.py): its reset between two restarts (every restart must
resume where the base run stopped, or its backlog is not the one it reports), and the timeline
it reads from a restart's log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.restart import _restore, _save, phases, resume_version
from flight_gold.core.config import GoldConfig


def offset(checkpoint: Path, batch: int, version: int) -> None:
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    source = {"sourceVersion": 1, "reservoirId": "t", "reservoirVersion": version, "index": -1}
    (checkpoint / "offsets" / str(batch)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{json.dumps(source)}\n')


def test_every_restart_resumes_at_the_base_runs_version(tmp_path):
    root = tmp_path / "root"
    config = GoldConfig.from_env({}, lakehouse_root=str(root))
    silver = Path(config.paths.silver_flights_ml)
    (silver / "_delta_log").mkdir(parents=True)
    for name in config.queries:
        offset(Path(config.paths.checkpoint(name)), 1, 60)  # the base run read versions 0-59
        Path(config.paths.gold_table(name), "_delta_log").mkdir(parents=True)
    (root / "base.log").write_text("the base run's log\n")
    _save(root, tmp_path / "saved")
    assert resume_version(config) == 59

    # A restart runs on: its checkpoints move on, its Gold tables grow, Silver_ML grows.
    for name in config.queries:
        offset(Path(config.paths.checkpoint(name)), 2, 1060)
        Path(config.paths.gold_table(name), "part-1.parquet").write_bytes(b"rows")
    (silver / "_delta_log" / "00000000000000001060.json").write_text("{}\n")
    assert resume_version(config) == 1059

    _restore(root, tmp_path / "saved")
    assert resume_version(config) == 59
    for name in config.queries:
        assert sorted(p.name for p in Path(config.paths.checkpoint(name), "offsets").iterdir()) == ["1"]
        assert not Path(config.paths.gold_table(name), "part-1.parquet").exists()
    # Silver_ML is the one thing the restarts share.
    assert (silver / "_delta_log" / "00000000000000001060.json").exists()


def test_checkpoints_without_a_batch_are_an_error_not_a_backlog(tmp_path):
    config = GoldConfig.from_env({}, lakehouse_root=str(tmp_path / "root"))
    for name in config.queries:
        (Path(config.paths.checkpoint(name)) / "offsets").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="has a batch to resume from"):
        resume_version(config)


def test_the_restart_resumes_after_the_oldest_querys_version(tmp_path):
    config = GoldConfig.from_env({}, lakehouse_root=str(tmp_path / "root"))
    first, *others = config.queries
    offset(Path(config.paths.checkpoint(first)), 3, 1_000)
    for name in others:
        offset(Path(config.paths.checkpoint(name)), 1, 60)
    assert resume_version(config) == 59


def test_a_restarts_timeline_is_read_from_its_stamped_log(tmp_path):
    progress = {"query": "flight_phase_counts", "batch_id": 7, "input_rows": 3000, "batch_duration_ms": 4210}
    log = tmp_path / "restart.log"
    log.write_text(
        "    0.412 WARNING: Using incubator modules: jdk.incubator.vector\n"
        "    3.250 2026-12-01T11:40:21Z INFO flight_gold.spark.session: Spark 4.2.0 session flight-gold\n"
        "    9.870 2026-12-01T11:40:25Z INFO flight_gold.spark.queries: started query flight_phase_counts\n"
        "   10.220 2026-12-01T11:40:26Z INFO flight_gold.spark.queries: started query anomaly_alerts\n"
        f"   14.500 2026-12-01T11:40:30Z INFO flight_gold.streaming: gold_progress {json.dumps(progress)}\n"
        "   14.600 26/12/01 11:40:30 WARN MicroBatchExecution: a line of Spark's own\n"
    )
    assert phases(log) == {
        "session_s": 3.25,
        "queries_started_s": 10.22,
        "batches": [
            {
                "query": "flight_phase_counts",
                "batch_id": 7,
                "input_rows": 3000,
                "duration_ms": 4210,
                "logged_s": 14.5,
            }
        ],
    }
