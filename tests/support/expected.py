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
    "window_start",
    "window_end",
    "origin_country",
    "total_observations",
    "altitude_anomalies",
    "velocity_anomalies",
    "anomaly_rate",
    "max_altitude",
    "min_altitude",
    "max_velocity",
    "avg_altitude",
    "avg_velocity",
    "stddev_altitude",
    "stddev_velocity",
]
KEYS = {
    "flight_phase_counts": ["window_start", "flight_phase"],
    "anomaly_alerts": ["window_start", "origin_country"],
}


def _clean(silver: pd.DataFrame) -> pd.DataFrame:
    df = silver[
        ["event_timestamp", "flight_phase", "origin_country", "altitude_meters", "velocity_kmh"]
    ].copy()
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
    rows = _clean(silver)  # noqa: F841 - DuckDB reads the frame by its variable name
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
    rows = _clean(silver)  # noqa: F841 - DuckDB reads the frame by its variable name
    result = duckdb.sql(f"""
        WITH flagged AS (
            SELECT *,
                   coalesce(altitude_meters < {ALTITUDE_MIN} OR altitude_meters > {ALTITUDE_MAX}, false)
                       AS alt_anom,
                   coalesce(velocity_kmh < {VELOCITY_MIN} OR velocity_kmh > {VELOCITY_MAX}, false)
                       AS vel_anom
            FROM rows
        ), windowed AS (
            SELECT time_bucket(INTERVAL 1 MINUTE, event_timestamp::TIMESTAMP) - to_minutes(k)
                   AS window_start, f.*
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
        df[col] = (
            pd.to_datetime(df[col]).dt.tz_localize("UTC")
            if pd.to_datetime(df[col]).dt.tz is None
            else pd.to_datetime(df[col]).dt.tz_convert("UTC")
        )
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


def drop_future(
    silver: pd.DataFrame, now: datetime, max_future_skew: timedelta = timedelta(seconds=60)
) -> pd.DataFrame:
    """Silver rows minus those stamped more than `max_future_skew` after `now` (a bad clock);
    null timestamps stay (the Gold cleaning drops them)."""
    ts = pd.to_datetime(silver["event_timestamp"], utc=True)
    return silver[~(ts > pd.Timestamp(now) + pd.Timedelta(max_future_skew))]


# (window, slide, watermark delay) of each Gold table, as SPEC.md fixes them.
STREAM_SPECS = {
    "flight_phase_counts": (timedelta(minutes=1), timedelta(minutes=1), timedelta(minutes=2)),
    "anomaly_alerts": (timedelta(minutes=5), timedelta(minutes=1), timedelta(minutes=6)),
}


def streamed_gold(batches: list[pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, list[int]]]:
    """Gold as a stream writes it when each frame of `batches` is one micro-batch, in order (an
    empty frame for a batch without data), and the run ends with a batch that closes every window
    the last watermark allows (what an available-now run does).

    Spark's rules (3.4 and later), restated: batch k evicts with watermark E(k) = the largest event
    time of batches before k minus the delay (the epoch before any data), and filters late rows with
    the previous batch's watermark E(k-1): a row is dropped from each of its windows whose end is at
    or before E(k-1), and kept in the others; a window is written when its end is at or before the
    watermark. Frames must already be free of future rows (drop_future).

    Returns the Gold tables and, per table, how many rows of each batch were refused by at least
    one window ("late rows")."""
    tables, late = {}, {}
    for table, (size, slide, delay) in STREAM_SPECS.items():
        eviction = late_filter = pd.Timestamp(0, tz="UTC")
        newest = None
        pairs, late[table] = [], []
        for batch in batches:
            rows = _clean(batch)
            bucket = rows["event_timestamp"].dt.floor(pd.Timedelta(slide))
            refused = pd.Series(False, index=rows.index)
            for k in range(int(size / slide)):
                start = bucket - k * pd.Timedelta(slide)
                open_ = start + pd.Timedelta(size) > late_filter
                refused |= ~open_
                pairs.append(rows[open_].assign(window_start=start[open_]))
            late[table].append(int(refused.sum()))
            late_filter = eviction
            if len(rows):
                newest = (
                    rows["event_timestamp"].max()
                    if newest is None
                    else max(newest, rows["event_timestamp"].max())
                )
                eviction = max(eviction, newest - pd.Timedelta(delay))
        windowed = pd.concat(pairs, ignore_index=True)
        windowed["window_start"] = pd.to_datetime(windowed["window_start"], utc=True).dt.tz_convert(None)
        tables[table] = _aggregate_windows(windowed, table, size, eviction)
    return tables, late


def _aggregate_windows(windowed: pd.DataFrame, table: str, size: timedelta, watermark) -> pd.DataFrame:
    if table == "flight_phase_counts":
        sql = """SELECT window_start, flight_phase, count(*) AS flight_count,
                        avg(altitude_meters) AS avg_altitude, avg(velocity_kmh) AS avg_velocity
                 FROM windowed GROUP BY ALL"""
        columns = PHASE_COLUMNS
    else:
        sql = f"""
            WITH flagged AS (
                SELECT *,
                       coalesce(altitude_meters < {ALTITUDE_MIN} OR altitude_meters > {ALTITUDE_MAX}, false)
                       AS alt_anom,
                       coalesce(velocity_kmh < {VELOCITY_MIN} OR velocity_kmh > {VELOCITY_MAX}, false)
                       AS vel_anom
                FROM windowed)
            SELECT window_start, origin_country, count(*) AS total_observations,
                   sum(alt_anom::BIGINT) AS altitude_anomalies, sum(vel_anom::BIGINT) AS velocity_anomalies,
                   sum((alt_anom OR vel_anom)::BIGINT) / count(*) AS anomaly_rate,
                   max(altitude_meters) AS max_altitude, min(altitude_meters) AS min_altitude,
                   max(velocity_kmh) AS max_velocity, avg(altitude_meters) AS avg_altitude,
                   avg(velocity_kmh) AS avg_velocity, stddev_samp(altitude_meters) AS stddev_altitude,
                   stddev_samp(velocity_kmh) AS stddev_velocity
            FROM flagged GROUP BY ALL"""
        columns = ANOMALY_COLUMNS
    result = duckdb.sql(sql).df()
    result["window_end"] = result["window_start"] + pd.Timedelta(size)
    return _finish(result[columns], watermark.to_pydatetime(), table)


__all__ = [
    "expected_gold",
    "drop_future",
    "streamed_gold",
    "STREAM_SPECS",
    "flight_phase_counts",
    "anomaly_alerts",
    "assert_gold_equal",
    "read_delta",
    "watermark",
    "normalize",
    "KEYS",
    "math",
]
