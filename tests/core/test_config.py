"""Configuration: defaults, environment, flags, and clear errors for bad values."""

from __future__ import annotations

import argparse

import pytest

from flight_gold.core.config import DEFAULT_LAKEHOUSE_ROOT, PROJECT_ROOT, ConfigError, GoldConfig
from flight_gold.core.contract import ANOMALY_ALERTS, FLIGHT_PHASE_COUNTS
from flight_gold.core.paths import LakehousePaths, commit_versions, delta_commit
from flight_gold.spark.session import spark_conf


def parse(argv, env):
    parser = argparse.ArgumentParser()
    GoldConfig.add_arguments(parser)
    return GoldConfig.from_args(parser.parse_args(argv), env)


def test_defaults_are_the_contract():
    config = GoldConfig.from_env({})
    assert config.lakehouse_root == DEFAULT_LAKEHOUSE_ROOT == str(PROJECT_ROOT / "lakehouse")
    assert (FLIGHT_PHASE_COUNTS.window, FLIGHT_PHASE_COUNTS.watermark) == ("1 minute", "2 minutes")
    assert (ANOMALY_ALERTS.window, ANOMALY_ALERTS.slide, ANOMALY_ALERTS.watermark) == (
        "5 minutes",
        "1 minute",
        "6 minutes",
    )
    t = config.thresholds
    assert (t.altitude_min_m, t.altitude_max_m, t.velocity_min_kmh, t.velocity_max_kmh) == (
        -100,
        12000,
        0,
        1000,
    )
    assert config.queries == ("flight_phase_counts", "anomaly_alerts")
    assert config.spark_master == "local[*]" and config.trigger == "processing-time"


def test_flags_override_environment_which_overrides_defaults(tmp_path):
    env = {
        "LAKEHOUSE_ROOT": str(tmp_path / "from-env"),
        "GOLD_SHUFFLE_PARTITIONS": "4",
        "ANOMALY_ALTITUDE_MAX_M": "11000",
        "GOLD_QUERIES": "anomaly_alerts",
    }
    config = parse(["--shuffle-partitions", "3"], env)
    assert config.lakehouse_root == str(tmp_path / "from-env")
    assert config.shuffle_partitions == 3
    assert config.thresholds.altitude_max_m == 11000
    assert config.queries == ("anomaly_alerts",)
    config = parse(["--lakehouse-root", "s3a://bucket/lake/", "--queries", "both"], env)
    assert config.lakehouse_root == "s3a://bucket/lake" and config.is_s3
    assert config.queries == ("flight_phase_counts", "anomaly_alerts")


@pytest.mark.parametrize(
    "env, named",
    [
        ({"GOLD_SHUFFLE_PARTITIONS": "many"}, "GOLD_SHUFFLE_PARTITIONS"),
        ({"GOLD_TRIGGER": "sometimes"}, "trigger"),
        ({"GOLD_TRIGGER_INTERVAL": "10 parsecs"}, "trigger_interval"),
        ({"GOLD_QUERIES": "flight_phase_counts,typo"}, "queries"),
        ({"ANOMALY_VELOCITY_MAX_KMH": "fast"}, "ANOMALY_VELOCITY_MAX_KMH"),
        ({"ANOMALY_ALTITUDE_MIN_M": "20000"}, "thresholds"),
        ({"S3_PATH_STYLE_ACCESS": "maybe"}, "S3_PATH_STYLE_ACCESS"),
        ({"GOLD_SNAPSHOT_PARTITIONS": "0"}, "snapshot_partitions"),
        ({"GOLD_JIT_NICE": "20"}, "jit_nice"),
        ({"GOLD_JIT_NICE": "-5"}, "jit_nice"),
        ({"GOLD_JIT_NICE": "low"}, "GOLD_JIT_NICE"),
    ],
)
def test_bad_values_name_the_setting(env, named):
    with pytest.raises(ConfigError, match=named):
        GoldConfig.from_env(env)


def test_layout_keeps_checkpoints_apart_from_tables():
    paths = LakehousePaths("s3a://bucket/lake")
    assert paths.silver_flights_ml == "s3a://bucket/lake/silver/flights_ml"
    assert paths.anomaly_alerts == "s3a://bucket/lake/gold/streaming_aggregations/anomaly_alerts"
    assert (
        paths.checkpoint("anomaly_alerts")
        == "s3a://bucket/lake/_checkpoints/gold/streaming_aggregations/anomaly_alerts"
    )
    assert not paths.checkpoint("anomaly_alerts").startswith(paths.anomaly_alerts)
    with pytest.raises(ValueError, match="unknown Gold table"):
        paths.gold_table("typo")


def test_delta_commit_names_round_trip():
    assert delta_commit("s3a://b/lake/t/", 12) == "s3a://b/lake/t/_delta_log/00000000000000000012.json"
    names = [
        "00000000000000000012.json",
        "00000000000000000003.json",
        "00000000000000000010.checkpoint.parquet",
        "00000000000000000003.crc",
        ".00000000000000000004.json.crc",
        "00000000000000000004.json.tmp",
        "12.json",
        "_last_checkpoint",
    ]
    assert commit_versions(names) == [3, 12]
    assert commit_versions(delta_commit("t", v).rsplit("/", 1)[1] for v in (7, 0, 10**12)) == [0, 7, 10**12]


