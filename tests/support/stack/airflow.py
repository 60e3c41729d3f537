"""Airflow in the native stack, as compose runs it: `airflow db migrate` and the unmodified
docker/airflow-init.sh (the airflow-init service), then api-server, scheduler, dag-processor and
triggerer as separate processes on PostgreSQL with the LocalExecutor, each with its compose
service's environment; and a small REST client for it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.parse import quote

from support.stack import procs
from support.stack.compose import SIMPLE_AUTH_MANAGER, translate_command
from support.stack.core import VENV_BIN
from support.stack.services import java_home

# Native-only flags: the log server binds all interfaces on the fixed port 8793; every process
# here shares one AIRFLOW_HOME, so the API server reads task logs from disk, as with compose's
# shared airflow-logs volume.
NATIVE_FLAGS = {"airflow-scheduler": ["--skip-serve-logs"], "airflow-triggerer": ["--skip-serve-logs"]}


class AirflowMixin:
    """start_airflow(); self is a support.stack.Stack."""

    def airflow_env(self, service: str) -> dict[str, str]:
        """The compose service's environment, translated, with the native-only settings."""
        af = self.info["endpoints"]["airflow"]
        env = self.compose_env(service)
        env.update(
            {
                "AIRFLOW_HOME": af["home"],
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{af['user']}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(Path(af["home"]) / "passwords.json"),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(af["port"]),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(af["health_port"]),
                "SPARK_LOCAL_IP": "127.0.0.1",
                # The driver's scratch space (a copy of every --packages jar): in the stack's
                # folder, not in the machine's /tmp, where a killed driver would leave it.
                "SPARK_LOCAL_DIRS": str(self.base / "spark" / "driver"),
                "JAVA_HOME": java_home(),
                "PYSPARK_PYTHON": str(VENV_BIN / "python"),
            }
        )
        return env

    def start_airflow(self) -> None:
        af = self.info["endpoints"]["airflow"]
        home = Path(af["home"])
        home.mkdir(parents=True, exist_ok=True)
        # What the image's entrypoint does with _AIRFLOW_WWW_USER_*: the admin user, here of
        # SimpleAuthManager (its password file; users come from the environment).
        (home / "passwords.json").write_text(json.dumps({af["user"]: af["password"]}) + "\n")
        (home / "passwords.json").chmod(0o600)
        airflow = str(VENV_BIN / "airflow")
        init_env = self.airflow_env("airflow-init")
        # _AIRFLOW_DB_MIGRATE of the image's entrypoint.
        self.run_once("airflow-db-migrate", [airflow, "db", "migrate"], init_env)
        init_command = translate_command(
            self.compose["services"]["airflow-init"]["command"], {}, self.translation
        )
        started = time.monotonic()
        # The API server, DAG processor and triggerer start while airflow-init.sh creates the
        # connections (compose waits; they use no connection, so only time is at stake); the
        # scheduler, which runs the tasks that do, starts after it, as in compose.
        init_error: list[BaseException] = []

        def init() -> None:
            try:
                self.run_once("airflow-init", init_command, init_env)
            except BaseException as exc:  # re-raised in the main thread
                init_error.append(exc)

        thread = threading.Thread(target=init, daemon=True)
        thread.start()
        for service in ("airflow-apiserver", "airflow-dag-processor", "airflow-triggerer"):
            self._launch_airflow(service)
        thread.join()
        if init_error:
            raise init_error[0]
        self._launch_airflow("airflow-scheduler")
        url = af["url"]
        self.wait_ready(
            "airflow-apiserver",
            lambda: procs.http_get(f"{url}/api/v2/monitor/health")[0] == 200,
            300,
            started,
        )

        def healthy(component: str):
            return lambda: (
                json.loads(procs.http_get(f"{url}/api/v2/monitor/health")[1])[component]["status"]
                == ("healthy")
            )

        self.wait_ready("airflow-scheduler", healthy("scheduler"), 300, started)
        self.wait_ready("airflow-dag-processor", healthy("dag_processor"), 300, started)
        self.wait_ready("airflow-triggerer", healthy("triggerer"), 300, started)

    def _launch_airflow(self, service: str) -> None:
        command = self.compose["services"][service]["command"]
        argv = [str(VENV_BIN / "airflow"), *command, *NATIVE_FLAGS.get(service, [])]
        # The scheduler, DAG processor and triggerer stop first: their tasks report their end
        # through the API server, and everything through PostgreSQL.
        phase = 2 if service == "airflow-apiserver" else 1
        self.launch(service, argv, self.airflow_env(service), stop_phase=phase)

    def scheduler_healthy(self) -> bool:
        port = self.info["endpoints"]["airflow"]["health_port"]
        return procs.http_get(f"http://127.0.0.1:{port}/health")[0] == 200


class AirflowClient:
    """The REST API v2 the UI uses, with a token of the stack's admin user."""

    def __init__(self, endpoint: dict):
        self.url, self.user, self.password = endpoint["url"], endpoint["user"], endpoint["password"]
        self._token = None

    def token(self) -> str:
        if self._token is None:
            reply = procs.http_json(
                f"{self.url}/auth/token", "POST", {"username": self.user, "password": self.password}
            )
            self._token = reply["access_token"]
        return self._token

    def api(self, method: str, path: str, body=None):
        return procs.http_json(f"{self.url}/api/v2{path}", method, body, token=self.token())

    def get(self, path: str, absolute: bool = False):
        return procs.http_json(
            f"{self.url}{path}" if absolute else f"{self.url}/api/v2{path}", token=self.token()
        )

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        return self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})[
            "dag_run_id"
        ]

    @staticmethod
    def _run_path(dag_id: str, run_id: str) -> str:
        return f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.api("GET", self._run_path(dag_id, run_id))

    def task(self, dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> dict:
        path = f"{self._run_path(dag_id, run_id)}/taskInstances/{task_id}"
        return self.api("GET", path + (f"/{map_index}" if map_index is not None else ""))

    def tasks(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"{self._run_path(dag_id, run_id)}/taskInstances")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        path = f"{self._run_path(dag_id, run_id)}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.api("GET", path)["value"]

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
        path = f"{self._run_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}"
        content = self.api("GET", path + "?full_content=true")["content"]
        if isinstance(content, list):
            return [str(e.get("event", "")) if isinstance(e, dict) else str(e) for e in content]
        return str(content).splitlines()

    def connections(self) -> dict[str, dict]:
        return {c["connection_id"]: c for c in self.api("GET", "/connections?limit=100")["connections"]}

    def import_errors(self) -> list[dict]:
        return self.api("GET", "/importErrors")["import_errors"]
