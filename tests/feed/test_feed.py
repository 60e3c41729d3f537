"""The Silver_ML feed: upstream rules on tiny hand-made inputs, ICAO country blocks, the synthetic
generator, the Delta writer (read back by delta-rs and by Spark) and the replay of the recording."""

from __future__ import annotations

import json
import statistics
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flight_gold.feed import replay, synthetic
from flight_gold.feed.icao import ALLOCATIONS, countries_of, country_of
from flight_gold.feed.opensky import (
    SILVER_COLUMNS,
    feet_to_metres,
    flight_phase,
    knots_to_kmh,
    load_recording,
    round_half_up,
    to_silver,
    upstream_keep,
)
from flight_gold.feed.synthetic import generate, write_synthetic
from flight_gold.feed.writer import SilverWriteError, append_silver, to_arrow
from flight_gold.lake.schemas import SILVER_ML_ARROW_SCHEMA
from flight_gold.lake.tables import open_table

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z in epoch ms
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
LFPG = (49.0097, 2.5479)

PANDAS_DTYPES = {
    "timestamp[us, tz=UTC]": "datetime64[us, UTC]",
    "string": "object",
    "float": "float32",
    "double": "float64",
    "bool": "bool",
    "int32": "int32",
}


def record(icao24, seconds, altitude_ft, knots, onground=False, lat=48.5, lon=3.0, callsign="TEST1"):
    return {
        "timestamp": T0 + int(seconds * 1000),
        "icao24": icao24,
        "callsign": callsign,
        "latitude": lat,
        "longitude": lon,
        "altitude": altitude_ft,
        "groundspeed": knots,
        "track": 90.0,
        "vertical_rate": 0.0,
        "onground": onground,
        "squawk": "1000",
    }


def raw(records) -> pd.DataFrame:
    return pd.DataFrame.from_records(records)


def assert_silver_dtypes(df: pd.DataFrame) -> None:
    assert list(df.columns) == SILVER_ML_ARROW_SCHEMA.names
    for field in SILVER_ML_ARROW_SCHEMA:
        expected = "Int32" if field.name == "category" else PANDAS_DTYPES[str(field.type)]
        assert str(df[field.name].dtype) == expected, field.name


# -- units and range filter -----------------------------------------------------------------------


def test_feet_to_metres_as_float():
    metres = feet_to_metres([10000.0, 0.0, np.nan, -1000.0])
    assert metres.dtype == np.float32
    assert metres[0] == np.float32(3048.0)
    assert metres[1] == 0 and np.isnan(metres[2])
    assert metres[3] == np.float32(-304.8)


@pytest.mark.parametrize(
    "knots, kmh",
    [
        (100.0, 185.2),  # 100 x 1852/3600 m/s x 3.6 = 185.2 km/h
        (1.0, 1.85),  # 1.852 rounded to 2 decimals
        (0.5, 0.93),  # 0.926
        (325.0, 601.9),
        (0.0, 0.0),
    ],
)
def test_knots_to_kmh_via_metres_per_second_rounded_to_2_decimals(knots, kmh):
    assert knots_to_kmh([knots])[0] == kmh


def test_null_speed_stays_null():
    assert np.isnan(knots_to_kmh([np.nan])[0])


def test_rounding_is_half_up_like_spark():
    assert list(round_half_up([2.675, 1.005, 0.125, -2.675, 2.674999])) == [2.68, 1.01, 0.13, -2.68, 2.67]


@pytest.mark.parametrize(
    "altitude, velocity, kept",
    [
        (-500.0, 0.0, True),
        (15000.0, 1200.0, True),  # bounds are inclusive
        (-500.1, 500.0, False),
        (15000.1, 500.0, False),
        (5000.0, -0.01, False),
        (5000.0, 1200.01, False),
        (np.nan, 500.0, True),  # a null altitude is kept
        (5000.0, np.nan, False),  # a null velocity is not
    ],
)
def test_upstream_range_filter(altitude, velocity, kept):
    assert upstream_keep([altitude], [velocity])[0] == kept


def test_null_velocity_can_be_kept_on_request():
    assert upstream_keep([5000.0], [np.nan], keep_null_velocity=True)[0]


# -- flight phase ---------------------------------------------------------------------------------

N = None


