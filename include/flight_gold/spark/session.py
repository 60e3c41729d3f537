"""The one Spark session builder: Delta Lake enabled, UTC, sized for streaming on few cores."""

from __future__ import annotations

import logging
import os
import subprocess

from flight_gold.core.config import GoldConfig
from flight_gold.spark.classdata import build_archive, java_options
from flight_gold.spark.logstore import build_jar, log_store_conf

log = logging.getLogger(__name__)

SPARK_VERSION = "4.2"
SCALA_VERSION = "2.13"
DELTA_VERSION = "4.4.0"
DELTA_PACKAGE = f"io.delta:delta-spark_{SPARK_VERSION}_{SCALA_VERSION}:{DELTA_VERSION}"
# hadoop-aws must match the Hadoop client Spark ships (pyspark/jars/hadoop-client-api-3.5.0.jar).
HADOOP_AWS_PACKAGE = "org.apache.hadoop:hadoop-aws:3.5.0"

# Delta's POM drags in older copies of libraries Spark already ships (Hadoop 3.4, Jackson 2.13,
# Parquet 1.16, log4j...). Two versions of a class on one classpath fail in odd ways, so they
# are excluded and Spark's own are used.
DELTA_EXCLUDES = (
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.core:jackson-annotations",
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-jackson",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "io.airlift:aircompressor",
    "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims",
    "com.google.code.findbugs:jsr305",
    "commons-logging:commons-logging",
    "commons-pool:commons-pool",
    "org.locationtech.jts:jts-core",
)


def packages(config: GoldConfig) -> list[str]:
    pkgs = [DELTA_PACKAGE]
    if config.is_s3:
        pkgs.append(HADOOP_AWS_PACKAGE)
    return pkgs


# What opening a file on a local root costs, in bytes of reading, for Spark's split planning
# (spark.sql.files.openCostInBytes; Spark's default of 4 MB suits HDFS and object stores).
LOCAL_FILE_OPEN_COST_BYTES = 16 * 1024


# Which job a Spark application runs: its core cap on a spark:// master differs.
STREAM, MAINTENANCE = "stream", "maintenance"


def is_local_master(master: str) -> bool:
    return master.strip().startswith("local")


