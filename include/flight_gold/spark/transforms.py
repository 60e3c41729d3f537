"""The Gold transformations, as pure functions from DataFrame to DataFrame.

They work the same on a batch DataFrame (tests) and on a streaming one (the jobs): the watermark
is a no-op in batch mode, and the windows are computed by Spark's `window()` aligned to the epoch
in UTC, start inclusive and end exclusive.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from flight_gold.core.config import AnomalyThresholds, GoldConfig
from flight_gold.core.contract import (
    ANOMALY_ALERTS,
    FLIGHT_PHASE_COUNTS,
    GOLD_TABLE_NAMES,
    UNKNOWN_COUNTRY,
    UNKNOWN_PHASE,
    gold_table,
)
from flight_gold.core.intervals import interval_ms

# Name of the observed metrics of the Silver_ML cleaning step (StreamingQueryProgress.observedMetrics).
SILVER_QUALITY_METRICS = "silver_quality"
QUALITY_COUNTERS = ("rows_in", "dropped_null_timestamp", "dropped_future_timestamp", "nan_values_nulled")
# Observed alongside: how many kept rows fall in each event-time bucket of `bucket_ms()`.
# Spark's own numRowsDroppedByWatermark counts rows *after* partial aggregation (one per window,
# key and partition), not input rows; with this histogram and the batch's watermark the progress
# listener counts the input rows a closed window refused (see streaming.late_rows).
EVENT_TIME_BUCKETS = "event_time_buckets"
# histogram_numeric is exact while a micro-batch spans at most this many distinct buckets
# (a week of 1-minute buckets); beyond, it merges bins and the late count is approximate.
EVENT_TIME_BUCKET_LIMIT = 10_000


def window_step_ms(name: str) -> int:
    """The step of a Gold table's windows: a row whose first window ends at or before the
    watermark is refused by at least one window. Tumbling: the window; sliding: the slide."""
    return interval_ms(gold_table(name).step)


def bucket_ms() -> int:
    """Bucket width of the event-time histogram: divides every Gold table's window step."""
    return math.gcd(*(window_step_ms(name) for name in GOLD_TABLE_NAMES))


def _finite_or_null(column: str) -> Column:
    """NaN and +-Infinity become null: Spark orders NaN above every number, so an unguarded
    `> 12000` would call NaN an anomaly and `avg` would turn NaN."""
    value = F.col(column).cast("double")
    return F.when(F.isnan(value) | (F.abs(value) == float("inf")), F.lit(None).cast("double")).otherwise(
        value
    )


def _is_not_finite(column: str) -> Column:
    value = F.col(column).cast("double")
    return value.isNotNull() & (F.isnan(value) | (F.abs(value) == float("inf")))


def batch_time_plus(interval: str) -> Column:
    """`current_timestamp() + INTERVAL interval`, with the time kept out of Spark's generated code.

    A streaming query turns current_timestamp() into a literal of its micro-batch's time, and Spark
    writes timestamp literals into the Java code it generates: every batch's cleaning step was new
    code, compiled by Janino and then by the JVM's JIT again (~5 of a trigger's ~11 compilations,
    ~12% of the driver's CPU per trigger; docs/performance.md). Behind a higher-order function,
    which Spark evaluates without generated code, the literal is a reference of the same code in
    every batch. Same value: the batch's time in a stream, the query's time in batch mode."""
    later = F.transform(F.array(F.current_timestamp()), lambda now: now + F.expr(f"INTERVAL {interval}"))
    return F.element_at(later, 1)