@pytest.mark.parametrize(
    "on_ground, altitude, change, phase",
    [
        (True, 5000.0, 100.0, "GROUND"),  # on the ground wins over everything
        (True, N, N, "GROUND"),
        (False, 2999.0, 50.5, "TAKEOFF"),
        (False, 2999.0, 50.0, "CLIMB"),  # change > 50 is strict: 50 falls to CLIMB
        (False, 3000.0, 51.0, "CLIMB"),  # altitude < 3000 is strict
        (False, N, 60.0, "CLIMB"),  # null altitude: not TAKEOFF
        (False, 5000.0, 20.5, "CLIMB"),
        (False, 5000.0, 20.0, "TRANSITION"),  # change > 20 is strict, altitude <= 8000: no CRUISE
        (False, 8000.5, 20.0, "CRUISE"),  # |change| <= 20 inclusive
        (False, 9000.0, -20.0, "CRUISE"),
        (False, 9000.0, 0.0, "CRUISE"),
        (False, 8000.0, 0.0, "TRANSITION"),  # altitude > 8000 is strict
        (False, 9000.0, -20.5, "DESCENT"),
        (False, 1000.0, -300.0, "DESCENT"),
        (False, 5000.0, -20.0, "TRANSITION"),  # change < -20 is strict
        (False, 9000.0, N, "TRANSITION"),  # first observation: no change
        (False, N, N, "TRANSITION"),
    ],
)
def test_flight_phase_first_rule_that_matches(on_ground, altitude, change, phase):
    nan = lambda v: np.nan if v is None else v  # noqa: E731
    assert list(flight_phase([on_ground], [nan(altitude)], [nan(change)])) == [phase]


# -- the per-aircraft columns, by hand ------------------------------------------------------------

# Aircraft 3c6586 (Germany), one observation a second, 5000 ft + 500 ft each time (152.4 m), one
# null altitude, and one observation out of range that upstream drops before anything else.
A = "3c6586"
A_FEET = [5000.0, 5500.0, 6000.0, None, 7000.0, 7500.0, 8000.0]
A_METRES = [1524.0, 1676.4, 1828.8, None, 2133.6, 2286.0, 2438.4]
A_KNOTS = [200.0, 210.0, 220.0, 230.0, 240.0, 250.0, 260.0]
A_KMH = [370.4, 388.92, 407.44, 425.96, 444.48, 463.0, 481.52]


@pytest.fixture(scope="module")
def hand_made():
    records = [record(A, s, ft, kt) for s, (ft, kt) in enumerate(zip(A_FEET, A_KNOTS))]
    records.append(record(A, 3.5, 60000.0, 400.0))  # 18,288 m: dropped
    records.append(record(A, 4.5, 7200.0, 700.0))  # 1,296.4 km/h: dropped
    records.append(record(A, 5.5, 7300.0, None))  # null speed: dropped
    # Aircraft 380abc (France) on the ground at LFPG, then at a field with no known airport.
    records.append(record("380ABC", 2, None, 12.0, onground=True, lat=LFPG[0] + 0.01, lon=LFPG[1]))
    records.append(record("380ABC", 3, None, 0.0, onground=True, lat=45.0, lon=0.0))
    # An address in no block, airborne.
    records.append(record("b00001", 1, 30000.0, 450.0, callsign=""))
    shuffled = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
    return to_silver(raw(shuffled))


def test_silver_has_the_schema_columns_and_dtypes(hand_made):
    assert_silver_dtypes(hand_made)
    assert str(hand_made["event_timestamp"].dt.tz) == "UTC"
    assert pa.Table.from_pandas(hand_made, preserve_index=False).schema.equals(SILVER_ML_ARROW_SCHEMA)


def test_rows_out_of_range_are_dropped_and_rows_sorted_by_time(hand_made):
    assert len(hand_made) == 7 + 2 + 1
    assert hand_made["event_timestamp"].is_monotonic_increasing
    assert hand_made["event_timestamp"].iloc[0] == pd.Timestamp(T0, unit="ms", tz="UTC")