def spark_conf(config: GoldConfig, master: str | None = None, role: str = STREAM) -> dict[str, str]:
    """Every Spark setting of the project, also used by the DAGs for spark-submit's --conf.

    `master` is the master the application really runs on (default: config.spark_master):
    spark-submit's --master or the Airflow connection's, which the settings that only suit a
    local master, or only a cluster, must follow."""
    master = master or config.spark_master
    conf = {
        "spark.jars.packages": ",".join(packages(config)),
        "spark.jars.excludes": ",".join(DELTA_EXCLUDES),
        "spark.jars.ivy": config.jars_cache,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(config.shuffle_partitions),
        # The streaming job turns the UI on for its Prometheus endpoint (metrics_conf); the other
        # jobs need none.
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # A query stopped during a foreachBatch write ends with a Py4J error whose message (the
        # Python and Java traces, ~20 KB) Spark matches against a recursive regex to recognise an
        # interruption (StreamExecution.isInterruptionException): with the default 1 MB thread
        # stack that overflows, and the stop logs a 2,000-line StackOverflowError instead of
        # ending quietly. Spark's "default" options, so that a user's extraJavaOptions add to it.
        # The class archive (flight_gold.spark.classdata), when one was made for this Java and
        # these jars: a faster start of the driver.
        "spark.driver.defaultJavaOptions": " ".join(filter(None, ("-Xss16m", java_options(config)))),
        # The Gold tables must stay readable by delta-rs (deltalake), which refuses v2 checkpoints
        # and deletion vectors: keep new tables on the classic protocol.
        "spark.databricks.delta.properties.defaults.checkpointPolicy": "classic",
        "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"
        ),
        # Delta rebuilds a table's state in snapshotPartitions tasks (50, sized for big tables):
        # Silver_ML's when a stream starts, and a Gold table's in every micro-batch that writes to
        # it (the idempotent write reads the table's SetTransactions, and Delta 4.4 gets them
        # only by a full state reconstruction). These tables are small (a Gold commit holds a
        # few windows; the logs are checkpointed every few commits): on a local master and on a
        # small cluster alike those tasks are overhead. Measured on a standalone cluster of two
        # workers on loopback: a 50-task stage in every micro-batch, 45 s for a batch of no rows.
        "spark.databricks.delta.snapshotPartitions": str(config.snapshot_partitions),
    }
    if master.strip().startswith("spark://"):
        # A standalone master gives an application every free core unless capped: the stream
        # would leave none to the maintenance job (and the reverse). One core per executor so
        # that the cap is reachable on a worker of any size.
        cores = config.spark_cores_max if role == STREAM else config.maintenance_cores_max
        conf["spark.cores.max"] = str(cores)
        conf["spark.executor.cores"] = "1"
    if not config.is_s3:
        # Delta writes _delta_log through Hadoop's FileContext, whose local implementation is
        # checksummed too (a .crc per file, chmod/readlink processes per commit).
        conf["spark.hadoop.fs.AbstractFileSystem.file.impl"] = "org.apache.hadoop.fs.local.RawLocalFs"
        # On a local root, Hadoop's checksummed local file system forks chmod/readlink for every
        # checkpoint and state file (~60 per batch and query); the raw one does not.
        conf["spark.hadoop.fs.file.impl"] = "org.apache.hadoop.fs.RawLocalFileSystem"
        conf["spark.sql.streaming.checkpointFileManagerClass"] = (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        )
        # Silver_ML is one small file per commit, and a catch-up batch reads 1,000 of them. Spark
        # counts each file as 4 MB more to read (the cost of opening one on HDFS or S3), so a
        # batch became ~30 tasks of ~30 files; opening a local file costs next to nothing, and
        # with this the batch is one task per core. Measured: restart after 20,000 commits
        # 29.2 -> 26.6 s to the first Gold commit (mean of three), 10M-row catch-up 258,799 ->
        # 278,606 rows/s (docs/performance.md). Object stores keep Spark's default.
        conf["spark.sql.files.openCostInBytes"] = str(LOCAL_FILE_OPEN_COST_BYTES)
        # Delta's log listed by name, not stat by stat (flight_gold.spark.logstore), when built.
        conf.update(log_store_conf(config))
    else:
        conf.update(
            {
                "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                "spark.hadoop.fs.s3a.path.style.access": str(config.s3_path_style_access).lower(),
                "spark.hadoop.fs.s3a.aws.credentials.provider": (
                    "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"
                ),
                # Delta on S3 from a single writer per table: the default S3SingleDriverLogStore.
                "spark.delta.logStore.s3a.impl": "io.delta.storage.S3SingleDriverLogStore",
            }
        )
        if config.s3_endpoint:
            conf["spark.hadoop.fs.s3a.endpoint"] = config.s3_endpoint
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
                config.s3_endpoint.startswith("https")
            ).lower()
    return conf


def launched_master() -> str | None:
    """The master of a JVM spark-submit already launched (its --master, or the connection's
    under Airflow), or None when this process launches its own."""
    if not os.environ.get("SPARK_ENV_LOADED") and "SPARK_SUBMIT_OPTS" not in os.environ:
        return None
    from pyspark import SparkConf, SparkContext

    # Connects to spark-submit's JVM (PYSPARK_GATEWAY_PORT); SparkConf() then reads the
    # settings spark-submit gave it, before the session applies the project's on top.
    SparkContext._ensure_initialized()
    return SparkConf().get("spark.master", None)


# Prometheus metric names start with this instead of the application id, so that they stay the
# same from one run of the job to the next: metrics_flight_gold_driver_spark_streaming_<query>_...
METRICS_NAMESPACE = "flight_gold"
PROMETHEUS_PATH = "/metrics/prometheus"
PROMETHEUS_SERVLET = "org.apache.spark.metrics.sink.PrometheusServlet"


