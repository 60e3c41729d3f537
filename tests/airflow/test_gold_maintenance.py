"""The DAG gold_maintenance run by Airflow (dag.test()): spark-submit of jobs/maintenance.py on a
temporary lakehouse, skips on an empty one, refusal of an unsafe retention, and its schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from flight_gold.airflow import maintenance as mt
from flight_gold.airflow.defaults import MAINTENANCE_DAG_ID
from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import GOLD_TABLE_NAMES as GOLD_TABLES
from flight_gold.lake.schemas import GOLD_ARROW_SCHEMAS

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "gold_maintenance.py"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
APPENDS = {"flight_phase_counts": 6, "anomaly_alerts": 4}


@pytest.fixture
def env(monkeypatch, tmp_path, airflow_db):
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(tmp_path / "lakehouse"))
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    for name in (mt.OPTIMIZE_SCHEDULE_ENV, mt.VACUUM_SCHEDULE_ENV):
        monkeypatch.delenv(name, raising=False)
    return GoldConfig.from_env()


def gold_rows(table: str, batch: int) -> pa.Table:
    """Three windows per append, as the stream would write them (values only need to be exact)."""
    records = []
    for i in range(3):
        start = T0 + timedelta(minutes=3 * batch + i)
        if table == "flight_phase_counts":
            records.append(
                dict(
                    window_start=start,
                    window_end=start + timedelta(minutes=1),
                    flight_phase="CRUISE",
                    flight_count=10 + batch,
                    avg_altitude=9000.5 + i,
                    avg_velocity=850.25,
                )
            )
        else:
            records.append(
                dict(
                    window_start=start,
                    window_end=start + timedelta(minutes=5),
                    origin_country="France",
                    total_observations=20,
                    altitude_anomalies=batch,
                    velocity_anomalies=1,
                    anomaly_rate=(batch + 1) / 20,
                    max_altitude=12100.0,
                    min_altitude=-50.0,
                    max_velocity=1010.0,
                    avg_altitude=8000.0,
                    avg_velocity=800.0,
                    stddev_altitude=100.0 + i,
                    stddev_velocity=None,
                )
            )
    return pa.Table.from_pylist(records, schema=GOLD_ARROW_SCHEMAS[table])


def build_gold(config: GoldConfig, tables=GOLD_TABLES) -> None:
    for table in tables:
        for batch in range(APPENDS[table]):
            write_deltalake(config.paths.gold_table(table), gold_rows(table, batch), mode="append")


def snapshot(path: str) -> tuple[int, dict[str, int], pd.DataFrame]:
    dt = DeltaTable(path)
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pydict()
    df = dt.to_pandas()
    return (
        dt.version(),
        dict(zip(actions["path"], actions["size_bytes"])),
        df.sort_values(list(df.columns)).reset_index(drop=True),
    )


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.get_dag(MAINTENANCE_DAG_ID)


def run(dag, **kwargs) -> tuple[str, dict[str, list[str]], object]:
    """dag.test(), then (run state, {task_id: [states by map index]}, maintain's return value)."""
    from airflow.utils.session import create_session

    dag_run = dag.test(**kwargs)
    with create_session() as session:
        states: dict[str, list[str]] = {}
        for ti in sorted(dag_run.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index)):
            states.setdefault(ti.task_id, []).append(str(ti.state))
        maintain = dag_run.get_task_instance("maintain", session=session)
        value = maintain.xcom_pull(task_ids="maintain", session=session)
        return str(dag_run.state), states, value


def test_dag_test_compacts_and_vacuums_a_small_lakehouse(env):
    build_gold(env)
    before = {t: snapshot(env.paths.gold_table(t)) for t in GOLD_TABLES}

    state, states, report = run(load_dag())

    assert state == "success"
    assert states == {"plan": ["success"], "check_table": ["success", "success"], "maintain": ["success"]}
    assert report["mode"] == "both" and report["retention_hours"] == 168
    assert report["summary"] == {
        "summary": True,
        "tables": 2,
        "ok": 2,
        "skipped": 0,
        "failed": 0,
        "exit_code": 0,
    }
    assert list(report["tables"]) == list(GOLD_TABLES)
    for table in GOLD_TABLES:
        version, files, rows = before[table]
        row = report["tables"][table]
        after_version, after_files, after_rows = snapshot(env.paths.gold_table(table))
        assert row["status"] == "ok", row
        assert (row["version_before"], row["files_before"], row["bytes_before"]) == (
            version,
            APPENDS[table],
            sum(files.values()),
        )
        assert len(files) == APPENDS[table]
        assert (row["optimize_files_removed"], row["optimize_files_added"]) == (APPENDS[table], 1)
        # Every removed file is minutes old: the 7-day retention keeps them all.
        assert row["vacuum_files_removed"] == 0
        assert (row["version_after"], row["files_after"], row["bytes_after"]) == (
            after_version,
            1,
            sum(after_files.values()),
        )
        assert after_version == version + 1  # OPTIMIZE; VACUUM writes no commit
        pd.testing.assert_frame_equal(after_rows, rows, check_exact=True)
        pd.testing.assert_frame_equal(
            snapshot_at(env.paths.gold_table(table), version), rows, check_exact=True
        )