def test_units_prev_rank_and_changes_per_aircraft(hand_made):
    a = hand_made[hand_made["icao24"] == A].reset_index(drop=True)
    assert list(a["observation_rank"]) == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(a["altitude_meters"], np.array(A_METRES, dtype=float).astype(np.float32))
    assert list(a["velocity_kmh"]) == A_KMH
    np.testing.assert_allclose(
        a["prev_altitude"], [np.nan, 1524.0, 1676.4, 1828.8, np.nan, 2133.6, 2286.0], rtol=1e-7
    )
    np.testing.assert_allclose(a["prev_velocity"], [np.nan] + A_KMH[:-1])
    # The dropped rows between t=3 and t=6 are no previous observation of anyone.
    np.testing.assert_allclose(
        a["altitude_change"], [np.nan, 152.4, 152.4, np.nan, np.nan, 152.4, 152.4], atol=1e-3
    )
    np.testing.assert_allclose(a["velocity_change"], [np.nan] + [18.52] * 6, atol=1e-9)
    assert a["altitude_change"].dtype == np.float32


def test_rolling_statistics_over_the_last_six_observations(hand_made):
    a = hand_made[hand_made["icao24"] == A].reset_index(drop=True)
    m = A_METRES
    # Nulls are ignored; the 7th observation's window is observations 2..7.
    windows = [m[:1], m[:2], m[:3], m[:4], m[:5], m[:6], m[1:7]]
    avg = [statistics.fmean(v for v in w if v is not None) for w in windows]
    std = [
        statistics.stdev(v for v in w if v is not None) if sum(v is not None for v in w) > 1 else np.nan
        for w in windows
    ]
    np.testing.assert_allclose(a["rolling_avg_altitude"], avg, rtol=1e-6)
    assert avg[4] == pytest.approx(1790.7) and avg[6] == pytest.approx(2072.64)  # by hand
    np.testing.assert_allclose(a["rolling_std_altitude"], std, rtol=1e-5)
    assert np.isnan(a["rolling_std_altitude"][0])
    assert a["rolling_std_altitude"][1] == pytest.approx(152.4 / np.sqrt(2), rel=1e-5)
    kmh = [statistics.fmean(A_KMH[max(0, i - 5) : i + 1]) for i in range(7)]
    np.testing.assert_allclose(a["rolling_avg_velocity"], kmh)
    assert kmh[6] == pytest.approx(435.22)


def test_phases_countries_and_airports(hand_made):
    a = hand_made[hand_made["icao24"] == A].reset_index(drop=True)
    # +152.4 m below 3000 m: TAKEOFF; no change (first, or around the null altitude): TRANSITION.
    assert list(a["flight_phase"]) == [
        "TRANSITION",
        "TAKEOFF",
        "TAKEOFF",
        "TRANSITION",
        "TRANSITION",
        "TAKEOFF",
        "TAKEOFF",
    ]
    assert set(a["origin_country"]) == {"Germany"}
    assert a["airport_icao"].isna().all() and a["category"].isna().all()
    ground = hand_made[hand_made["icao24"] == "380abc"].reset_index(drop=True)
    assert list(ground["flight_phase"]) == ["GROUND", "GROUND"]
    assert list(ground["origin_country"]) == ["France", "France"]
    assert list(ground["observation_rank"]) == [1, 2]
    assert ground["airport_icao"].tolist() == ["LFPG", None]
    assert ground["airport_name"].tolist() == ["Paris Charles de Gaulle", None]
    assert ground["airport_country"].tolist() == ["France", None]
    assert ground["altitude_meters"].isna().all()
    unknown = hand_made[hand_made["icao24"] == "b00001"].iloc[0]
    assert unknown["origin_country"] is None and unknown["callsign"] is None


def test_an_empty_recording_gives_an_empty_silver_frame():
    empty = to_silver(raw([record(A, 0, 1000.0, 100.0)]).iloc[:0])
    assert len(empty) == 0
    assert_silver_dtypes(empty)


