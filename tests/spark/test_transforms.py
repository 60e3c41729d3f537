"""The Gold transformations in batch mode, against rows worked out by hand."""

from __future__ import annotations

import contextlib
import io
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import Row

from flight_gold.core.config import AnomalyThresholds, GoldConfig
from flight_gold.spark.schemas import GOLD_SCHEMAS, SILVER_ML_SCHEMA
from flight_gold.spark.transforms import anomaly_alerts, clean_silver, flight_phase_counts

FLIGHT_PHASE_COUNTS_SCHEMA = GOLD_SCHEMAS["flight_phase_counts"]
ANOMALY_ALERTS_SCHEMA = GOLD_SCHEMAS["anomaly_alerts"]

CONFIG = GoldConfig.from_env({})


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def silver(spark, rows):
    """Silver_ML rows from (timestamp, phase, country, altitude, velocity) tuples, full schema."""
    full = []
    for event_ts, phase, country, altitude, velocity in rows:
        values = dict.fromkeys(SILVER_ML_SCHEMA.fieldNames())
        values.update(
            event_timestamp=event_ts,
            flight_phase=phase,
            origin_country=country,
            altitude_meters=altitude,
            velocity_kmh=velocity,
            icao24="abc123",
        )
        full.append(Row(**values))
    return spark.createDataFrame(full, SILVER_ML_SCHEMA)


def gold(df, config=CONFIG, transform=anomaly_alerts):
    return transform(clean_silver(df, config, observe=False), config)


def as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def rows_by_window(df):
    return {
        (as_utc(r.window_start), r.origin_country if "origin_country" in r else r.flight_phase): r
        for r in df.collect()
    }


@pytest.mark.parametrize(
    "altitude, velocity, altitude_anomaly, velocity_anomaly",
    [
        (-100.0, 500.0, 0, 0),  # bounds are exclusive
        (12000.0, 500.0, 0, 0),
        (5000.0, 0.0, 0, 0),
        (5000.0, 1000.0, 0, 0),
        (-100.5, 500.0, 1, 0),  # just beyond
        (12000.5, 500.0, 1, 0),
        (5000.0, -0.01, 0, 1),
        (5000.0, 1000.01, 0, 1),
        (None, 500.0, 0, 0),  # null is no anomaly
        (5000.0, None, 0, 0),
        (13000.0, 1100.0, 1, 1),  # both anomalies: one anomalous observation
    ],
)
def test_anomaly_bounds(spark, altitude, velocity, altitude_anomaly, velocity_anomaly):
    df = silver(
        spark,
        [
            (ts("2024-05-01T10:00:30"), "CRUISE", "France", altitude, velocity),
            (ts("2024-05-01T10:00:40"), "CRUISE", "France", 3000.0, 400.0),
        ],
    )
    result = rows_by_window(gold(df))
    row = result[(ts("2024-05-01T10:00:00"), "France")]
    assert row.total_observations == 2
    assert row.altitude_anomalies == altitude_anomaly
    assert row.velocity_anomalies == velocity_anomaly
    assert row.anomaly_rate == (1 if (altitude_anomaly or velocity_anomaly) else 0) / 2


def test_thresholds_are_configuration(spark):
    config = CONFIG.replace(thresholds=AnomalyThresholds(altitude_max_m=5000.0))
    df = silver(spark, [(ts("2024-05-01T10:00:30"), "CLIMB", "Spain", 6000.0, 400.0)])
    row = rows_by_window(gold(df, config))[(ts("2024-05-01T10:00:00"), "Spain")]
    assert (row.altitude_anomalies, row.anomaly_rate) == (1, 1.0)


def test_each_observation_lands_in_five_sliding_windows(spark):
    df = silver(spark, [(ts("2024-05-01T10:07:30"), "CRUISE", "Italy", 10000.0, 800.0)])
    windows = sorted((as_utc(r.window_start), as_utc(r.window_end)) for r in gold(df).collect())
    assert windows == [
        (ts(f"2024-05-01T10:0{m}:00"), ts(f"2024-05-01T10:{m + 5:02d}:00")) for m in range(3, 8)
    ]


def test_sliding_window_statistics(spark):
    # Three observations of Germany in [10:00, 10:01): hand-computed aggregates.
    df = silver(
        spark,
        [
            (ts("2024-05-01T10:00:00"), "CRUISE", "Germany", 11000.0, 850.0),
            (ts("2024-05-01T10:00:20"), "CRUISE", "Germany", 12500.0, 900.0),
            (ts("2024-05-01T10:00:59.999"), "DESCENT", "Germany", None, 1100.0),
        ],
    )
    result = rows_by_window(gold(df))
    assert len(result) == 5
    for start in ("09:56", "09:57", "09:58", "09:59", "10:00"):
        row = result[(ts(f"2024-05-01T{start}:00"), "Germany")]
        assert row.total_observations == 3
        assert (row.altitude_anomalies, row.velocity_anomalies) == (1, 1)
        assert row.anomaly_rate == pytest.approx(2 / 3)
        assert (row.max_altitude, row.min_altitude, row.max_velocity) == (12500.0, 11000.0, 1100.0)
        assert row.avg_altitude == pytest.approx(11750.0)
        assert row.avg_velocity == pytest.approx(950.0)
        # sample stddev: altitude of (11000, 12500) -> 1060.66..; velocity of (850, 900, 1100)
        assert row.stddev_altitude == pytest.approx(1060.6601717798212)
        assert row.stddev_velocity == pytest.approx(132.28756555322954)