def snapshot_at(path: str, version: int) -> pd.DataFrame:
    df = DeltaTable(path, version=version).to_pandas()
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_dag_test_skips_cleanly_on_an_empty_lakehouse(env):
    state, states, report = run(load_dag())
    assert state == "success"
    assert states == {"plan": ["success"], "check_table": ["skipped", "skipped"], "maintain": ["skipped"]}
    assert report is None
    assert not Path(env.lakehouse_root, "gold").exists()


def test_a_missing_table_is_skipped_and_the_other_one_maintained(env):
    build_gold(env, tables=("anomaly_alerts",))
    state, states, report = run(load_dag())
    assert state == "success"
    assert states == {"plan": ["success"], "check_table": ["skipped", "success"], "maintain": ["success"]}
    assert [(t, r["status"]) for t, r in report["tables"].items()] == [
        ("flight_phase_counts", "skipped"),
        ("anomaly_alerts", "ok"),
    ]
    assert "not a Delta table yet" in report["tables"]["flight_phase_counts"]["reason"]
    assert (
        report["tables"]["anomaly_alerts"]["files_before"],
        report["tables"]["anomaly_alerts"]["files_after"],
    ) == (APPENDS["anomaly_alerts"], 1)
    assert not Path(env.paths.flight_phase_counts).exists()


def test_a_retention_below_the_tables_is_refused_before_spark(env):
    build_gold(env, tables=("flight_phase_counts",))
    version = DeltaTable(env.paths.flight_phase_counts).version()
    state, states, _ = run(load_dag(), run_conf={"retention_hours": 24})
    assert state == "failed"
    assert states["check_table"] == ["failed", "skipped"]
    assert states["maintain"] == ["upstream_failed"]
    assert DeltaTable(env.paths.flight_phase_counts).version() == version


def test_the_report_lists_a_table_the_check_skipped(tmp_path):
    from flight_gold.spark.maintenance import REPORT_KEYS

    row = dict.fromkeys(REPORT_KEYS) | {
        "table": "anomaly_alerts",
        "status": "ok",
        "mode": "optimize",
        "optimize_files_removed": 4,
        "optimize_files_added": 1,
    }
    report_file = tmp_path / "report.json"
    report_file.write_text(json.dumps({"tables": [row], "summary": {}}))
    op = mt.GoldMaintenanceSubmitOperator(task_id="maintain")
    report = op._report(str(report_file), list(GOLD_TABLES), ["anomaly_alerts"], {"mode": "optimize"})
    assert list(report["tables"]) == list(GOLD_TABLES)
    assert report["tables"]["flight_phase_counts"]["status"] == "skipped"
    assert "not a Delta table yet" in report["tables"]["flight_phase_counts"]["reason"]
    assert (report["summary"]["ok"], report["summary"]["skipped"]) == (1, 1)


# -- schedule and form ---------------------------------------------------------------------------


def test_schedule_catchup_tags_and_params(env, monkeypatch):
    dag = load_dag()
    assert [t.expression for t in dag.timetable.timetables] == ["0 * * * *", "0 0 * * *"]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {"flight-gold", "maintenance"} <= set(dag.tags)
    assert dag.default_args["owner"] == "flight-gold"
    assert dag.params.dump() == {
        "operation": "auto",
        "tables": list(GOLD_TABLES),
        "retention_hours": 168,
        "allow_unsafe_retention": False,
    }
    monkeypatch.setenv(mt.OPTIMIZE_SCHEDULE_ENV, "*/20 * * * *")
    monkeypatch.setenv(mt.VACUUM_SCHEDULE_ENV, "30 3 * * *")
    dag = load_dag()
    assert [t.expression for t in dag.timetable.timetables] == ["*/20 * * * *", "30 3 * * *"]


@pytest.mark.parametrize(
    "operation, run_type, when, mode",
    [
        ("auto", "scheduled", datetime(2024, 5, 1, 13, 0, tzinfo=UTC), "optimize"),
        ("auto", "scheduled", datetime(2024, 5, 2, 0, 0, tzinfo=UTC), "both"),
        ("auto", "manual", datetime(2024, 5, 1, 13, 0, tzinfo=UTC), "both"),
        ("auto", "scheduled", None, "both"),
        ("vacuum", "scheduled", datetime(2024, 5, 1, 13, 0, tzinfo=UTC), "vacuum"),
        ("optimize", "manual", None, "optimize"),
    ],
)
def test_the_schedule_decides_what_an_auto_run_does(operation, run_type, when, mode):
    assert mt.resolve_mode(operation, run_type, when, ("@hourly", "@daily")) == mode


def test_bad_schedules_and_params_are_clear_errors():
    with pytest.raises(ValueError, match="GOLD_VACUUM_SCHEDULE must be a cron expression"):
        mt.schedules_from_env({mt.VACUUM_SCHEDULE_ENV: "daily at 3"})
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="tables must be among"):
        mt.plan_request({"tables": ["nope"]}, env={})
    assert mt.plan_request(
        {"tables": ["anomaly_alerts"], "retention_hours": 200}, "manual", None, env={}
    ) == [
        {"table": "anomaly_alerts", "mode": "both", "retention_hours": 200, "allow_unsafe_retention": False}
    ]