# -- ICAO address blocks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "icao24, country",
    [
        ("380000", "France"),
        ("3bffff", "France"),
        ("3c0000", "Germany"),
        ("3fffff", "Germany"),
        ("400000", "United Kingdom"),
        ("43ffff", "United Kingdom"),
        ("440000", "Austria"),
        ("a00000", "United States"),
        ("afffff", "United States"),
        ("A1B2C3", "United States"),
        ("c00000", "Canada"),
        ("0d0000", "Mexico"),
        ("e40000", "Brazil"),
        ("896000", "United Arab Emirates"),
        ("06a000", "Qatar"),
        ("710000", "Saudi Arabia"),
        ("780000", "China"),
        ("789000", "Hong Kong"),
        ("78a000", "China"),
        ("840000", "Japan"),
        ("800000", "India"),
        ("010000", "Egypt"),
        ("008000", "South Africa"),
        ("100000", "Russia"),
        (" 4ca1b2 ", "Ireland"),
    ],
)
def test_country_of_known_blocks(icao24, country):
    assert country_of(icao24) == country


@pytest.mark.parametrize(
    "icao24",
    [
        "000000",
        "2fffff",
        "b00000",
        "f00000",
        "ffffff",  # in no State's block
        "",
        "xyz",
        "gggggg",
        "3c65861",
        "~3c6586",
        None,
        3932160,
    ],
)
def test_country_of_unallocated_or_invalid_is_none(icao24):
    assert country_of(icao24) is None


def test_allocation_table_is_sorted_and_disjoint():
    for (s1, e1, _), (s2, _, _) in zip(ALLOCATIONS, ALLOCATIONS[1:]):
        assert s1 <= e1 < s2


def test_countries_of_matches_country_of():
    values = ["380000", None, "zz", "a00001", "380000", float("nan"), "789abc"]
    assert list(countries_of(values)) == [country_of(v) if isinstance(v, str) else None for v in values]


# -- synthetic generator --------------------------------------------------------------------------


def synth(**kw):
    args = dict(
        n_rows=3000,
        start=START,
        rate_per_s=20,
        aircraft=30,
        anomaly_share=0.1,
        late_share=0.05,
        out_of_order_share=0.05,
        seed=5,
    )
    args.update(kw)
    return generate(**args)


def test_synthetic_same_seed_same_frame_other_seed_other_frame():
    first = synth()
    pd.testing.assert_frame_equal(first, synth())
    other = synth(seed=6)
    assert not first["icao24"].equals(other["icao24"])
    assert not first["altitude_meters"].equals(other["altitude_meters"])


def test_synthetic_in_chunks_equals_one_run():
    whole = synth()
    parts = pd.concat([synth(n_rows=1000), synth(n_rows=2000, first_row=1000)], ignore_index=True)
    pd.testing.assert_frame_equal(whole, parts)


