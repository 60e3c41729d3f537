"""Independent computation of the Gold tables (DuckDB SQL over the Silver rows), written from
SPEC.md without the project's Spark code, for the tests to compare against."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

ALTITUDE_MIN, ALTITUDE_MAX = -100.0, 12000.0
VELOCITY_MIN, VELOCITY_MAX = 0.0, 1000.0

PHASE_COLUMNS = ["window_start", "window_end", "flight_phase", "flight_count", "avg_altitude", "avg_velocity"]
ANOMALY_COLUMNS = [
    "window_start", "window_end", "origin_country", "total_observations", "altitude_anomalies",
    "velocity_anomalies", "anomaly_rate", "max_altitude", "min_altitude", "max_velocity",
    "avg_altitude", "avg_velocity", "stddev_altitude", "stddev_velocity",
]
KEYS = {"flight_phase_counts": ["window_start", "flight_phase"],
        "anomaly_alerts": ["window_start", "origin_country"]}


def _clean(silver: pd.DataFrame) -> pd.DataFrame:
    df = silver[["event_timestamp", "flight_phase", "origin_country", "altitude_meters", "velocity_kmh"]].copy()
    df = df[df["event_timestamp"].notna()]
    for col in ("altitude_meters", "velocity_kmh"):
        values = df[col].astype("float64")
        df[col] = values.where(np.isfinite(values), np.nan)
    df["flight_phase"] = df["flight_phase"].fillna("UNKNOWN")
    df["origin_country"] = df["origin_country"].fillna("Unknown")
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def flight_phase_counts(silver: pd.DataFrame, closed_before: datetime | None = None) -> pd.DataFrame:
    """1-minute tumbling windows; only windows with window_end <= closed_before (the watermark)."""
    rows = _clean(silver)
    result = duckdb.sql("""
        SELECT time_bucket(INTERVAL 1 MINUTE, event_timestamp::TIMESTAMP) AS window_start,
               flight_phase,
               count(*) AS flight_count,
               avg(altitude_meters) AS avg_altitude,
               avg(velocity_kmh) AS avg_velocity
        FROM rows GROUP BY ALL
    """).df()
    result["window_end"] = result["window_start"] + pd.Timedelta(minutes=1)
    return _finish(result[PHASE_COLUMNS], closed_before, "flight_phase_counts")


def anomaly_alerts(silver: pd.DataFrame, closed_before: datetime | None = None) -> pd.DataFrame:
    """5-minute windows sliding by 1 minute: each row in the 5 windows starting at its minute and
    the 4 minutes before; only windows with window_end <= closed_before (the watermark)."""
    rows = _clean(silver)
    result = duckdb.sql(f"""
        WITH flagged AS (
            SELECT *,
                   coalesce(altitude_meters < {ALTITUDE_MIN} OR altitude_meters > {ALTITUDE_MAX}, false) AS alt_anom,
                   coalesce(velocity_kmh < {VELOCITY_MIN} OR velocity_kmh > {VELOCITY_MAX}, false) AS vel_anom
            FROM rows
        ), windowed AS (
            SELECT time_bucket(INTERVAL 1 MINUTE, event_timestamp::TIMESTAMP) - to_minutes(k) AS window_start, f.*
            FROM flagged f, range(5) AS r(k)
        )
        SELECT window_start, origin_country,
               count(*) AS total_observations,
               sum(alt_anom::BIGINT) AS altitude_anomalies,
               sum(vel_anom::BIGINT) AS velocity_anomalies,
               sum((alt_anom OR vel_anom)::BIGINT) / count(*) AS anomaly_rate,
               max(altitude_meters) AS max_altitude,
               min(altitude_meters) AS min_altitude,
               max(velocity_kmh) AS max_velocity,
               avg(altitude_meters) AS avg_altitude,
               avg(velocity_kmh) AS avg_velocity,
               stddev_samp(altitude_meters) AS stddev_altitude,
               stddev_samp(velocity_kmh) AS stddev_velocity
        FROM windowed GROUP BY ALL
    """).df()
    result["window_end"] = result["window_start"] + pd.Timedelta(minutes=5)
    return _finish(result[ANOMALY_COLUMNS], closed_before, "anomaly_alerts")


def _finish(df: pd.DataFrame, closed_before, table: str) -> pd.DataFrame:
    for col in ("window_start", "window_end"):
        df[col] = pd.to_datetime(df[col]).dt.tz_localize("UTC") if pd.to_datetime(df[col]).dt.tz is None \
            else pd.to_datetime(df[col]).dt.tz_convert("UTC")
    if closed_before is not None:
        df = df[df["window_end"] <= pd.Timestamp(closed_before)]
    for col in df.columns:
        if col.endswith(("_count", "_observations", "_anomalies")):
            df[col] = df[col].astype("int64")
    return df.sort_values(KEYS[table]).reset_index(drop=True)


def watermark(silver: pd.DataFrame, delay: timedelta) -> pd.Timestamp:
    """Spark's final watermark after all rows: max event time minus the delay."""
    ts = pd.to_datetime(silver["event_timestamp"].dropna(), utc=True)
    return ts.max() - pd.Timedelta(delay)


def expected_gold(silver: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Both Gold tables as an available-now run over `silver` (appended in event-time order) writes
    them: the windows the final watermark has closed."""
    return {
        "flight_phase_counts": flight_phase_counts(silver, watermark(silver, timedelta(minutes=2))),
        "anomaly_alerts": anomaly_alerts(silver, watermark(silver, timedelta(minutes=6))),
    }


def normalize(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """A Gold table read back (Spark toPandas or deltalake), in the comparison's shape."""
    df = df.copy()
    for col in ("window_start", "window_end"):
        ts = pd.to_datetime(df[col])
        df[col] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        df[col] = df[col].astype("datetime64[us, UTC]")
    return df.sort_values(KEYS[table]).reset_index(drop=True)


def assert_gold_equal(actual: pd.DataFrame, expected: pd.DataFrame, table: str) -> None:
    """Same rows, same columns in the same order; floats to 1e-9 relative (aggregation order)."""
    actual, expected = normalize(actual, table), normalize(expected, table)
    assert list(actual.columns) == list(expected.columns), (list(actual.columns), list(expected.columns))
    dupes = actual.duplicated(KEYS[table]).sum()
    assert dupes == 0, f"{table}: {dupes} windows written twice"
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, rtol=1e-9, atol=1e-6)


def read_delta(path: str) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(path).to_pandas()


__all__ = ["expected_gold", "flight_phase_counts", "anomaly_alerts", "assert_gold_equal", "read_delta",
           "watermark", "normalize", "KEYS", "math"]
