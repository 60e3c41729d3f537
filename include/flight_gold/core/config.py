"""One typed configuration object, built from environment variables and command-line flags.

Every setting has a local default so that the project runs on a laptop with no setup; each can be
overridden by an environment variable (for Airflow and containers) and by a flag (for a one-off run).
Flags win over the environment, which wins over the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight_gold.core.contract import GOLD_TABLE_NAMES
from flight_gold.core.errors import EXIT_BAD_INPUT
from flight_gold.core.intervals import duration_seconds, interval_seconds, is_duration, is_interval
from flight_gold.core.parsing import (
    ConfigError,
    normalize_root,
    parse_bool,
    parse_float,
    parse_int,
    parse_str,
    parse_table_list,
)
from flight_gold.core.paths import LakehousePaths, is_s3

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_LAKEHOUSE_ROOT = str(PROJECT_ROOT / "lakehouse")
DEFAULT_JARS_CACHE = str(PROJECT_ROOT / ".cache" / "ivy")

# The streaming queries: one per Gold table.
QUERY_NAMES = GOLD_TABLE_NAMES
# The job's triggers. available-now-loop: an available-now run every trigger interval. Each run
# ends with the no-data batch that writes the windows its data closed, where a processing-time
# query writes them one trigger later.
JOB_TRIGGERS = ("processing-time", "available-now", "available-now-loop")
# GOLD_COMPACT_INTERVAL values that turn the stream's own compaction off.
COMPACTION_OFF = ("0", "off")


@dataclass(frozen=True)
class AnomalyThresholds:
    """Exclusive bounds: a value strictly outside [min, max] is an anomaly, null never is."""

    altitude_min_m: float = -100.0
    altitude_max_m: float = 12000.0
    velocity_min_kmh: float = 0.0
    velocity_max_kmh: float = 1000.0


@dataclass(frozen=True)
class GoldConfig:
    lakehouse_root: str = DEFAULT_LAKEHOUSE_ROOT
    spark_master: str = "local[*]"
    # 1 partition: the per-batch cost of a stateful micro-batch grows with the partition count
    # (a state store and a Gold file per partition and batch), and the state here is tiny (a few
    # hundred keys, bounded by the watermark). A checkpoint keeps the count it was created with.
    shuffle_partitions: int = 1
    # Tasks Delta rebuilds a table's state in (spark.databricks.delta.snapshotPartitions).
    snapshot_partitions: int = 1
    trigger: str = "processing-time"
    trigger_interval: str = "10 seconds"
    # The nice value of the driver JVM's JIT compiler threads during a real-time run, so that
    # batches get the cores first and compilation the idle time between triggers
    # (flight_gold.spark.jit); 0 leaves them as the JVM made them.
    jit_nice: int = 10
    queries: tuple[str, ...] = QUERY_NAMES
    max_files_per_trigger: int | None = None
    max_bytes_per_trigger: str | None = None
    thresholds: AnomalyThresholds = field(default_factory=AnomalyThresholds)
    # Rows stamped further than this ahead of the wall clock are dropped (counted) before the
    # watermark sees them: one row from a bad clock would otherwise make every real row "late".
    # Well under both watermark delays (2 and 6 minutes): OpenSky stamps positions on its own
    # servers, so a row from the future is a clock error, not traffic.
    max_future_skew: str = "60 seconds"
    # The streaming job compacts its own Gold tables (OPTIMIZE, right after an append) when the
    # last compaction is older than this; "0" or "off" disables it. The stream is the only
    # writer of a Gold table's log: see flight_gold.spark.compaction.
    compact_interval: str = "1 hour"
    # spark.cores.max of the streaming job and of the maintenance job on a spark:// master, so
    # that both get executors on a small cluster (the compose worker has 2 cores).
    spark_cores_max: int = 1
    maintenance_cores_max: int = 1
    # --full-refresh (a flag only, never from the environment: it deletes Gold rows).
    full_refresh: bool = False
    jars_cache: str = DEFAULT_JARS_CACHE
    # S3A settings, used only when lakehouse_root is s3a://; credentials come from the standard
    # AWS environment variables (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), never from here.
    s3_endpoint: str | None = None
    s3_path_style_access: bool = True
    log_level: str = "WARN"
    # What a continuous run logs: per query at most one gold_progress line per this interval, plus
    # every batch that wrote Gold or dropped rows ("0 seconds": every batch). A one-shot run
    # (available-now) logs every batch: its log is bounded by its input, not by time.
    progress_log_every: str = "1 minute"
    # Rows of the job's per-batch metrics table (<root>/_metrics/gold_stream_progress) older than
    # this are deleted by the job's hourly upkeep.
    metrics_retention: str = "7 days"
    # The driver's Spark UI port, which serves Prometheus metrics at /metrics/prometheus: a port,
    # "0" for any free one (logged), "off" for no UI and no endpoint.
    metrics_port: str = "4040"
    # Supervision of the continuous modes by the Airflow task: the first restart delay after an
    # unplanned stop, doubled at each stop in a row up to the cap.
    stream_restart_delay: str = "5 seconds"
    stream_restart_max_delay: str = "5 minutes"
    # At most one message per alert channel per this interval about the stream itself; what
    # happens in between is summarised in the next one. "0 seconds": no limit.
    stream_alert_interval: str = "5 minutes"
    # Gold is stale when its newest window lags what Silver_ML's data closes by more than this.
    freshness_threshold: str = "10 minutes"
    # gold_housekeeping removes Airflow metadata and task logs older than this many days.
    airflow_retention_days: int = 30

    def __post_init__(self) -> None:
        if not self.lakehouse_root:
            raise ConfigError("LAKEHOUSE_ROOT is empty")
        if self.trigger not in JOB_TRIGGERS:
            raise ConfigError(f"trigger must be one of {', '.join(JOB_TRIGGERS)}, got {self.trigger!r}")
        unknown = [q for q in self.queries if q not in QUERY_NAMES]
        if unknown or not self.queries:
            raise ConfigError(
                f"queries must be among {', '.join(QUERY_NAMES)}, got {','.join(self.queries)!r}"
            )
        for name in ("trigger_interval", "max_future_skew"):
            value = getattr(self, name)
            if not is_interval(value):
                raise ConfigError(f"{name} must look like '10 seconds' or '2 minutes', got {value!r}")
        if self.compact_interval.strip().lower() not in COMPACTION_OFF and not is_interval(
            self.compact_interval
        ):
            raise ConfigError(
                f"compact_interval must look like '1 hour' or '30 minutes', or be 0/off, "
                f"got {self.compact_interval!r}"
            )
        for name in ("spark_cores_max", "maintenance_cores_max", "snapshot_partitions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.jit_nice <= 19:
            raise ConfigError(f"jit_nice must be a nice value from 0 to 19, got {self.jit_nice}")
        if self.shuffle_partitions < 1:
            raise ConfigError(f"shuffle_partitions must be >= 1, got {self.shuffle_partitions}")
        if self.max_files_per_trigger is not None and self.max_files_per_trigger < 1:
            raise ConfigError(f"max_files_per_trigger must be >= 1, got {self.max_files_per_trigger}")
        for name in (
            "progress_log_every",
            "metrics_retention",
            "stream_restart_delay",
            "stream_restart_max_delay",
            "stream_alert_interval",
            "freshness_threshold",
        ):
            value = getattr(self, name)
            if not is_duration(value):
                raise ConfigError(
                    f"{name} must look like '30 seconds', '5 minutes' or '7 days', got {value!r}"
                )
        for name in ("metrics_retention", "stream_restart_max_delay", "freshness_threshold"):
            if duration_seconds(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be longer than 0, got {getattr(self, name)!r}")
        if duration_seconds(self.stream_restart_delay) > duration_seconds(self.stream_restart_max_delay):
            raise ConfigError(
                f"stream_restart_delay ({self.stream_restart_delay}) must not exceed "
                f"stream_restart_max_delay ({self.stream_restart_max_delay})"
            )
        port = self.metrics_port.strip().lower()
        if port != "off" and not (port.isdigit() and 0 <= int(port) <= 65535):
            raise ConfigError(f"metrics_port must be a port number, 0 (any free port) or off, got {port!r}")
        if self.airflow_retention_days < 1:
            raise ConfigError(f"airflow_retention_days must be >= 1, got {self.airflow_retention_days}")
        t = self.thresholds
        if not (t.altitude_min_m < t.altitude_max_m and t.velocity_min_kmh < t.velocity_max_kmh):
            raise ConfigError(f"anomaly thresholds must have min < max, got {t}")

    @property
    def is_s3(self) -> bool:
        return is_s3(self.lakehouse_root)

    @property
    def compact_interval_s(self) -> float | None:
        """Seconds between two compactions of a Gold table by the stream; None when off."""
        value = self.compact_interval.strip().lower()
        return None if value in COMPACTION_OFF else interval_seconds(value)

    @property
    def metrics_ui_port(self) -> int | None:
        """The Spark UI port serving /metrics/prometheus; None when metrics_port is off."""
        port = self.metrics_port.strip().lower()
        return None if port == "off" else int(port)

    @property
    def paths(self) -> LakehousePaths:
        return LakehousePaths(self.lakehouse_root)

    def replace(self, **changes: Any) -> GoldConfig:
        return dataclasses.replace(self, **changes)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> GoldConfig:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for spec in _SETTINGS:
            raw = env.get(spec.env) if spec.env else None
            if raw is not None and raw != "":
                values[spec.name] = spec.parse(raw, spec.env)
        thresholds = {}
        for name, var in _THRESHOLD_ENV.items():
            raw = env.get(var)
            if raw:
                thresholds[name] = parse_float(raw, var)
        if thresholds:
            values["thresholds"] = AnomalyThresholds(**thresholds)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "lakehouse_root" in values:
            values["lakehouse_root"] = normalize_root(values["lakehouse_root"])
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds one flag per setting; their defaults are None so that the environment shows through."""
        for spec in _SETTINGS:
            if spec.flag:
                where = f"env {spec.env}; " if spec.env else ""
                parser.add_argument(
                    spec.flag,
                    dest=spec.name,
                    default=None,
                    help=spec.help + f" ({where}default {getattr(cls, spec.name, None)!r})",
                    **spec.argparse_kwargs,
                )

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> GoldConfig:
        overrides = {spec.name: getattr(args, spec.name, None) for spec in _SETTINGS if spec.flag}
        return cls.from_env(env, **overrides)

    @classmethod
    def parse_job_args(
        cls, prog: str, doc: str, argv: list[str] | None = None, extra: Any = None
    ) -> tuple[GoldConfig, argparse.Namespace]:
        """A job's command line: every setting's flag (plus what `extra(parser)` adds); a bad
        value ends the process with exit code 2 and a one-line message naming the setting."""
        parser = argparse.ArgumentParser(
            prog=prog,
            description=doc.split("\n\n")[0],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        cls.add_arguments(parser)
        if extra is not None:
            extra(parser)
        args = parser.parse_args(argv)
        try:
            return cls.from_args(args), args
        except ConfigError as exc:
            parser.exit(EXIT_BAD_INPUT, f"{prog}: configuration error: {exc}\n")


@dataclass(frozen=True)
class _Setting:
    name: str
    env: str | None  # None: a flag only
    flag: str | None
    parse: Any
    help: str
    argparse_kwargs: dict = field(default_factory=dict)


_SETTINGS = (
    _Setting(
        "lakehouse_root",
        "LAKEHOUSE_ROOT",
        "--lakehouse-root",
        parse_str,
        "storage root: a local folder or s3a://bucket/prefix",
        {"metavar": "URI"},
    ),
    _Setting("spark_master", "SPARK_MASTER", "--master", parse_str, "Spark master URL"),
    _Setting(
        "shuffle_partitions",
        "GOLD_SHUFFLE_PARTITIONS",
        "--shuffle-partitions",
        parse_int,
        "spark.sql.shuffle.partitions",
        {"type": int},
    ),
    _Setting(
        "snapshot_partitions",
        "GOLD_SNAPSHOT_PARTITIONS",
        None,
        parse_int,
        "spark.databricks.delta.snapshotPartitions: tasks of a Delta state reconstruction",
    ),
    _Setting(
        "jit_nice",
        "GOLD_JIT_NICE",
        None,
        parse_int,
        "nice value (0-19) of the driver JVM's JIT compiler threads during a real-time run; 0: unchanged",
    ),
    _Setting(
        "trigger",
        "GOLD_TRIGGER",
        "--trigger",
        parse_str,
        "processing-time: run until stopped; available-now: process what is there and exit; "
        "available-now-loop: an available-now run every trigger interval, until stopped",
        {"choices": JOB_TRIGGERS},
    ),
    _Setting(
        "trigger_interval",
        "GOLD_TRIGGER_INTERVAL",
        "--trigger-interval",
        parse_str,
        "micro-batch interval (processing-time), or run interval (available-now-loop)",
    ),
    _Setting(
        "queries",
        "GOLD_QUERIES",
        "--queries",
        parse_table_list,
        "comma-separated: flight_phase_counts, anomaly_alerts, or both",
        {"type": lambda s: parse_table_list(s, "--queries")},
    ),
    _Setting(
        "max_files_per_trigger",
        "GOLD_MAX_FILES_PER_TRIGGER",
        "--max-files-per-trigger",
        parse_int,
        "Delta source maxFilesPerTrigger (catch-up batch size)",
        {"type": int},
    ),
    _Setting(
        "max_bytes_per_trigger",
        "GOLD_MAX_BYTES_PER_TRIGGER",
        "--max-bytes-per-trigger",
        parse_str,
        "Delta source maxBytesPerTrigger, e.g. 256m",
    ),
    _Setting(
        "max_future_skew",
        "GOLD_MAX_FUTURE_SKEW",
        "--max-future-skew",
        parse_str,
        "rows further ahead of the wall clock are dropped and counted",
    ),
    _Setting(
        "compact_interval",
        "GOLD_COMPACT_INTERVAL",
        "--compact-interval",
        parse_str,
        "the job compacts each Gold table (OPTIMIZE) when its last compaction is older than "
        "this, e.g. '1 hour'; 0 or off: never",
    ),
    _Setting(
        "spark_cores_max",
        "GOLD_SPARK_CORES_MAX",
        None,
        parse_int,
        "spark.cores.max of the streaming job on a spark:// master",
    ),
    _Setting(
        "maintenance_cores_max",
        "GOLD_MAINTENANCE_CORES_MAX",
        None,
        parse_int,
        "spark.cores.max of the maintenance job on a spark:// master",
    ),
    _Setting(
        "full_refresh",
        None,
        "--full-refresh",
        parse_bool,
        "delete every row of the chosen Gold tables and their checkpoints, then rebuild them "
        "from all of Silver_ML",
        {"action": "store_const", "const": True},
    ),
    _Setting("jars_cache", "GOLD_JARS_CACHE", None, parse_str, "Ivy cache for the Delta jars"),
    _Setting(
        "s3_endpoint",
        "S3_ENDPOINT",
        "--s3-endpoint",
        parse_str,
        "S3A endpoint (MinIO or another S3-compatible store)",
    ),
    _Setting("s3_path_style_access", "S3_PATH_STYLE_ACCESS", None, parse_bool, "S3A path-style access"),
    _Setting("log_level", "GOLD_SPARK_LOG_LEVEL", None, parse_str, "Spark log level"),
    _Setting(
        "progress_log_every",
        "GOLD_PROGRESS_LOG_EVERY",
        "--progress-log-every",
        parse_str,
        "continuous modes: at most one gold_progress line per query and interval, plus every batch "
        "that wrote Gold or dropped rows ('0 seconds': every batch)",
    ),
    _Setting(
        "metrics_retention",
        "GOLD_METRICS_RETENTION",
        "--metrics-retention",
        parse_str,
        "age of the rows kept in the per-batch metrics table _metrics/gold_stream_progress",
    ),
    _Setting(
        "metrics_port",
        "GOLD_METRICS_PORT",
        "--metrics-port",
        parse_str,
        "driver port of the Spark UI and its Prometheus endpoint /metrics/prometheus "
        "(0: any free port, off: none)",
    ),
    _Setting("stream_restart_delay", "GOLD_STREAM_RESTART_DELAY", None, parse_str, "first restart delay"),
    _Setting(
        "stream_restart_max_delay", "GOLD_STREAM_RESTART_MAX_DELAY", None, parse_str, "longest restart delay"
    ),
    _Setting(
        "stream_alert_interval",
        "GOLD_STREAM_ALERT_INTERVAL",
        None,
        parse_str,
        "at most one stream message per channel per interval",
    ),
    _Setting("freshness_threshold", "GOLD_FRESHNESS_THRESHOLD", None, parse_str, "Gold staleness threshold"),
    _Setting(
        "airflow_retention_days",
        "GOLD_AIRFLOW_RETENTION_DAYS",
        None,
        parse_int,
        "days of Airflow metadata and task logs kept",
    ),
)

_THRESHOLD_ENV = {
    "altitude_min_m": "ANOMALY_ALTITUDE_MIN_M",
    "altitude_max_m": "ANOMALY_ALTITUDE_MAX_M",
    "velocity_min_kmh": "ANOMALY_VELOCITY_MIN_KMH",
    "velocity_max_kmh": "ANOMALY_VELOCITY_MAX_KMH",
}
