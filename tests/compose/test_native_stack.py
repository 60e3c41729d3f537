"""The native stack (tests/support/stack) applies docker-compose.yaml as a real Compose v2 renders
it: every variable of every service it runs, translated only in hosts, ports and paths, and it
refuses what it cannot apply. No process is started here: the stack is only planned."""

from __future__ import annotations

import pytest

from support.stack import DriftError, Stack, StackConfig
from support.stack.compose import (
    ENTRYPOINT_VARIABLES,
    NATIVE_ONLY,
    REPLACED,
    SIMPLE_AUTH_MANAGER,
    Translation,
    service_env,
    translate_command,
)
from support.stack.core import REPO

AIRFLOW = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
)
# Where compose names a service or a container path, and so the only values that may differ.
TRANSLATED = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "SPARK_LOCAL_HOSTNAME",
}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("stack") / "stack.json")
    stack.plan(StackConfig(base_dir=str(tmp_path_factory.mktemp("base"))))
    return stack


def test_every_compose_variable_of_every_airflow_service_is_applied(planned):
    ep = planned.info["endpoints"]
    for service in AIRFLOW:
        compose = planned.compose["services"][service]["environment"]
        native = planned.airflow_env(service)
        for name, value in compose.items():
            if name in ENTRYPOINT_VARIABLES:
                assert name not in native, (service, name)
            elif name in REPLACED:
                assert native[name] == SIMPLE_AUTH_MANAGER, (service, name)
            elif name in TRANSLATED:
                assert native[name] != value, (service, name)
            else:
                assert native[name] == value, (service, name, native.get(name), value)
        assert set(native) - set(compose) <= set(NATIVE_ONLY), (service, set(native) - set(compose))
        env = native
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(
            f"@127.0.0.1:{ep['postgres']['port']}/airflow"
        )
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{ep['airflow']['url']}/execution/"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO / "plugins")
        assert env["LAKEHOUSE_ROOT"] == "s3a://flight-lakehouse" and env["S3_ENDPOINT"] == ep["s3"]["url"]
        assert env["SPARK_MASTER"] == ep["spark"]["master"]
    assert planned.airflow_env("airflow-scheduler")["SPARK_LOCAL_HOSTNAME"] == "127.0.0.1"
    init = planned.airflow_env("airflow-init")
    assert (init["SMTP_HOST"], init["SMTP_PORT"]) == ("127.0.0.1", str(ep["smtp"]["port"]))
    assert init["SLACK_WEBHOOK_URL"] == ep["slack"]["url"]


def test_the_cluster_the_feed_and_the_init_script_follow_compose(planned):
    ep = planned.info["endpoints"]
    worker = planned.compose["services"]["spark-worker"]
    args = translate_command(worker["command"][1:], {"--webui-port": "1234"}, planned.translation)
    assert args == [
        "org.apache.spark.deploy.worker.Worker",
        ep["spark"]["master"],
        "--cores",
        "2",
        "--memory",
        "1536m",
        "--webui-port",
        "1234",
    ]
    # Executors inherit the worker's environment: the lakehouse's, as compose gives it.
    assert planned.compose_env("spark-worker")["S3_ENDPOINT"] == ep["s3"]["url"]
    assert set(planned.compose_env("silver-replay")) == set(planned.compose_env("spark-worker"))
    init = translate_command(planned.compose["services"]["airflow-init"]["command"], {}, planned.translation)
    assert init == ["bash", str(REPO / "docker" / "airflow-init.sh")]


def test_what_the_native_stack_cannot_apply_stops_it(planned):
    translation = Translation({("postgres", 5432): "127.0.0.1:5999"}, {"postgres", "queue"})

    def render(env):
        return {"services": {"x": {"environment": env}}}

    assert service_env(render({"DB": "postgresql://u:p@postgres/db"}), "x", translation) == {
        "DB": "postgresql://u:p@127.0.0.1:5999/db"
    }
    with pytest.raises(DriftError, match="QUEUE_URL.*queue:6379"):
        service_env(render({"QUEUE_URL": "redis://queue:6379/0"}), "x", translation)
    with pytest.raises(DriftError, match="AIRFLOW__CORE__AUTH_MANAGER"):
        service_env(render({"AIRFLOW__CORE__AUTH_MANAGER": "my.AuthManager"}), "x", translation)
    with pytest.raises(DriftError, match="_AIRFLOW_WWW_USER_FIRSTNAME"):
        service_env(render({"_AIRFLOW_WWW_USER_FIRSTNAME": "Ada"}), "x", translation)
    with pytest.raises(DriftError, match="/opt/flight-gold/nowhere"):
        service_env(render({"FOLDER": "/opt/flight-gold/nowhere"}), "x", translation)