def test_local_only_settings_stay_off_object_stores(tmp_path):
    local = spark_conf(GoldConfig.from_env({}, lakehouse_root=str(tmp_path)))
    s3 = spark_conf(GoldConfig.from_env({"S3_ENDPOINT": "http://127.0.0.1:9000"}, lakehouse_root="s3a://b/l"))
    assert local["spark.hadoop.fs.file.impl"] == "org.apache.hadoop.fs.RawLocalFileSystem"
    assert "spark.hadoop.fs.file.impl" not in s3
    assert "spark.sql.files.openCostInBytes" in local and "spark.sql.files.openCostInBytes" not in s3
    assert "hadoop-aws" in s3["spark.jars.packages"] and "hadoop-aws" not in local["spark.jars.packages"]
    assert s3["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert not any("secret" in key.lower() for key in s3)
    assert local["spark.sql.session.timeZone"] == s3["spark.sql.session.timeZone"] == "UTC"


def test_delta_state_is_rebuilt_in_one_task_on_any_master():
    # A cluster's default of 50 tasks per state reconstruction runs in every micro-batch that
    # writes Gold (see session.py); the tables are small on every master.
    for master in ("local[2]", "spark://spark-master:7077"):
        conf = spark_conf(GoldConfig.from_env({}, spark_master=master, lakehouse_root="s3a://b/l"))
        assert conf["spark.databricks.delta.snapshotPartitions"] == "1"
    conf = spark_conf(GoldConfig.from_env({"GOLD_SNAPSHOT_PARTITIONS": "8"}, lakehouse_root="s3a://b/l"))
    assert conf["spark.databricks.delta.snapshotPartitions"] == "8"


def test_integrity_settings_defaults_environment_and_flags():
    config = GoldConfig.from_env({})
    assert config.max_future_skew == "60 seconds"
    assert (config.compact_interval, config.compact_interval_s) == ("1 hour", 3600)
    assert (config.spark_cores_max, config.maintenance_cores_max, config.full_refresh) == (1, 1, False)
    for off in ("0", "off", "OFF"):
        assert GoldConfig.from_env({"GOLD_COMPACT_INTERVAL": off}).compact_interval_s is None
    assert GoldConfig.from_env({"GOLD_COMPACT_INTERVAL": "5 seconds"}).compact_interval_s == 5
    env = {"GOLD_SPARK_CORES_MAX": "2", "GOLD_MAINTENANCE_CORES_MAX": "3", "GOLD_FULL_REFRESH": "true"}
    config = GoldConfig.from_env(env)
    assert (config.spark_cores_max, config.maintenance_cores_max) == (2, 3)
    # Deleting Gold rows is never an environment setting: only the flag asks for it.
    assert config.full_refresh is False
    assert parse(["--full-refresh", "--compact-interval", "off"], env).full_refresh is True
    assert parse([], env).full_refresh is False
    assert parse(["--compact-interval", "30 minutes"], {}).compact_interval_s == 1800


@pytest.mark.parametrize(
    "env, named",
    [
        ({"GOLD_COMPACT_INTERVAL": "hourly"}, "compact_interval"),
        ({"GOLD_SPARK_CORES_MAX": "0"}, "spark_cores_max"),
        ({"GOLD_MAINTENANCE_CORES_MAX": "all"}, "GOLD_MAINTENANCE_CORES_MAX"),
    ],
)
def test_bad_integrity_settings_name_the_setting(env, named):
    with pytest.raises(ConfigError, match=named):
        GoldConfig.from_env(env)


def test_settings_that_depend_on_the_master_follow_the_master_in_use(tmp_path):
    from flight_gold.spark.session import MAINTENANCE, STREAM

    # SPARK_MASTER says local, the application really runs on a cluster (Airflow's connection,
    # spark-submit's --master): the master given wins.
    config = GoldConfig.from_env(
        {"GOLD_SPARK_CORES_MAX": "1", "GOLD_MAINTENANCE_CORES_MAX": "2"},
        lakehouse_root=str(tmp_path),
        spark_master="local[*]",
    )
    cluster = spark_conf(config, "spark://10.0.0.5:7077", STREAM)
    assert (cluster["spark.cores.max"], cluster["spark.executor.cores"]) == ("1", "1")
    assert spark_conf(config, "spark://10.0.0.5:7077", MAINTENANCE)["spark.cores.max"] == "2"
    local = spark_conf(config, "local[2]")
    assert local["spark.databricks.delta.snapshotPartitions"] == "1"
    assert "spark.cores.max" not in local and "spark.executor.cores" not in local
    assert spark_conf(config) == local | {}  # no master given: config.spark_master's
    on_cluster = config.replace(spark_master="spark://10.0.0.5:7077")
    assert spark_conf(on_cluster)["spark.cores.max"] == "1"