def metrics_conf(config: GoldConfig) -> dict[str, str]:
    """The driver's Spark UI with Spark's own streaming metrics on its Prometheus endpoint
    (PrometheusServlet at /metrics/prometheus), or no UI at all when metrics_port is off.

    The UI keeps little history (it is only there for the endpoint): a stream runs for weeks and
    the UI's default retention of 1,000 jobs and stages costs memory and listener time per batch."""
    port = config.metrics_ui_port
    if port is None:
        return {"spark.ui.enabled": "false"}
    return {
        "spark.ui.enabled": "true",
        "spark.ui.port": str(port),
        "spark.sql.streaming.metricsEnabled": "true",
        "spark.metrics.namespace": METRICS_NAMESPACE,
        "spark.metrics.conf.*.sink.prometheusServlet.class": PROMETHEUS_SERVLET,
        "spark.metrics.conf.*.sink.prometheusServlet.path": PROMETHEUS_PATH,
        "spark.ui.retainedJobs": "50",
        "spark.ui.retainedStages": "50",
        "spark.ui.retainedTasks": "1000",
        "spark.ui.retainedDeadExecutors": "10",
        "spark.sql.ui.retainedExecutions": "20",
        "spark.sql.streaming.ui.retainedQueries": "10",
        "spark.sql.streaming.ui.retainedProgressUpdates": "60",
        "spark.ui.killEnabled": "false",
    }


def loopback_env(config: GoldConfig, master: str) -> dict[str, str]:
    """SPARK_LOCAL_IP=127.0.0.1 for a local master: the driver (and its UI, which Spark binds to
    SPARK_LOCAL_IP or else to every interface) listens on loopback only. On a cluster the driver
    must be reachable by the executors, so nothing is set: see README, "Prometheus"."""
    if config.metrics_ui_port is None or not master.startswith("local") or os.environ.get("SPARK_LOCAL_IP"):
        return {}
    return {"SPARK_LOCAL_IP": "127.0.0.1"}


def build_spark_session(
    config: GoldConfig, app_name: str = "flight-gold", role: str = STREAM, metrics: bool = False
):
    """Returns a SparkSession with Delta enabled; reuses the active one if there is one
    (spark-submit, tests), applying the runtime settings to it. `metrics`: the streaming job's
    UI and Prometheus endpoint (metrics_conf)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    master = launched_master()
    if master is None:
        # Under spark-submit the master comes from the command line; otherwise from config, and
        # the JVM this process starts inherits its environment.
        master = config.spark_master
        builder = builder.master(master)
        if metrics:
            os.environ.update(loopback_env(config, master))
    conf = {**spark_conf(config, master, role), **(metrics_conf(config) if metrics else {})}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.log_level)
    spark.conf.set("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
    log.info(
        "Spark %s session %s, master %s, shuffle partitions %s",
        spark.version,
        app_name,
        spark.sparkContext.master,
        config.shuffle_partitions,
    )
    if not config.is_s3:
        log.info(
            "Delta log store for local paths: %s",
            # What the session has: spark-submit's --conf (the DAGs) counts too.
            spark.sparkContext.getConf().get("spark.delta.logStore.file.impl", None)
            or "Delta's own (flight_gold.spark.logstore not built: slower to list a long log)",
        )
    return spark


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flight_gold.spark.session")
    parser.add_argument(
        "--resolve-jars", action="store_true", help="resolve the Delta jars into the project's cache and exit"
    )
    parser.add_argument(
        "--build-class-archive",
        action="store_true",
        help="make the driver JVM's class archive for a faster start (flight_gold.spark.classdata)",
    )
    parser.add_argument(
        "--build-log-store",
        action="store_true",
        help="compile the log store for local roots (flight_gold.spark.logstore), after the jars",
    )
    args = parser.parse_args()
    if args.resolve_jars:
        config = GoldConfig.from_env()
        spark = build_spark_session(config, "flight-gold-resolve-jars")
        jars = spark.sparkContext.getConf().get("spark.jars", "")
        spark.stop()
        print(f"Delta jars cached in {config.jars_cache}: {len(jars.split(',')) if jars else 0} jars")
    if args.build_log_store or args.build_class_archive:
        from flight_gold.core.logs import configure_logging

        configure_logging()
    # Both after the jars: the log store compiles against delta-storage, the archive's training
    # run needs them. Both are optimisations: without them the setup goes on and the jobs run as
    # before (Delta's own log store, slower to list a long log; a slower start).
    if args.build_log_store:
        jar = _optional(build_jar, "no log store built, the jobs use Delta's own")
        print(f"log store: {jar}")
    if args.build_class_archive:
        archive = _optional(build_archive, "no class archive made, the jobs start without one")
        print(f"class archive: {archive}")


def _optional(build, consequence: str):
    try:
        return build(GoldConfig.from_env()) or "none"
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s: %s", consequence, exc)
        return "none"


if __name__ == "__main__":
    _main()