def test_stddev_is_null_for_a_single_observation(spark):
    df = silver(spark, [(ts("2024-05-01T10:00:30"), "CRUISE", "Spain", 10000.0, 800.0)])
    for row in gold(df).collect():
        assert row.stddev_altitude is None and row.stddev_velocity is None
        assert row.avg_altitude == 10000.0 and row.total_observations == 1


def test_tumbling_window_boundaries(spark):
    df = silver(
        spark,
        [
            (ts("2024-05-01T10:00:59.999999"), "CLIMB", "France", 1000.0, 300.0),
            (ts("2024-05-01T10:01:00"), "CLIMB", "France", 2000.0, 400.0),  # exactly on the boundary
            (ts("2024-05-01T10:01:30"), "CLIMB", "France", None, 500.0),
            (ts("2024-05-01T10:01:40"), "GROUND", "France", 100.0, 20.0),
        ],
    )
    result = {
        (as_utc(r.window_start), as_utc(r.window_end), r.flight_phase): (
            r.flight_count,
            r.avg_altitude,
            r.avg_velocity,
        )
        for r in gold(df, transform=flight_phase_counts).collect()
    }
    assert result == {
        (ts("2024-05-01T10:00:00"), ts("2024-05-01T10:01:00"), "CLIMB"): (1, 1000.0, 300.0),
        (ts("2024-05-01T10:01:00"), ts("2024-05-01T10:02:00"), "CLIMB"): (2, 2000.0, 450.0),
        (ts("2024-05-01T10:01:00"), ts("2024-05-01T10:02:00"), "GROUND"): (1, 100.0, 20.0),
    }


def test_output_columns_order_and_types(spark):
    df = silver(spark, [(ts("2024-05-01T10:00:30"), "CRUISE", "Spain", 10000.0, 800.0)])
    assert (
        gold(df, transform=flight_phase_counts).schema.simpleString()
        == FLIGHT_PHASE_COUNTS_SCHEMA.simpleString()
    )
    assert gold(df).schema.simpleString() == ANOMALY_ALERTS_SCHEMA.simpleString()


def test_only_needed_columns_are_read_and_extra_columns_are_ignored(spark):
    df = silver(spark, [(ts("2024-05-01T10:00:30"), "CRUISE", "Spain", 10000.0, 800.0)])
    df = df.withColumn("added_upstream", df.icao24)
    cleaned = clean_silver(df, CONFIG, observe=False)
    assert cleaned.columns == [
        "event_timestamp",
        "flight_phase",
        "origin_country",
        "altitude_meters",
        "velocity_kmh",
    ]


def test_bad_values_become_defined_cases(spark):
    df = silver(
        spark,
        [
            (None, "CRUISE", "Spain", 10000.0, 800.0),  # dropped
            (ts("2099-01-01T00:00:00"), "CRUISE", "Spain", 10000.0, 800.0),  # bad clock: dropped
            (ts("2024-05-01T10:00:10"), None, None, float("nan"), float("inf")),
            (ts("2024-05-01T10:00:20"), "CRUISE", "Spain", 13000.0, 800.0),
        ],
    )
    phases = {
        r.flight_phase: (r.flight_count, r.avg_altitude, r.avg_velocity)
        for r in gold(df, transform=flight_phase_counts).collect()
    }
    assert phases == {"UNKNOWN": (1, None, None), "CRUISE": (1, 13000.0, 800.0)}
    countries = {
        (r.origin_country, r.total_observations, r.altitude_anomalies, r.velocity_anomalies)
        for r in gold(df).collect()
        if as_utc(r.window_start) == ts("2024-05-01T10:00:00")
    }
    assert countries == {("Unknown", 1, 0, 0), ("Spain", 1, 1, 0)}


def test_rows_further_ahead_than_the_skew_are_dropped_and_those_within_it_kept(spark):
    now = datetime.now(UTC).replace(microsecond=0)
    df = silver(
        spark,
        [
            (now + timedelta(seconds=30), "CRUISE", "Spain", 10000.0, 800.0),  # within 2 minutes: kept
            (now + timedelta(minutes=10), "CLIMB", "Spain", 10000.0, 800.0),  # beyond: dropped
            (now - timedelta(hours=1), "DESCENT", "Spain", 10000.0, 800.0),
        ],
    )
    config = GoldConfig.from_env({}, max_future_skew="2 minutes")
    kept = {r.flight_phase for r in clean_silver(df, config, observe=False).collect()}
    assert kept == {"CRUISE", "DESCENT"}


def test_the_cleaning_step_is_the_same_generated_code_whatever_the_time(spark):
    """Its future-row bound moves with the batch's time; were that time a literal in Spark's
    generated code, every micro-batch would compile its cleaning step anew."""
    cleaned = clean_silver(
        silver(spark, [(ts("2024-05-01T10:00:10"), "CRUISE", "Spain", 10000.0, 800.0)]), CONFIG
    )

    def generated_code() -> list[str]:
        # A new DataFrame is planned again, at a new current time; the plan's description shows
        # that time (a reference of the code), the code's numbered lines must not.
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cleaned.select("*").explain(mode="codegen")
        return [line for line in out.getvalue().splitlines() if re.match(r"/\* \d+ \*/", line)]

    first = generated_code()
    time.sleep(0.01)
    second = generated_code()
    assert len(first) > 100
    assert first == second
