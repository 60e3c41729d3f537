"""The Spark session under spark-submit takes the master spark-submit launched it with (the one
the Airflow connection names), not SPARK_MASTER, for the settings that depend on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.spark.session import DELTA_EXCLUDES, packages
from support.drivers import printed, run_driver

pytestmark = pytest.mark.e2e


def test_under_spark_submit_the_local_settings_follow_its_master(tmp_path):
    config = GoldConfig.from_env({}, lakehouse_root=str(tmp_path / "lake"))
    spark_submit = Path(sys.executable).parent / "spark-submit"
    run = run_driver(
        tmp_path,
        'print("MASTER", spark.sparkContext.master)\n'
        'print("SNAPSHOT_PARTITIONS", spark.conf.get("spark.databricks.delta.snapshotPartitions", "unset"))\n'
        'print("CORES_MAX", spark.sparkContext.getConf().get("spark.cores.max", "unset"))',
        app="flight-gold-master-test",
        launcher=[
            str(spark_submit),
            "--master",
            "local[1]",
            "--packages",
            ",".join(packages(config)),
            "--exclude-packages",
            ",".join(DELTA_EXCLUDES),
            "--conf",
            f"spark.jars.ivy={config.jars_cache}",
        ],
        env={"SPARK_MASTER": "spark://127.0.0.1:1", "PYSPARK_PYTHON": sys.executable},
        timeout=600,
    )
    said = printed(run, "MASTER", "SNAPSHOT_PARTITIONS", "CORES_MAX")
    assert said["MASTER"] == "local[1]"
    # SPARK_MASTER names a cluster, but the job runs on local[1]: the local tweak applies and
    # no cluster core cap does.
    assert said["SNAPSHOT_PARTITIONS"] == "1"
    assert said["CORES_MAX"] == "unset"


def test_a_batch_of_small_local_files_is_read_in_one_task_per_core(spark, tmp_path):
    # Silver_ML as the feed writes it: one small file per commit. With Spark's default open
    # cost (4 MB a file) these 100 files would be planned as 4 tasks of 25-32 files.
    path = str(tmp_path / "small_files")
    spark.range(0, 100, 1, numPartitions=100).write.parquet(path)
    assert len(list(Path(path).glob("*.parquet"))) == 100
    assert spark.read.parquet(path).rdd.getNumPartitions() == spark.sparkContext.defaultParallelism == 2
