"""Both Gold aggregations in batch with DuckDB over Silver_ML's Parquet files: the machine's limit
for this work (no streaming, no state, no per-batch overhead), and a third result to compare with.

The rules are SPEC.md's, as the Spark job applies them to a backlog drained at once: NaN/inf
become null, null phase/country are UNKNOWN/Unknown, null timestamps are dropped, and only the
windows the final watermark (newest event time minus the delay) has closed are kept.
"""

from __future__ import annotations

import time

import duckdb
import pandas as pd

from flight_gold.core.config import AnomalyThresholds


def _sql(
    files: list[str], t: AnomalyThresholds, phase_delay_s: int, anomaly_delay_s: int
) -> tuple[str, str, str]:
    source = "read_parquet([{}])".format(", ".join(f"'{f}'" for f in files))
    clean = f"""
        CREATE OR REPLACE TEMP TABLE silver AS
        SELECT event_timestamp::TIMESTAMP AS ts,
               coalesce(flight_phase, 'UNKNOWN') AS flight_phase,
               coalesce(origin_country, 'Unknown') AS origin_country,
               CASE WHEN isfinite(altitude_meters::DOUBLE) THEN altitude_meters::DOUBLE END AS alt,
               CASE WHEN isfinite(velocity_kmh::DOUBLE) THEN velocity_kmh::DOUBLE END AS vel
        FROM {source} WHERE event_timestamp IS NOT NULL"""
    phase = f"""
        WITH bucketed AS (SELECT time_bucket(INTERVAL 1 MINUTE, ts) AS window_start, * FROM silver)
        SELECT window_start, window_start + INTERVAL 1 MINUTE AS window_end, flight_phase,
               count(*) AS flight_count, avg(alt) AS avg_altitude, avg(vel) AS avg_velocity
        FROM bucketed GROUP BY window_start, flight_phase
        HAVING window_start + INTERVAL 1 MINUTE
               <= (SELECT max(ts) FROM silver) - INTERVAL {phase_delay_s} SECOND"""
    anomaly = f"""
        WITH flagged AS (
            SELECT ts, origin_country, alt, vel,
                   coalesce(alt < {t.altitude_min_m} OR alt > {t.altitude_max_m}, false) AS alt_anom,
                   coalesce(vel < {t.velocity_min_kmh} OR vel > {t.velocity_max_kmh}, false) AS vel_anom
            FROM silver
        ), windowed AS (
            SELECT time_bucket(INTERVAL 1 MINUTE, ts) - to_minutes(k) AS window_start, f.*
            FROM flagged f, range(5) AS r(k)
        )
        SELECT window_start, window_start + INTERVAL 5 MINUTE AS window_end, origin_country,
               count(*) AS total_observations,
               sum(alt_anom::BIGINT) AS altitude_anomalies,
               sum(vel_anom::BIGINT) AS velocity_anomalies,
               sum((alt_anom OR vel_anom)::BIGINT) / count(*) AS anomaly_rate,
               max(alt) AS max_altitude, min(alt) AS min_altitude, max(vel) AS max_velocity,
               avg(alt) AS avg_altitude, avg(vel) AS avg_velocity,
               stddev_samp(alt) AS stddev_altitude, stddev_samp(vel) AS stddev_velocity
        FROM windowed GROUP BY window_start, origin_country
        HAVING window_start + INTERVAL 5 MINUTE
               <= (SELECT max(ts) FROM silver) - INTERVAL {anomaly_delay_s} SECOND"""
    return clean, phase, anomaly


def gold_in_batch(
    files: list[str],
    thresholds: AnomalyThresholds | None = None,
    threads: int = 2,
    phase_delay_s: int = 120,
    anomaly_delay_s: int = 360,
) -> dict:
    """Computes both tables; the timing covers reading the files, both aggregations and handing
    the results over as DataFrames."""
    thresholds = thresholds or AnomalyThresholds()
    clean, phase, anomaly = _sql(files, thresholds, phase_delay_s, anomaly_delay_s)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    start = time.perf_counter()
    con.execute(clean)
    tables = {"flight_phase_counts": con.sql(phase).df(), "anomaly_alerts": con.sql(anomaly).df()}
    seconds = time.perf_counter() - start
    rows = con.sql("SELECT count(*) FROM silver").fetchone()[0]
    con.close()
    for df in tables.values():
        for col in ("window_start", "window_end"):
            df[col] = pd.to_datetime(df[col]).dt.tz_localize("UTC")
    return {
        "tables": tables,
        "seconds": seconds,
        "rows": int(rows),
        "rows_per_second": rows / seconds if seconds else None,
        "threads": threads,
    }
