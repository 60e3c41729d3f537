"""Live: the project's Airflow (scripts/airflow_local.sh: api-server, scheduler, dag-processor,
triggerer) in a temporary AIRFLOW_HOME, driven through the REST API the UI uses.

1. trigger gold_streaming with {"trigger": "available-now"}: success, Gold = the independent
   computation;
2. trigger it in continuous mode, append Silver_ML while it runs and let batches land, mark the
   running task failed: the Spark driver (JVM and Python) is gone within 30 s, after a clean stop;
   the same in continuous-low-latency mode;
3. a new run resumes from the checkpoints: Gold = the independent computation over everything,
   no window twice;
4. stopping Airflow ends every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import psutil
import pytest
import requests

from flight_gold.core.config import GoldConfig
from flight_gold.feed.synthetic import generate
from flight_gold.feed.writer import append_silver
from flight_gold.spark.progress import PROGRESS_PREFIX
from support.expected import assert_gold_equal, expected_gold, read_delta

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "airflow_local.sh"
DAG_ID, SUBMIT = "gold_streaming", "run_gold_streams"
QUERIES = ("flight_phase_counts", "anomaly_alerts")
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
RATE, AIRCRAFT, SEED = 10, 30, 31

# The machine is shared and slow: a generous bound for each step that waits on Spark or Airflow.
STEP_TIMEOUT_S = 900
SPARK_GONE_WITHIN_S = 30


def silver_rows(first_row: int, n: int) -> pd.DataFrame:
    """Rows first_row .. first_row + n - 1 of one synthetic run: later chunks continue in time."""
    return generate(
        n, start=START, rate_per_s=RATE, aircraft=AIRCRAFT, anomaly_share=0.08, seed=SEED, first_row=first_row
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float = STEP_TIMEOUT_S, interval: float = 2.0, details=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{details()}")
        time.sleep(interval)


class LiveAirflow:
    def __init__(self, home: Path, port: int, env: dict[str, str]):
        self.home, self.port, self.env = home, port, env
        self.base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        self.proc: subprocess.Popen | None = None
        self.sid: int | None = None

    # -- process ---------------------------------------------------------------------------------

    def start(self) -> None:
        log = open(self.home / "airflow_local.out", "ab")
        # The script in a process group of its own, so that no signal meant for pytest reaches it.
        self.proc = subprocess.Popen(
            [str(SCRIPT), "start"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for("Airflow to be healthy", self._ready, details=self.diagnostics)
        self.sid = int((self.home / "airflow-local.pid").read_text())

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"scripts/airflow_local.sh exited with {self.proc.returncode}\n{self.diagnostics()}")
        return "Airflow is ready" in self.script_output()

    def script_output(self) -> str:
        path = self.home / "airflow_local.out"
        return path.read_text(errors="replace") if path.exists() else ""

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

    def login(self) -> None:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        assert "admin" in passwords and f"admin / {passwords['admin']}" in self.script_output()
        response = requests.post(
            f"{self.base}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30
        )
        assert response.status_code in (200, 201), response.text
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.base}/api/v2{path}", timeout=60, **kwargs)

    def trigger(self, conf: dict) -> str:
        response = self.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def run_state(self, run_id: str) -> str:
        response = self.api("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")
        assert response.status_code == 200, response.text
        return response.json()["state"]

    def task(self, run_id: str, task_id: str) -> dict:
        response = self.api("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def task_log(self, run_id: str, task_id: str, try_number: int) -> list[str]:
        response = self.api(
            "GET",
            f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
        )
        assert response.status_code == 200, response.text
        return [str(e.get("event", "")) for e in response.json()["content"] if isinstance(e, dict)]

    def mark_task_failed(self, run_id: str, task_id: str) -> None:
        # What the UI's "Mark as failed" of a task instance sends.
        response = self.api(
            "PATCH",
            f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}",
            json={"new_state": "failed"},
        )
        assert response.status_code == 200, response.text

    def wait_run(self, run_id: str, expected: str = "success") -> None:
        state = wait_for(
            f"run {run_id} to finish",
            lambda: (s := self.run_state(run_id)) in ("success", "failed") and s,
            interval=5,
            details=lambda: self.run_details(run_id),
        )
        assert state == expected, self.run_details(run_id)

    def run_details(self, run_id: str) -> str:
        lines = []
        for task_id in ("wait_for_silver_ml", SUBMIT):
            try:
                ti = self.task(run_id, task_id)
                lines.append(f"--- {task_id}: {ti['state']} (try {ti['try_number']}) ---")
                if ti["try_number"]:
                    lines.extend(self.task_log(run_id, task_id, ti["try_number"])[-60:])
            except Exception as exc:  # diagnostics must never hide the real failure
                lines.append(f"--- {task_id}: {exc!r}")
        return "\n".join(lines)


def spark_processes(config: GoldConfig) -> list[psutil.Process]:
    """The Spark driver JVM and the job's Python process of this test's lakehouse."""
    found = []
    for p in psutil.process_iter():
        try:
            cmdline = p.cmdline()
        except psutil.Error:
            continue
        if "jobs/streaming_gold.py" in " ".join(cmdline) and config.lakehouse_root in cmdline:
            found.append(p)
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def commits(config: GoldConfig, query: str) -> int:
    """Batches committed by a query's checkpoint."""
    folder = Path(config.paths.checkpoint(query)) / "commits"
    ids = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(ids) + 1 if ids else 0


