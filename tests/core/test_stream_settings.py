"""The settings issue 20 adds (supervision, alerts about the stream, freshness, housekeeping, the
job's logs and metrics): defaults, environment and flags, clear errors naming the setting, and
the Spark settings of the metrics endpoint."""

from __future__ import annotations

import argparse

import pytest

from flight_gold.core.config import ConfigError, GoldConfig
from flight_gold.core.intervals import duration_seconds
from flight_gold.spark.session import loopback_env, metrics_conf, spark_conf


def test_defaults():
    c = GoldConfig.from_env({})
    assert (c.progress_log_every, c.metrics_retention, c.metrics_port) == ("1 minute", "7 days", "4040")
    assert (c.stream_restart_delay, c.stream_restart_max_delay, c.stream_alert_interval) == (
        "5 seconds",
        "5 minutes",
        "5 minutes",
    )
    assert (c.freshness_threshold, c.airflow_retention_days, c.metrics_ui_port) == ("10 minutes", 30, 4040)
    assert duration_seconds(c.metrics_retention) == 7 * 86400


def test_environment_and_flags():
    env = {
        "GOLD_PROGRESS_LOG_EVERY": "0 seconds",
        "GOLD_METRICS_RETENTION": "36 hours",
        "GOLD_METRICS_PORT": "off",
        "GOLD_STREAM_RESTART_DELAY": "1 second",
        "GOLD_STREAM_RESTART_MAX_DELAY": "2 minutes",
        "GOLD_STREAM_ALERT_INTERVAL": "0 seconds",
        "GOLD_FRESHNESS_THRESHOLD": "15 minutes",
        "GOLD_AIRFLOW_RETENTION_DAYS": "7",
    }
    c = GoldConfig.from_env(env)
    assert (c.progress_log_every, c.metrics_retention, c.metrics_ui_port) == ("0 seconds", "36 hours", None)
    assert (c.stream_restart_delay, c.stream_restart_max_delay, c.stream_alert_interval) == (
        "1 second",
        "2 minutes",
        "0 seconds",
    )
    assert (c.freshness_threshold, c.airflow_retention_days) == ("15 minutes", 7)
    parser = argparse.ArgumentParser()
    GoldConfig.add_arguments(parser)
    args = parser.parse_args(
        ["--progress-log-every", "30 seconds", "--metrics-port", "0", "--metrics-retention", "1 day"]
    )
    c = GoldConfig.from_args(args, env)
    assert (c.progress_log_every, c.metrics_ui_port, c.metrics_retention) == ("30 seconds", 0, "1 day")


@pytest.mark.parametrize(
    "env, named",
    [
        ({"GOLD_PROGRESS_LOG_EVERY": "every minute"}, "progress_log_every must look like"),
        ({"GOLD_METRICS_RETENTION": "0 days"}, "metrics_retention must be longer than 0"),
        ({"GOLD_METRICS_PORT": "http"}, "metrics_port must be a port number, 0 (any free port) or off"),
        ({"GOLD_METRICS_PORT": "70000"}, "metrics_port must be a port number"),
        ({"GOLD_STREAM_RESTART_DELAY": "10 minutes"}, "stream_restart_delay (10 minutes) must not exceed"),
        ({"GOLD_STREAM_ALERT_INTERVAL": "5"}, "stream_alert_interval must look like"),
        ({"GOLD_FRESHNESS_THRESHOLD": "0 minutes"}, "freshness_threshold must be longer than 0"),
        ({"GOLD_AIRFLOW_RETENTION_DAYS": "0"}, "airflow_retention_days must be >= 1"),
        ({"GOLD_AIRFLOW_RETENTION_DAYS": "a month"}, "GOLD_AIRFLOW_RETENTION_DAYS must be an integer"),
    ],
)
def test_bad_values_name_the_setting(env, named):
    with pytest.raises(ConfigError) as error:
        GoldConfig.from_env(env)
    assert named in str(error.value)


def test_the_metrics_endpoint_settings():
    off = GoldConfig.from_env({"GOLD_METRICS_PORT": "off"})
    assert metrics_conf(off) == {"spark.ui.enabled": "false"} and loopback_env(off, "local[2]") == {}
    on = GoldConfig.from_env({})
    conf = metrics_conf(on)
    assert (conf["spark.ui.enabled"], conf["spark.ui.port"], conf["spark.sql.streaming.metricsEnabled"]) == (
        "true",
        "4040",
        "true",
    )
    assert conf["spark.metrics.conf.*.sink.prometheusServlet.path"] == "/metrics/prometheus"
    assert conf["spark.metrics.namespace"] == "flight_gold"
    # Only the streaming job has a UI: spark_conf (maintenance, tests) keeps it off.
    assert spark_conf(on)["spark.ui.enabled"] == "false"
    assert loopback_env(on, "local[*]") == {"SPARK_LOCAL_IP": "127.0.0.1"}
    assert loopback_env(on, "spark://master:7077") == {}
