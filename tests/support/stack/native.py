"""The Stack: docker-compose.yaml's topology as native processes on loopback (see __init__)."""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.stack import compose
from support.stack.airflow import AirflowClient, AirflowMixin
from support.stack.core import REPO, StackBase
from support.stack.services import ServicesMixin

DEFAULT_STATE = REPO / ".cache" / "stack" / "stack.json"

# What a developer's stack and the test run by default on top of .env.example (all are .env
# settings of docker-compose.yaml): two workers of 2 cores and 1.5 GiB, executors of 1 core and
# 640 MiB, so that the stream (2 cores, one executor on each worker) and a maintenance run (1
# core) run side by side. With 1 core per worker the second application waits, 0 cores, until
# the first ends.
DEFAULT_SETTINGS = {
    "SPARK_WORKER_CORES": "2",
    "SPARK_WORKER_MEMORY": "1536m",
    "SPARK_EXECUTOR_MEMORY": "640m",
    "GOLD_SPARK_CORES_MAX": "2",
    "REPLAY_SPEED": "10",
}


@dataclass
class StackConfig:
    workers: int = 2
    # Extra .env settings (over DEFAULT_SETTINGS): whatever docker-compose.yaml reads from .env.
    settings: dict[str, str] = field(default_factory=dict)
    smtp: str = "receiver"  # or "mailpit" (compose's; built with go install the first time)
    replay: bool = True  # compose's silver-replay; the test starts its own
    base_dir: str | None = None
    keep: bool = False