def test_synthetic_rows_follow_the_schema_and_the_upstream_rules():
    df = synth(n_rows=6000, late_share=0.0, out_of_order_share=0.0)
    assert_silver_dtypes(df)
    assert upstream_keep(df["altitude_meters"], df["velocity_kmh"]).all()
    assert list(countries_of(df["icao24"])) == list(df["origin_country"])
    assert (
        flight_phase(df["on_ground"], df["altitude_meters"], df["altitude_change"])
        == df["flight_phase"].to_numpy()
    ).all()
    assert set(df["flight_phase"]) == {"GROUND", "TAKEOFF", "CLIMB", "CRUISE", "DESCENT", "TRANSITION"}
    assert df["airport_icao"].notna().eq(df["on_ground"]).all()
    # Nominal time: row i at start + i / rate; aircraft i % 30; rank = i // 30 + 1.
    expected = pd.Timestamp(START) + pd.to_timedelta(np.arange(6000) / 20, unit="s")
    assert (df["event_timestamp"] == expected).all()
    assert (df["observation_rank"] == np.arange(6000) // 30 + 1).all()
    for _, rows in df.groupby("icao24"):
        rows = rows.reset_index(drop=True)
        np.testing.assert_array_equal(rows["prev_altitude"][1:], rows["altitude_meters"][:-1])
        np.testing.assert_array_equal(rows["prev_velocity"][1:], rows["velocity_kmh"][:-1])
        assert np.isnan(rows["prev_altitude"][0])
        last6 = rows["velocity_kmh"].rolling(6, min_periods=1).mean()
        np.testing.assert_allclose(rows["rolling_avg_velocity"], last6)


def test_synthetic_anomalies_late_and_out_of_order_rows():
    alt, vel = "altitude_meters", "velocity_kmh"

    def anomalies(df):
        return ((df[alt] < -100) | (df[alt] > 12000) | (df[vel] < 0) | (df[vel] > 1000)).sum()

    assert anomalies(synth(n_rows=20000, anomaly_share=0.0)) == 0
    assert anomalies(synth(n_rows=20000, anomaly_share=0.2)) == pytest.approx(4000, rel=0.1)
    nominal = pd.Timestamp(START) + pd.to_timedelta(np.arange(3000) / 20, unit="s")
    late = (nominal - synth(late_share=1.0, out_of_order_share=0.0)["event_timestamp"]).dt.total_seconds()
    assert late.between(60, 600).all()
    shuffled = synth(late_share=0.0, out_of_order_share=1.0)["event_timestamp"]
    jitter = (shuffled - nominal).dt.total_seconds()
    assert jitter.abs().max() <= 5 and (jitter.diff().dropna() < 0).any()


# -- Delta writer ---------------------------------------------------------------------------------


def test_append_silver_round_trip_with_deltalake(lakehouse, hand_made):
    rows = pd.concat([hand_made, synth(n_rows=500)], ignore_index=True)
    assert append_silver(rows.iloc[:200], lakehouse) == 0
    assert append_silver(rows.iloc[200:], lakehouse) == 1
    assert append_silver(rows.iloc[:0], lakehouse) is None  # nothing to write: no commit
    table = open_table(lakehouse.paths.silver_flights_ml, lakehouse)
    assert table.version() == 1
    assert pa.schema(table.schema().to_arrow()).equals(SILVER_ML_ARROW_SCHEMA)
    protocol = table.protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
    back = table.to_pyarrow_table()
    keys = [("event_timestamp", "ascending"), ("icao24", "ascending")]
    assert back.sort_by(keys).equals(to_arrow(rows).sort_by(keys))


def test_silver_ml_gets_a_delta_checkpoint_every_10_commits(lakehouse, hand_made):
    # Without checkpoints every reader (the Gold stream's start too) replays the whole log.
    rows = synth(n_rows=250)
    for i in range(25):
        assert append_silver(rows.iloc[i * 10 : (i + 1) * 10], lakehouse) == i
    log_dir = Path(lakehouse.paths.silver_flights_ml) / "_delta_log"
    assert sorted(p.name for p in log_dir.glob("*.checkpoint*.parquet")) == [
        f"{9:020d}.checkpoint.parquet",
        f"{19:020d}.checkpoint.parquet",
    ]
    assert json.loads((log_dir / "_last_checkpoint").read_text())["version"] == 19
    table = open_table(lakehouse.paths.silver_flights_ml, lakehouse)
    assert table.metadata().configuration == {"delta.checkpointInterval": "10"}
    assert table.to_pyarrow_table().num_rows == 250


def test_append_silver_refuses_a_frame_without_the_schema_columns(lakehouse, hand_made):
    with pytest.raises(SilverWriteError, match="flight_phase"):
        append_silver(hand_made.drop(columns=["flight_phase"]), lakehouse)
    assert open_table(lakehouse.paths.silver_flights_ml, lakehouse) is None


def test_the_replay_outlives_a_storage_outage_and_writes_each_slice_once(monkeypatch):
    """The S3 server down until the replay has seen a commit fail (delta-rs gives up after a few
    seconds of refused connections): it says so, tries again, and every slice lands exactly once
    when the server is back."""
    import logging
    import time

    from flight_gold.core.config import GoldConfig
    from support.s3_server import running_s3_server

    monkeypatch.setattr(replay, "RETRY_FIRST_S", 0.5)
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger = logging.getLogger("flight_gold.feed.replay")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    rows = synth(n_rows=600, rate_per_s=10)  # 60 s of event time: 6 slices of 10 s
    try:
        with running_s3_server() as server:
            server.create_bucket("outage")
            for key, value in server.env.items():
                monkeypatch.setenv(key, value)
            config = GoldConfig.from_env(lakehouse_root="s3a://outage")
            done = []
            # 20x: a slice every 0.5 s, the whole replay in about 3 s without the outage.
            feed = threading.Thread(
                target=lambda: done.append(replay.replay_continuous(config, speed=20, silver=rows))
            )
            feed.start()
            time.sleep(1.0)
            server.down()
            deadline = time.monotonic() + 120
            while not any("storage unreachable" in w for w in warnings) and time.monotonic() < deadline:
                time.sleep(0.2)
            server.up()
            feed.join(120)
            assert not feed.is_alive() and done == [len(rows)]
            back = open_table(config.paths.silver_flights_ml, config).to_pandas()
    finally:
        logger.removeHandler(handler)
    assert any("Silver_ML commit failed, storage unreachable? (" in w for w in warnings), warnings
    assert len(back) == len(rows)
    assert comparable(back).equals(comparable(rows[back.columns.tolist()]))


def test_a_commit_whose_reply_was_lost_is_not_written_again(lakehouse, monkeypatch):
    monkeypatch.setattr(replay, "RETRY_FIRST_S", 0.01)
    real = replay.append_silver
    calls = []

    def reply_lost(part, config):
        calls.append(len(part))
        version = real(part, config)
        if len(calls) == 1:
            raise OSError("Generic S3 error: connection reset by peer")
        return version

    monkeypatch.setattr(replay, "append_silver", reply_lost)
    rows = synth(n_rows=300, rate_per_s=10)
    assert replay.replay_all_at_once(lakehouse, silver=rows, commit_every_s=10) == len(rows)
    table = open_table(lakehouse.paths.silver_flights_ml, lakehouse)
    slices = len(list(replay.slices(replay.recording_silver(silver=rows), 10)))
    # One call per slice, the failed one included; one version per slice; every row once.
    assert len(calls) == slices == table.version() + 1 and slices >= 3
    assert len(table.to_pandas()) == len(rows)


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    ts = pd.to_datetime(out["event_timestamp"])
    out["event_timestamp"] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    out["event_timestamp"] = out["event_timestamp"].astype("datetime64[us, UTC]")
    for column in out.columns:
        if (
            column != "event_timestamp"
            and pd.api.types.is_numeric_dtype(out[column])
            and not pd.api.types.is_bool_dtype(out[column])
        ):
            out[column] = out[column].astype("float64")
        elif out[column].dtype == object:
            out[column] = out[column].where(out[column].notna(), None)
    return out.sort_values(["event_timestamp", "icao24"], kind="stable").reset_index(drop=True)


def test_spark_reads_the_table_in_batch_and_as_a_stream(spark, lakehouse, hand_made):
    rows = pd.concat([hand_made, synth(n_rows=400)], ignore_index=True)
    append_silver(rows.iloc[:100], lakehouse)
    append_silver(rows.iloc[100:], lakehouse)
    path = lakehouse.paths.silver_flights_ml
    batch = spark.read.format("delta").load(path)
    assert batch.columns == list(SILVER_COLUMNS)
    assert [f.dataType.simpleString() for f in batch.schema.fields][:3] == ["timestamp", "string", "string"]
    pd.testing.assert_frame_equal(comparable(batch.toPandas()), comparable(rows), check_dtype=False)

    query = (
        spark.readStream.format("delta")
        .load(path)
        .writeStream.format("memory")
        .queryName("feed_stream_check")
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination(120)
    finally:
        query.stop()
    assert spark.table("feed_stream_check").count() == len(rows)


# -- replay of the recording ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording():
    return load_recording()


@pytest.fixture(scope="module")
def recorded_silver(recording):
    return to_silver(recording)


def test_the_packaged_recording_converts(recording, recorded_silver):
    assert len(recording) == 284_505 and recording["icao24"].nunique() == 213
    df = recorded_silver
    assert len(df) == 246_938  # 464 rows above 15,000 m and 37,103 without speed dropped
    assert_silver_dtypes(df)
    assert df["event_timestamp"].is_monotonic_increasing
    assert df["origin_country"].notna().all() and df["origin_country"].nunique() == 37
    assert set(df["flight_phase"]) == {"GROUND", "TAKEOFF", "CLIMB", "CRUISE", "DESCENT", "TRANSITION"}
    assert (df["on_ground"] == (df["flight_phase"] == "GROUND")).all()
    assert set(df["airport_icao"].dropna()) >= {"LFPG", "LFPO", "LFPB"}
    assert df["airport_icao"].notna().sum() > 0.9 * df["on_ground"].sum()


def test_replay_all_at_once_one_commit_per_minute(lakehouse, recorded_silver):
    first_3 = recorded_silver[
        recorded_silver["event_timestamp"]
        < recorded_silver["event_timestamp"].iloc[0] + pd.Timedelta(minutes=3)
    ]
    before = pd.Timestamp.now(tz="UTC")
    rows = replay.replay_all_at_once(lakehouse, minutes=3, shift_to_now=True, silver=recorded_silver)
    assert rows == len(first_3)
    table = open_table(lakehouse.paths.silver_flights_ml, lakehouse)
    written = table.to_pandas()
    minutes = written["event_timestamp"].dt.floor("min")
    assert table.version() + 1 == minutes.nunique()  # one commit per minute of event time
    assert before - pd.Timedelta(seconds=2) <= written["event_timestamp"].max() <= pd.Timestamp.now(tz="UTC")
    shift = written["event_timestamp"].min() - first_3["event_timestamp"].iloc[0]
    assert shift.value % 1_000_000_000 == 0  # shifted by whole seconds


def test_replay_continuous_follows_event_time_and_stops(lakehouse, recorded_silver):
    started = pd.Timestamp.now(tz="UTC")
    rows = replay.replay_continuous(
        lakehouse, minutes=1, shift_to_now=True, speed=120, commit_every_s=10, silver=recorded_silver
    )
    took = (pd.Timestamp.now(tz="UTC") - started).total_seconds()
    table = open_table(lakehouse.paths.silver_flights_ml, lakehouse)
    written = table.to_pandas()
    assert rows == len(written) > 0 and table.version() + 1 >= 6
    assert 0.3 <= took < 30  # 60 s of events at 120x: ~0.5 s
    assert written["event_timestamp"].max() <= pd.Timestamp.now(tz="UTC")  # never in the future

    stop = threading.Event()
    stop.set()
    assert replay.replay_continuous(lakehouse, minutes=1, silver=recorded_silver, stop=stop) == 0
    assert open_table(lakehouse.paths.silver_flights_ml, lakehouse).version() == table.version()


def test_replay_slices_align_to_the_epoch():
    ts = pd.to_datetime(["2024-05-01T10:00:59Z", "2024-05-01T10:01:00Z", "2024-05-01T10:02:30Z"], utc=True)
    df = pd.DataFrame({"event_timestamp": ts.astype("datetime64[us, UTC]")})
    cut = [(start.isoformat(), len(part)) for start, _, part in replay.slices(df, 60)]
    assert cut == [
        ("2024-05-01T10:00:00+00:00", 1),
        ("2024-05-01T10:01:00+00:00", 1),
        ("2024-05-01T10:02:00+00:00", 1),
    ]


# -- command lines --------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [replay, synthetic])
def test_cli_help(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    assert "--lakehouse-root" in capsys.readouterr().out


def test_replay_cli_refuses_speed_with_all_at_once(capsys):
    with pytest.raises(SystemExit) as exit_:
        replay.main(["--all-at-once", "--speed", "5"])
    assert exit_.value.code == 2


def test_synthetic_cli_writes_in_commits(lakehouse, monkeypatch):
    monkeypatch.setattr("flight_gold.core.logs.configure_logging", lambda *a, **k: None)
    assert (
        synthetic.main(
            [
                "--rows",
                "1000",
                "--commit-rows",
                "400",
                "--lakehouse-root",
                lakehouse.lakehouse_root,
                "--start",
                "2024-05-01T10:00:00Z",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    table = open_table(lakehouse.paths.silver_flights_ml, lakehouse)
    assert table.version() == 2  # 400 + 400 + 200
    written = table.to_pandas()
    expected = generate(1000, START, seed=3)
    keys = ["event_timestamp", "icao24"]
    pd.testing.assert_frame_equal(comparable(written), comparable(expected), check_dtype=False)
    assert written[keys].duplicated().sum() == 0


def test_write_synthetic_defaults_to_ending_now(lakehouse):
    assert write_synthetic(lakehouse, 1200, commit_rows=1000, rate_per_s=600, aircraft=50) == 1200
    written = open_table(lakehouse.paths.silver_flights_ml, lakehouse).to_pandas()
    now = pd.Timestamp.now(tz="UTC")
    assert now - pd.Timedelta(seconds=30) < written["event_timestamp"].max() <= now
