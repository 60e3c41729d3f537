"""Bad rows in Silver_ML: each is a counted, logged drop or a defined value, never a crash.

One Silver_ML table holds every kind of bad row; one job run (two micro-batches, one per Silver
version) processes it, then each outcome and each counter is checked against the independent
computation of tests/expected.py (per-batch watermarks replayed in pandas/DuckDB)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from flight_gold.spark.files import LocalFiles
from flight_gold.spark.guards import DeltaLogError, table_id_from_log, validate_delta_log
from support.expected import assert_gold_equal, drop_future, streamed_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    assert_gold_is,
    error_lines,
    gold,
    lakehouse_config,
    now_utc,
    progress,
    run_job,
    silver_frame,
    summary,
    tree,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

EXTRA = [pa.field("squawk", pa.string()), pa.field("feed_sequence", pa.int64())]
SCHEMA_WITH_EXTRAS = pa.schema(list(SILVER_ML_ARROW_SCHEMA) + EXTRA)
YEAR_2099 = pd.Timestamp("2099-01-01T00:00:00Z")


def _with_extras(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["squawk"] = "7000"
    df["feed_sequence"] = np.arange(len(df), dtype="int64")
    return df


def _bad(df: pd.DataFrame, row: int, **values) -> None:
    for column, value in values.items():
        df.loc[row, column] = value


def _version_0() -> pd.DataFrame:
    """10 minutes of traffic with every kind of bad row mixed in."""
    df = silver_frame(400, START, 600, seed=21)
    _bad(df, 10, event_timestamp=pd.NaT)
    _bad(df, 11, event_timestamp=pd.NaT, altitude_meters=np.nan)  # its NaN is not counted: row dropped
    _bad(df, 12, event_timestamp=pd.NaT)
    _bad(df, 20, altitude_meters=np.nan)
    _bad(df, 21, altitude_meters=np.nan)
    _bad(df, 22, velocity_kmh=np.inf)
    _bad(df, 23, altitude_meters=-np.inf)
    _bad(df, 24, altitude_meters=np.nan, velocity_kmh=np.nan)  # two values nulled
    _bad(df, 30, flight_phase=None)
    _bad(df, 31, flight_phase=None)
    _bad(df, 32, origin_country=None)
    _bad(df, 33, origin_country=None, flight_phase=None)
    _bad(df, 40, event_timestamp=YEAR_2099)
    _bad(df, 41, event_timestamp=YEAR_2099, velocity_kmh=np.nan)  # dropped: its NaN not counted
    return _with_extras(df)


def _version_1() -> pd.DataFrame:
    """The next 5 minutes, with a few more bad rows."""
    df = silver_frame(300, START + pd.Timedelta(minutes=10), 300, seed=22)
    _bad(df, 5, velocity_kmh=np.nan)
    _bad(df, 6, event_timestamp=pd.NaT)
    _bad(df, 7, event_timestamp=YEAR_2099)
    return _with_extras(df)


def _version_2(v0: pd.DataFrame) -> pd.DataFrame:
    """Two more minutes, plus rows that windows closed by version 0's watermarks refuse.

    Spark filters late rows of batch k with the watermark of batch k-1, so the rows late for
    batch 2 are those behind version 0's newest event time minus the delay (2 min for the phase
    counts, 6 min for the anomaly windows)."""
    newest = v0["event_timestamp"][v0["event_timestamp"] < YEAR_2099].max()
    anomaly_floor = (newest - pd.Timedelta(minutes=6)).floor("min")
    on_time = silver_frame(100, START + pd.Timedelta(minutes=15), 120, seed=28)
    late = pd.concat(
        [
            silver_frame(6, anomaly_floor + pd.Timedelta(seconds=5), 20, seed=23),  # late for phases only
            silver_frame(
                5, START + pd.Timedelta(seconds=30), 10, seed=24
            ),  # 10:00: late for phases, partly for anomalies
            silver_frame(4, START - pd.Timedelta(minutes=2), 20, seed=25),  # 09:58: late for both
        ],
        ignore_index=True,
    )
    return _with_extras(pd.concat([on_time, late], ignore_index=True))


@pytest.fixture(scope="module")
def bad_rows_run(tmp_path_factory):
    config = lakehouse_config(tmp_path_factory.mktemp("bad-rows") / "lakehouse")
    versions = [_version_0(), _version_1()]
    versions.append(_version_2(versions[0]))
    # One Silver version per micro-batch, so that version 2 meets the watermarks version 0 set. A
    # new checkpoint reads Silver_ML's snapshot in one batch whatever the limits say, so the
    # checkpoint starts on version 0 alone (a batch, then the no-data batch that closes its
    # windows); the next run reads one version per batch. The late-row filter each batch meets
    # is the same as in one run of three batches (versions 1 and 2 follow version 0's watermark).
    append_silver(config, versions[0], SCHEMA_WITH_EXTRAS)
    now = now_utc()
    first = run_job(config)
    for version in versions[1:]:
        append_silver(config, version, SCHEMA_WITH_EXTRAS)
    second = run_job(config, "--max-files-per-trigger", "1")
    run = SimpleNamespace(
        returncode=first.returncode or second.returncode, stderr=first.stderr + second.stderr, last=second
    )
    expected, late = streamed_gold([drop_future(v, now) for v in versions])
    # The counters of both runs together (each run's summary counts since it started).
    totals = {
        t: {k: summary(first.stderr)[t][k] + v for k, v in summary(second.stderr)[t].items()} for t in TABLES
    }
    return SimpleNamespace(
        config=config,
        versions=versions,
        v0=versions[0],
        run=run,
        expected=expected,
        late=late,
        totals=totals,
    )


def test_the_run_succeeds_in_one_batch_per_version(bad_rows_run):
    run = bad_rows_run.run
    assert run.returncode == 0, run.stderr[-4000:]
    assert error_lines(run.stderr) == []
    for table in TABLES:
        with_data = [
            line["input_rows"]
            for line in progress(run.stderr)
            if line["query"] == table and line["input_rows"]
        ]
        assert with_data == [len(v) for v in bad_rows_run.versions], with_data


def test_gold_equals_the_independent_computation(bad_rows_run):
    assert_gold_is(bad_rows_run.config, bad_rows_run.expected)


def test_null_phase_and_country_are_kept_under_explicit_keys(bad_rows_run):
    actual = gold(bad_rows_run.config)
    phases = actual["flight_phase_counts"]
    assert phases.loc[phases["flight_phase"] == "UNKNOWN", "flight_count"].sum() == 3
    countries = actual["anomaly_alerts"]
    # Each observation counts in its five sliding windows; both unknown-country rows are early
    # enough in the 10 minutes for all five of their windows to be closed and written.
    assert countries.loc[countries["origin_country"] == "Unknown", "total_observations"].sum() == 2 * 5


def test_nan_and_infinity_never_reach_gold(bad_rows_run):
    for table in TABLES:
        arrow = DeltaTable(bad_rows_run.config.paths.gold_table(table)).to_pyarrow_table()
        for name in arrow.column_names:
            column = arrow[name]
            if pa.types.is_floating(column.type):
                assert pc.sum(pc.is_nan(column)).as_py() in (0, None), f"{table}.{name} has NaN"
                assert pc.sum(pc.is_inf(column)).as_py() in (0, None), f"{table}.{name} has infinity"


def test_a_future_row_does_not_move_the_watermark(bad_rows_run):
    v0 = bad_rows_run.v0
    real_newest = v0["event_timestamp"][v0["event_timestamp"] < YEAR_2099].max()
    lines = [line for line in progress(bad_rows_run.run.stderr) if line["query"] == "flight_phase_counts"]
    batch_1 = next(line for line in lines if line["batch_id"] == 1)
    assert pd.Timestamp(batch_1["watermark"]) == (real_newest - pd.Timedelta(minutes=2)).floor("ms")


def test_every_drop_is_counted(bad_rows_run):
    run, late = bad_rows_run.run, bad_rows_run.late
    final = bad_rows_run.totals
    assert late["flight_phase_counts"] == [0, 0, 15] and late["anomaly_alerts"] == [0, 0, 9], late
    for table in TABLES:
        counters = final[table]
        assert counters["input_rows"] == sum(len(v) for v in bad_rows_run.versions)
        assert counters["dropped_null_timestamp"] == 4
        assert counters["dropped_future_timestamp"] == 3
        assert counters["nan_values_nulled"] == 7
        assert counters["late_rows_dropped"] == sum(late[table])
        # The last progress line carries the same cumulative counters (those of its run).
        last = [line for line in progress(run.last.stderr) if line["query"] == table][-1]
        assert last["cumulative"] == summary(run.last.stderr)[table]
        per_batch = [
            line["late_rows_dropped"]
            for line in progress(run.stderr)
            if line["query"] == table and line["input_rows"]
        ]
        assert per_batch == late[table]


@pytest.fixture(scope="module")
def late_only_run(bad_rows_run):
    """After the first run: a Silver version holding only rows older than both watermarks."""
    config = bad_rows_run.config
    before = {t: tree(config.paths.gold_table(t)) for t in TABLES}
    late = _with_extras(silver_frame(20, START - pd.Timedelta(minutes=5), 240, seed=26))
    append_silver(config, late, SCHEMA_WITH_EXTRAS)
    run = run_job(config)
    return SimpleNamespace(config=config, before=before, late=late, run=run)


def test_a_stream_of_only_late_rows_writes_nothing(bad_rows_run, late_only_run):
    run = late_only_run.run
    assert run.returncode == 0, run.stderr[-4000:]
    assert error_lines(run.stderr) == []
    actual = gold(late_only_run.config)
    for table in TABLES:
        assert_gold_equal(actual[table], bad_rows_run.expected[table], table)
        # Spark's writer leaves an empty Parquet file for a batch without output: no row is added.
        folder = Path(late_only_run.config.paths.gold_table(table))

        def data_files(t):
            return {k for k in t if k.endswith(".parquet") and not k.startswith("_delta_log")}

        added = data_files(tree(folder)) - data_files(late_only_run.before[table])
        assert [pq.read_metadata(folder / name).num_rows for name in added] == [0] * len(added)
        counters = summary(run.stderr)[table]
        assert counters["input_rows"] == counters["late_rows_dropped"] == len(late_only_run.late)


def test_a_truncated_silver_log_entry_is_a_clear_error_and_gold_is_untouched(late_only_run):
    config = late_only_run.config
    log_dir = Path(config.paths.silver_flights_ml) / "_delta_log"
    newest = sorted(log_dir.glob("*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    before = {
        "gold": tree(Path(config.lakehouse_root) / "gold"),
        "checkpoints": tree(Path(config.lakehouse_root) / "_checkpoints"),
    }
    run = run_job(config)
    assert run.returncode == 2, run.stderr[-4000:]
    errors = error_lines(run.stderr)
    assert len(errors) == 1 and str(newest) in errors[0] and "truncated or unparsable" in errors[0], errors
    assert before == {
        "gold": tree(Path(config.lakehouse_root) / "gold"),
        "checkpoints": tree(Path(config.lakehouse_root) / "_checkpoints"),
    }


def test_an_empty_silver_table_runs_and_writes_nothing(tmp_path):
    config = lakehouse_config(tmp_path / "lakehouse")
    write_deltalake(config.paths.silver_flights_ml, SILVER_ML_ARROW_SCHEMA.empty_table())
    run = run_job(config)
    assert run.returncode == 0, run.stderr[-4000:]
    assert error_lines(run.stderr) == []
    for table, frame in gold(config).items():
        assert len(frame) == 0, table


def _missing_column(df: pd.DataFrame):
    schema = pa.schema([f for f in SCHEMA_WITH_EXTRAS if f.name != "velocity_kmh"])
    return df.drop(columns=["velocity_kmh"]), schema, "velocity_kmh"


def _timestamp_as_text(df: pd.DataFrame):
    df = df.assign(event_timestamp=df["event_timestamp"].astype(str))
    schema = pa.schema(
        [
            pa.field("event_timestamp", pa.string()) if f.name == "event_timestamp" else f
            for f in SCHEMA_WITH_EXTRAS
        ]
    )
    return df, schema, "event_timestamp"


@pytest.mark.parametrize("break_schema", [_missing_column, _timestamp_as_text], ids=["missing", "mistyped"])
def test_a_needed_column_missing_or_mistyped_is_exit_code_2(tmp_path, break_schema):
    config = lakehouse_config(tmp_path / "lakehouse")
    df, schema, column = break_schema(_with_extras(silver_frame(50, START, 60, seed=27)))
    write_deltalake(
        config.paths.silver_flights_ml,
        pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False),
    )
    run = run_job(config)
    assert run.returncode == 2, run.stderr[-4000:]
    errors = error_lines(run.stderr)
    assert (
        len(errors) == 1 and errors[0].startswith("streaming_gold: error:") and f"'{column}'" in errors[0]
    ), errors
    assert not (Path(config.lakehouse_root) / "gold").exists()


# -- the _delta_log check itself, without a JVM ----------------------------------------------------


@pytest.fixture
def small_table(tmp_path) -> Path:
    path = tmp_path / "silver"
    for seed in range(3):
        write_deltalake(
            str(path),
            pa.Table.from_pandas(
                silver_frame(10, START, 60, seed)[SILVER_ML_ARROW_SCHEMA.names],
                schema=SILVER_ML_ARROW_SCHEMA,
                preserve_index=False,
            ),
            mode="append",
        )
    return path


def _commit(table: Path, version: int) -> Path:
    return table / "_delta_log" / f"{version:020d}.json"


def test_a_healthy_log_passes(small_table):
    assert validate_delta_log(LocalFiles(), str(small_table)) == 2


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-25]), "truncated or unparsable at line"),
        (lambda p: p.write_bytes(b"\x00\x17garbage\xff"), "not UTF-8"),
        (
            lambda p: p.write_text('{"add": {"path": "x"}}\nnot json at all\n'),
            "truncated or unparsable at line 2",
        ),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text('{"hello": 1}\n'), "is no Delta action"),
        (lambda p: p.unlink(), "missing commit"),
    ],
    ids=["truncated", "binary", "bad-line", "empty", "not-an-action", "missing"],
)
def test_a_damaged_entry_is_named(small_table, damage, message):
    damage(_commit(small_table, 1))
    with pytest.raises(DeltaLogError) as error:
        validate_delta_log(LocalFiles(), str(small_table))
    assert message in str(error.value)
    if "missing" not in message:
        assert str(_commit(small_table, 1)) in str(error.value)


def test_entries_delta_no_longer_reads_are_not_checked(small_table):
    """A commit older than the newest checkpoint is read neither by the snapshot nor by a stream
    that resumes after it; a stream resuming at it would read it."""
    DeltaTable(str(small_table)).create_checkpoint()
    _commit(small_table, 0).write_text("damaged, but superseded by the checkpoint")
    assert validate_delta_log(LocalFiles(), str(small_table)) == 2
    with pytest.raises(DeltaLogError, match="00000000000000000000.json"):
        validate_delta_log(LocalFiles(), str(small_table), from_version=0)


def test_a_truncated_log_checkpoint_is_named(small_table):
    DeltaTable(str(small_table)).create_checkpoint()
    checkpoint = next((small_table / "_delta_log").glob("*.checkpoint.parquet"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(DeltaLogError, match=str(checkpoint)):
        validate_delta_log(LocalFiles(), str(small_table))


def test_a_resuming_stream_checks_only_what_its_first_batch_reads(small_table):
    """From its resume version, the first batch reads at most maxFilesPerTrigger commits (one
    file each at least); later commits are read batch by batch, by Delta."""
    DeltaTable(str(small_table)).create_checkpoint()
    _commit(small_table, 1).write_text("damaged, two commits after the resume version")
    assert validate_delta_log(LocalFiles(), str(small_table), from_version=0, replay_span=0) == 2
    with pytest.raises(DeltaLogError, match="00000000000000000001.json"):
        validate_delta_log(LocalFiles(), str(small_table), from_version=0, replay_span=1)


def test_the_table_id_comes_from_the_log(small_table):
    table_id = DeltaTable(str(small_table)).metadata().id
    assert table_id_from_log(LocalFiles(), str(small_table)) == table_id
    DeltaTable(str(small_table)).create_checkpoint()
    _commit(small_table, 0).unlink()  # cleaned up after the checkpoint: its metaData answers
    assert table_id_from_log(LocalFiles(), str(small_table)) == table_id
    next((small_table / "_delta_log").glob("*.checkpoint.parquet")).unlink()
    assert table_id_from_log(LocalFiles(), str(small_table)) is None