def progress(log_lines: list[str]) -> list[dict]:
    marker = f"{PROGRESS_PREFIX} "
    return [json.loads(line.split(marker, 1)[1]) for line in log_lines if marker in line]


def assert_gold(config: GoldConfig, silver: pd.DataFrame) -> None:
    expected = expected_gold(silver)
    for table in QUERIES:
        assert len(expected[table]) > 0
        assert_gold_equal(read_delta(config.paths.gold_table(table)), expected[table], table)


@pytest.fixture
def live(tmp_path):
    home = tmp_path / "airflow-home"
    home.mkdir()
    lakehouse = tmp_path / "lakehouse"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_PORT": str(free_port()),
            "LAKEHOUSE_ROOT": str(lakehouse),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    airflow = LiveAirflow(home, int(env["AIRFLOW_PORT"]), env)
    try:
        yield airflow, GoldConfig.from_env(env)
    finally:
        if airflow.proc is not None:
            airflow.stop()
            airflow.kill_everything()


def test_trigger_available_now_then_continuous_stop_and_resume(live):
    airflow, config = live
    started = time.monotonic()
    first = silver_rows(0, 6000)  # 10 minutes of traffic
    append_silver(first, config)

    airflow.start()
    airflow.login()
    wait_for(
        "the DAG processor to load gold_streaming",
        lambda: airflow.api("GET", f"/dags/{DAG_ID}").status_code == 200,
        details=airflow.diagnostics,
    )
    # New DAGs start paused; the UI's toggle sends this.
    assert airflow.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200

    # 1. available-now: what Silver_ML holds, then the run finishes.
    run_1 = airflow.trigger({"trigger": "available-now"})
    airflow.wait_run(run_1)
    assert_gold(config, first)
    assert spark_processes(config) == []

    # 2. continuous: batches land while the feed appends, until the task is marked failed; then
    # the same with the low-latency mode (an available-now run every interval).
    appended = [first]
    next_row = len(first)
    outcome = []
    for trigger, feed_chunks in (("continuous", 2), ("continuous-low-latency", 1)):
        run_2 = airflow.trigger({"trigger": trigger, "trigger_interval": "2 seconds"})
        wait_for(
            f"the {trigger} job's Spark driver",
            lambda: airflow.task(run_2, SUBMIT)["state"] == "running" and len(spark_processes(config)) >= 2,
            details=lambda: airflow.run_details(run_2),
        )
        for _ in range(feed_chunks):
            before = {q: commits(config, q) for q in QUERIES}
            chunk = silver_rows(next_row, 1200)  # 2 more minutes each
            append_silver(chunk, config)
            appended.append(chunk)
            next_row += len(chunk)
            wait_for(
                "a micro-batch of the new Silver_ML rows",
                lambda: all(commits(config, q) > before[q] for q in QUERIES),
                details=lambda: airflow.run_details(run_2),
            )
        assert airflow.task(run_2, SUBMIT)["state"] == "running"
        drivers = spark_processes(config)
        assert {p.name() for p in drivers} >= {"java"} and any("python" in p.name() for p in drivers), drivers

        try_number = airflow.task(run_2, SUBMIT)["try_number"]
        airflow.mark_task_failed(run_2, SUBMIT)
        stop_requested = time.monotonic()
        wait_for(
            f"the Spark driver to end (deadline {SPARK_GONE_WITHIN_S} s)",
            lambda: not [p for p in drivers if alive(p)],
            timeout=SPARK_GONE_WITHIN_S,
            interval=0.5,
            details=lambda: f"{spark_processes(config)}\n{airflow.run_details(run_2)}",
        )
        spark_gone_s = time.monotonic() - stop_requested
        airflow.wait_run(run_2, expected="failed")
        assert airflow.task(run_2, SUBMIT)["state"] == "failed"
        log_2 = airflow.task_log(run_2, SUBMIT, try_number)
        # on_kill ran and sent SIGTERM to the job's driver, which stopped its queries itself.
        assert any("sending SIGTERM to the Spark job (pid" in line for line in log_2), log_2[-40:]
        assert any("received SIGTERM, stopping the queries" in line for line in log_2), log_2[-40:]
        assert any("stopped cleanly" in line for line in log_2), log_2[-40:]
        outcome += [f"{trigger}: Spark driver gone {spark_gone_s:.1f} s after the task was marked failed"]
        outcome += [line for line in log_2 if "after SIGTERM" in line]
    committed_at_stop = {q: commits(config, q) for q in QUERIES}

    # 3. a new run resumes from the checkpoints: every window once, none missing.
    last = silver_rows(next_row, 1200)
    append_silver(last, config)
    appended.append(last)
    run_3 = airflow.trigger({"trigger": "available-now"})
    airflow.wait_run(run_3)
    assert_gold(config, pd.concat(appended, ignore_index=True))
    ti_3 = airflow.task(run_3, SUBMIT)
    batches_3 = progress(airflow.task_log(run_3, SUBMIT, ti_3["try_number"]))
    for query in QUERIES:
        first_batch = min(line["batch_id"] for line in batches_3 if line["query"] == query)
        assert first_batch >= committed_at_stop[query] > 0, (query, first_batch, committed_at_stop)

    # 4. stopping Airflow ends every process it started.
    assert airflow.session_processes()
    stop = airflow.stop()
    assert stop.returncode == 0, stop.stderr
    assert airflow.session_processes() == [], airflow.session_processes()
    assert airflow.proc.wait(timeout=60) == 0
    print(f"\nlive Airflow test: {time.monotonic() - started:.0f} s in all; {outcome}")