class Stack(StackBase, ServicesMixin, AirflowMixin):
    """Start with start(), stop with stop(); load() a stack another process started."""

    def __init__(self, state_file: Path = DEFAULT_STATE, base: Path | None = None, keep: bool = False):
        super().__init__(state_file, base, keep)
        self.config = StackConfig()

    # -- plan: ports, the .env, the compose rendering ------------------------------------------

    def plan(self, config: StackConfig) -> None:
        self.config = config
        if self.base is None:
            self.base = Path(config.base_dir or tempfile.mkdtemp(prefix="flight-gold-stack-"))
            self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o711)  # PostgreSQL's user must reach its folder
        self.keep = config.keep
        ep = self.info["endpoints"]
        p = self.port
        ep["postgres"] = {"port": p()}
        s3_port = p()
        ep["s3"] = {"port": s3_port, "url": f"http://127.0.0.1:{s3_port}"}
        records = self.base / "receivers"
        records.mkdir(exist_ok=True)
        ep["smtp"] = {"kind": config.smtp, "port": p(), "records": str(records / "mail.jsonl")}
        if config.smtp == "mailpit":
            ep["smtp"]["http_port"] = p()
            ep["smtp"]["http"] = f"http://127.0.0.1:{ep['smtp']['http_port']}"
        slack_port = p()
        ep["slack"] = {
            "port": slack_port,
            "url": f"http://127.0.0.1:{slack_port}/services/T000/B000/placeholder",
            "records": str(records / "slack.jsonl"),
        }
        spark_port, spark_ui = p(), p()
        ep["spark"] = {
            "port": spark_port,
            "master": f"spark://127.0.0.1:{spark_port}",
            "ui_port": spark_ui,
            "ui": f"http://127.0.0.1:{spark_ui}",
            "worker_ui_ports": [p() for _ in range(config.workers)],
        }
        ep["spark"]["worker_uis"] = [f"http://127.0.0.1:{w}" for w in ep["spark"]["worker_ui_ports"]]
        af_port = p()
        settings = {
            **DEFAULT_SETTINGS,
            **config.settings,
            # The native hosts and ports, where .env names the compose services'.
            "AIRFLOW_PORT": str(af_port),
            "S3_ENDPOINT": ep["s3"]["url"],
            "SPARK_MASTER_URL": ep["spark"]["master"],
            "SPARK_UI_PORT": str(spark_ui),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(ep["smtp"]["port"]),
            "SLACK_WEBHOOK_URL": ep["slack"]["url"],
        }
        env_file = self.base / ".env"
        self.settings = compose.env_file_values(settings)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))
        env_file.chmod(0o600)
        ep["airflow"] = {
            "port": af_port,
            "url": f"http://127.0.0.1:{af_port}",
            "home": str(self.base / "airflow"),
            "health_port": p(),
            "user": self.settings["AIRFLOW_ADMIN_USER"],
            "password": self.settings["AIRFLOW_ADMIN_PASSWORD"],
        }
        self.info["settings_file"] = str(env_file)
        self.info["lakehouse_root"] = f"s3a://{self.settings['LAKEHOUSE_BUCKET']}"
        self.load_compose()
        self.save()

    def load_compose(self) -> None:
        """The compose rendering with the stack's .env, and how to translate it."""
        ep = self.info["endpoints"]
        self.settings = compose.read_env_file(Path(self.info["settings_file"]))
        self.compose = compose.render(Path(self.info["settings_file"]))
        native = {
            ("postgres", 5432): f"127.0.0.1:{ep['postgres']['port']}",
            ("airflow-apiserver", 8080): f"127.0.0.1:{ep['airflow']['port']}",
            ("spark-master", 7077): f"127.0.0.1:{ep['spark']['port']}",
            ("spark-master", 8080): f"127.0.0.1:{ep['spark']['ui_port']}",
            ("minio", 9000): f"127.0.0.1:{ep['s3']['port']}",
            ("mailpit", 1025): f"127.0.0.1:{ep['smtp']['port']}",
        }
        self.translation = compose.Translation(native, set(self.compose["services"]))

    def compose_env(self, service: str) -> dict[str, str]:
        return compose.service_env(self.compose, service, self.translation)

    # -- start ---------------------------------------------------------------------------------

    def start(self, config: StackConfig | None = None) -> dict:
        """Everything, healthy; on any failure the stack is stopped again and the error raised.
        PostgreSQL -> Airflow in one thread; S3, the receivers and the Spark cluster in others."""
        self.plan(config or StackConfig())
        started = time.monotonic()
        errors: list[BaseException] = []

        def step(*names: str) -> None:
            for name in names:
                if errors:
                    return
                began = time.monotonic()
                try:
                    getattr(self, f"start_{name}")()
                except BaseException as exc:  # re-raised below, after stopping what started
                    errors.append(exc)
                    return
                self.info["timings"][f"{name} ready"] = round(time.monotonic() - began, 1)

        lines = [("postgres", "airflow"), ("s3",), ("smtp", "slack"), ("spark",)]
        threads = [threading.Thread(target=step, args=line, daemon=True) for line in lines]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            if self.config.replay:
                self.start_replay()
        except BaseException:
            self.stop()
            raise
        self.info["timings"]["stack ready"] = round(time.monotonic() - started, 1)
        self.save()
        return self.describe()

    @classmethod
    def load(cls, state_file: Path = DEFAULT_STATE) -> Stack:
        stack = super().load(state_file)
        stack.load_compose()
        return stack

    # -- faults and clients --------------------------------------------------------------------

    def s3_down(self) -> None:
        """The S3 server stops listening and cuts its connections (its data stays in memory)."""
        import signal

        self.send("s3", signal.SIGUSR1)

    def s3_up(self) -> None:
        import signal

        self.send("s3", signal.SIGUSR2)

    def airflow(self) -> AirflowClient:
        return AirflowClient(self.info["endpoints"]["airflow"])

    def lakehouse_env(self) -> dict[str, str]:
        """What a client of the lakehouse needs (LAKEHOUSE_ROOT, S3_ENDPOINT, AWS_*): compose's."""
        return self.compose_env("silver-replay")

    def describe(self) -> dict:
        return {
            "base": str(self.base),
            "endpoints": self.info["endpoints"],
            "timings": self.info["timings"],
            "processes": {
                k: {"pid": v.pid, "log": v.log, "ready_s": v.ready_s} for k, v in self.procs.items()
            },
        }