def clean_silver(df: DataFrame, config: GoldConfig, observe: bool = True) -> DataFrame:
    """Keeps the five columns the Gold tables need and makes every bad row a defined case:

    - null event_timestamp: dropped (counted);
    - event_timestamp further ahead of the processing time than `max_future_skew`: dropped
      (counted) before the watermark sees it;
    - NaN or infinite altitude/velocity: null (counted);
    - null flight_phase / origin_country: kept under UNKNOWN / Unknown.

    With `observe`, the counts are attached as observed metrics named SILVER_QUALITY_METRICS,
    which a streaming query reports in each progress event, with the kept rows' event-time
    histogram (EVENT_TIME_BUCKETS) from which late input rows are counted.
    """
    projected = df.select(
        F.col("event_timestamp"),
        F.coalesce(F.col("flight_phase"), F.lit(UNKNOWN_PHASE)).alias("flight_phase"),
        F.coalesce(F.col("origin_country"), F.lit(UNKNOWN_COUNTRY)).alias("origin_country"),
        _finite_or_null("altitude_meters").alias("altitude_meters"),
        _finite_or_null("velocity_kmh").alias("velocity_kmh"),
        (_is_not_finite("altitude_meters").cast("int") + _is_not_finite("velocity_kmh").cast("int")).alias(
            "_nan_values"
        ),
    )
    horizon = batch_time_plus(config.max_future_skew)
    is_null_ts = F.col("event_timestamp").isNull()
    is_future = F.col("event_timestamp") > horizon
    kept = ~is_null_ts & ~F.coalesce(is_future, F.lit(False))
    if observe:
        projected = projected.observe(
            SILVER_QUALITY_METRICS,
            F.count(F.lit(1)).alias("rows_in"),
            F.sum(is_null_ts.cast("long")).alias("dropped_null_timestamp"),
            F.sum(F.coalesce(is_future, F.lit(False)).cast("long")).alias("dropped_future_timestamp"),
            F.sum(F.when(kept, F.col("_nan_values")).otherwise(0).cast("long")).alias("nan_values_nulled"),
            F.histogram_numeric(
                F.when(kept, F.floor(F.unix_micros("event_timestamp") / (bucket_ms() * 1000))),
                F.lit(EVENT_TIME_BUCKET_LIMIT),
            ).alias(EVENT_TIME_BUCKETS),
        )
    return projected.where(~is_null_ts & ~is_future).drop("_nan_values")


def flight_phase_counts(silver: DataFrame, config: GoldConfig) -> DataFrame:
    """1-minute tumbling counts per flight phase; `silver` is the output of clean_silver."""
    table = FLIGHT_PHASE_COUNTS
    return (
        silver.withWatermark("event_timestamp", table.watermark)
        .groupBy(F.window("event_timestamp", table.window).alias("window"), table.key)
        .agg(
            F.count(F.lit(1)).alias("flight_count"),
            F.avg("altitude_meters").alias("avg_altitude"),
            F.avg("velocity_kmh").alias("avg_velocity"),
        )
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "flight_phase",
            F.col("flight_count").cast("long"),
            F.col("avg_altitude").cast("double"),
            F.col("avg_velocity").cast("double"),
        )
    )


def anomaly_flags(thresholds: AnomalyThresholds) -> tuple[Column, Column]:
    """(altitude anomaly, velocity anomaly) as non-null booleans: bounds exclusive, null is no anomaly."""
    altitude, velocity = F.col("altitude_meters"), F.col("velocity_kmh")
    altitude_anomaly = F.coalesce(
        (altitude < thresholds.altitude_min_m) | (altitude > thresholds.altitude_max_m), F.lit(False)
    )
    velocity_anomaly = F.coalesce(
        (velocity < thresholds.velocity_min_kmh) | (velocity > thresholds.velocity_max_kmh), F.lit(False)
    )
    return altitude_anomaly, velocity_anomaly


def anomaly_alerts(silver: DataFrame, config: GoldConfig) -> DataFrame:
    """5-minute windows sliding every minute, per origin country; `silver` is clean_silver's output."""
    altitude_anomaly, velocity_anomaly = anomaly_flags(config.thresholds)
    table = ANOMALY_ALERTS
    return (
        silver.withWatermark("event_timestamp", table.watermark)
        .groupBy(F.window("event_timestamp", table.window, table.slide).alias("window"), table.key)
        .agg(
            F.count(F.lit(1)).alias("total_observations"),
            F.sum(altitude_anomaly.cast("long")).alias("altitude_anomalies"),
            F.sum(velocity_anomaly.cast("long")).alias("velocity_anomalies"),
            F.sum((altitude_anomaly | velocity_anomaly).cast("long")).alias("_anomalous"),
            F.max("altitude_meters").alias("max_altitude"),
            F.min("altitude_meters").alias("min_altitude"),
            F.max("velocity_kmh").alias("max_velocity"),
            F.avg("altitude_meters").alias("avg_altitude"),
            F.avg("velocity_kmh").alias("avg_velocity"),
            F.stddev_samp("altitude_meters").alias("stddev_altitude"),
            F.stddev_samp("velocity_kmh").alias("stddev_velocity"),
        )
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "origin_country",
            F.col("total_observations").cast("long"),
            F.col("altitude_anomalies").cast("long"),
            F.col("velocity_anomalies").cast("long"),
            (F.col("_anomalous") / F.col("total_observations")).cast("double").alias("anomaly_rate"),
            *(
                F.col(c).cast("double").alias(c)
                for c in (
                    "max_altitude",
                    "min_altitude",
                    "max_velocity",
                    "avg_altitude",
                    "avg_velocity",
                    "stddev_altitude",
                    "stddev_velocity",
                )
            ),
        )
    )


GOLD_TRANSFORMS = {
    "flight_phase_counts": flight_phase_counts,
    "anomaly_alerts": anomaly_alerts,
}
