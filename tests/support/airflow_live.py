"""The project's Airflow as a user starts it (`scripts/airflow_local.sh start`, which `make airflow`
runs: `airflow standalone` with the repo's DAGs and plugins) in a temporary AIRFLOW_HOME, driven
through the REST API the UI uses. Shared by the live tests and the browser test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import requests

from support.net import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "airflow_local.sh"
# The machine is shared and slow: a generous bound for each step that waits on Spark or Airflow.
STEP_TIMEOUT_S = 900


def wait_for(what: str, check, timeout: float = STEP_TIMEOUT_S, interval: float = 2.0, details=lambda: ""):
    """Polls `check` until it returns something truthy (returned); fails the test after `timeout`
    seconds: a bound on waiting, not a speed goal."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{details()}")
        time.sleep(interval)


def airflow_env(home: Path, lakehouse: Path, **extra: str) -> dict[str, str]:
    """The environment of `make airflow` on a temporary home and lakehouse: this process's, minus
    its Airflow settings and connections (the test's own Airflow is configured in conftest)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_PORT": str(free_port()),
            "LAKEHOUSE_ROOT": str(lakehouse),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


class LiveAirflow:
    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env = home, env
        self.port = int(env["AIRFLOW_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        self.proc: subprocess.Popen | None = None
        self.sid: int | None = None

    # -- process ---------------------------------------------------------------------------------

    def start(self) -> LiveAirflow:
        log = open(self.home / "airflow_local.out", "ab")
        # The script in a process group of its own, so that no signal meant for pytest reaches it.
        self.proc = subprocess.Popen(
            [str(SCRIPT), "start"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for("Airflow to be healthy", self._ready, details=self.diagnostics)
        self.sid = int((self.home / "airflow-local.pid").read_text())
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"scripts/airflow_local.sh exited with {self.proc.returncode}\n{self.diagnostics()}")
        return "Airflow is ready" in self.script_output()

    def script_output(self) -> str:
        path = self.home / "airflow_local.out"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def password(self) -> str:
        return json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

    def session_processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if self.sid is not None and os.getsid(p.pid) == self.sid:
                    found.append(p)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def stop(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPT), "stop"], env=self.env, capture_output=True, text=True, timeout=300
        )

    def kill_everything(self) -> None:
        """Last resort of the teardown: nothing this test started may outlive it."""
        for p in self.session_processes():
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def diagnostics(self) -> str:
        standalone = self.home / "logs" / "standalone.log"
        tail = standalone.read_text(errors="replace")[-4000:] if standalone.exists() else ""
        return f"--- airflow_local.sh ---\n{self.script_output()[-3000:]}\n--- standalone.log ---\n{tail}"

    # -- REST API --------------------------------------------------------------------------------

    def login(self) -> str:
        password = self.password
        assert f"admin / {password}" in self.script_output()
        response = requests.post(
            f"{self.base}/auth/token", json={"username": "admin", "password": password}, timeout=30
        )
        assert response.status_code in (200, 201), response.text
        token = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"
        return token

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.base}/api/v2{path}", timeout=60, **kwargs)

    def wait_for_dags(self, *dag_ids: str) -> None:
        wait_for(
            f"the DAG processor to load {', '.join(dag_ids)}",
            lambda: all(self.api("GET", f"/dags/{d}").status_code == 200 for d in dag_ids),
            details=self.diagnostics,
        )

    def unpause(self, dag_id: str) -> None:
        # New DAGs start paused; the UI's toggle sends this.
        assert self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        response = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        assert response.status_code == 200, response.text
        return response.json()["state"]

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
        response = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
        )
        assert response.status_code == 200, response.text
        lines = []
        for entry in response.json()["content"]:
            if not isinstance(entry, dict):
                continue
            lines.append(str(entry.get("event", "")))
            # A task's exception comes as "Task failed with exception" plus its details, which
            # the UI shows under that line.
            details = entry.get("error_detail") or []
            lines += [str(d.get("exc_value", "")) for d in details if isinstance(d, dict)]
        return lines

    def mark_task(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        # What the UI's "Mark as failed" / "Mark as success" of a task instance sends.
        response = self.api(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}",
            json={"new_state": state},
        )
        assert response.status_code == 200, response.text

    def wait_run(self, dag_id: str, run_id: str, expected: str = "success", task_ids=()) -> None:
        state = wait_for(
            f"run {run_id} of {dag_id} to finish",
            lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s,
            interval=3,
            details=lambda: self.run_details(dag_id, run_id, task_ids),
        )
        assert state == expected, self.run_details(dag_id, run_id, task_ids)

    def run_details(self, dag_id: str, run_id: str, task_ids=()) -> str:
        lines = []
        for task_id in task_ids:
            try:
                ti = self.task(dag_id, run_id, task_id)
                lines.append(f"--- {task_id}: {ti['state']} (try {ti['try_number']}) ---")
                if ti["try_number"]:
                    lines.extend(self.task_log(dag_id, run_id, task_id, ti["try_number"])[-60:])
            except Exception as exc:  # diagnostics must never hide the real failure
                lines.append(f"--- {task_id}: {exc!r}")
        return "\n".join(lines)
