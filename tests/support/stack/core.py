"""The Stack object: launching, restarting, killing and stopping the native stack's processes, and
the state file that lets `stop`/`status` find a stack another process started."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from support.net import free_port
from support.stack import procs

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent


@dataclass
class Proc:
    """A long-running process of the stack: its leader's pid is its process group and session."""

    name: str
    argv: list[str]
    env: dict[str, str]
    pid: int = 0
    log: str = ""
    cwd: str = ""
    ready_s: float = 0.0
    # Signal to the leader before the session-wide SIGTERM (PostgreSQL: SIGINT = fast shutdown).
    graceful: str = ""
    # stop() stops phase 1 first (the Airflow components that run or watch tasks), then 2 (the
    # other services), then 3 (PostgreSQL, everyone's database).
    stop_phase: int = 2


class StackBase:
    """Process handling shared by the components (support.stack.components)."""

    def __init__(self, state_file: Path, base: Path | None = None, keep: bool = False):
        self.state_file = Path(state_file)
        self.id = uuid.uuid4().hex[:12]
        self.base = base
        self.keep = keep
        self.procs: dict[str, Proc] = {}
        self.popen: dict[str, subprocess.Popen] = {}
        self.info: dict = {"endpoints": {}, "timings": {}}
        self.taken_ports: set[int] = set()
        self._lock = threading.RLock()

    # -- processes ---------------------------------------------------------------------------

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """What every process gets: the caller's environment without its Airflow and AWS
        settings, the venv first on PATH, the marker, and the component's own variables."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "AWS_", "SPARK_", "PYSPARK_", "GOLD_", "LAKEHOUSE", "S3_"))
        }
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env[procs.MARKER] = self.id
        env.update(extra)
        return env

    def port(self) -> int:
        return free_port(self.taken_ports)

    def launch(self, name: str, argv: list[str], env: dict[str, str], **options) -> Proc:
        """Starts argv in a session of its own, output appended to logs/<name>.log."""
        log = self.base / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cwd = options.pop("cwd", None) or str(self.base)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                env=self.environment(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(
            name=name, argv=list(argv), env=dict(env), pid=popen.pid, log=str(log), cwd=cwd, **options
        )
        with self._lock:
            self.procs[name] = proc
            self.popen[name] = popen
            self.save()
        return proc

    def run_once(self, name: str, argv: list[str], env: dict[str, str], timeout: float = 600) -> float:
        """A one-shot step (initdb, db migrate, airflow-init.sh), its output in logs/<name>.log."""
        log = self.base / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(log, "ab") as out:
            result = subprocess.run(
                argv,
                env=self.environment(env),
                cwd=str(self.base),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                start_new_session=True,
            )
        took = round(time.monotonic() - started, 1)
        self.info["timings"][name] = took
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed (exit code {result.returncode}):\n{procs.tail(log)}")
        return took

    def alive(self, name: str) -> bool:
        popen = self.popen.get(name)
        if popen is not None:
            return popen.poll() is None
        return bool(procs.session_members(self.procs[name].pid))

    def wait_ready(self, name: str, ready, timeout: float, started: float) -> None:
        proc = self.procs[name]
        procs.wait_until(ready, timeout, name, alive=lambda: self.alive(name), log=proc.log)
        proc.ready_s = round(time.monotonic() - started, 1)
        self.save()

    def members(self, name: str) -> list[int]:
        return procs.session_members(self.procs[name].pid)

    def kill9(self, name: str) -> dict[int, str]:
        """kill -9 of the component's whole session, as a container crash does: for the scheduler,
        every task process the LocalExecutor forked under it too."""
        victims = procs.kill_session(self.procs[name].pid)
        self._reap(name)
        return victims

    def restart(self, name: str, env: dict[str, str] | None = None) -> Proc:
        """Starts the component again alone, with the same command (and `env` over its variables),
        as compose's `restart: always` would; stops it first if it still runs."""
        old = self.procs[name]
        if self.members(name):
            self.stop_proc(name)
        return self.launch(
            name,
            old.argv,
            {**old.env, **(env or {})},
            cwd=old.cwd,
            graceful=old.graceful,
            stop_phase=old.stop_phase,
        )

    def send(self, name: str, sig: int) -> None:
        os.kill(self.procs[name].pid, sig)

    def stop_proc(self, name: str, timeout: float = 30) -> dict:
        """The graceful signal (if any) to the leader, then SIGTERM to its session, SIGKILL to
        what is left after `timeout` s."""
        proc = self.procs[name]
        started = time.monotonic()
        if proc.graceful:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, getattr(signal, proc.graceful))
            deadline = time.monotonic() + timeout / 2
            while self.members(name) and time.monotonic() < deadline:
                self._reap(name)
                time.sleep(0.2)
        procs.signal_all(self.members(name), signal.SIGTERM)
        killed: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while left := self.members(name):
            self._reap(name)
            if time.monotonic() > deadline and not killed:
                killed = procs.describe(left)
                procs.signal_all(left, signal.SIGKILL)
            time.sleep(0.2)
        self._reap(name)
        report = {"stop_s": round(time.monotonic() - started, 1)}
        if killed:
            report["sigkill"] = killed
        return report

    def _reap(self, name: str) -> None:
        popen = self.popen.get(name)
        if popen is not None:
            popen.poll()

    def leftovers(self) -> list[int]:
        """Every live process of this stack (marker or working directory)."""
        return procs.marked(self.id, self.base)

    def stop(self) -> dict:
        """Stops every component in phases (each phase in parallel): the Airflow scheduler,
        dag-processor and triggerer first (the scheduler's tasks report their end through the
        API server), then the rest, PostgreSQL last; then kills whatever of the stack is left
        and reports it."""
        report: dict = {}
        started = time.monotonic()
        for phase in sorted({p.stop_phase for p in self.procs.values()}):
            names = [n for n, p in self.procs.items() if p.stop_phase == phase]
            threads = [
                threading.Thread(target=lambda n=n: report.__setitem__(n, self.stop_proc(n))) for n in names
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        # What left its session (PostgreSQL's children, a task's spark-submit): by marker.
        deadline = time.monotonic() + 10
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.3)
        report["leftovers_killed"] = procs.describe(left)
        procs.signal_all(left, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
        report["leftovers_after"] = procs.describe(self.leftovers())
        report["stop_s"] = round(time.monotonic() - started, 1)
        if self.base and not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        return report

    # -- state file ----------------------------------------------------------------------------

    def save(self) -> None:
        with self._lock:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            state = {
                "id": self.id,
                "base": str(self.base) if self.base else None,
                "keep": self.keep,
                "procs": {k: dataclasses.asdict(v) for k, v in self.procs.items()},
                "info": self.info,
            }
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            os.chmod(tmp, 0o600)  # it holds the stack's generated passwords
            tmp.replace(self.state_file)

    @classmethod
    def load(cls, state_file: Path):
        state = json.loads(Path(state_file).read_text())
        stack = cls(state_file, Path(state["base"]) if state["base"] else None, state["keep"])
        stack.id = state["id"]
        stack.procs = {k: Proc(**v) for k, v in state["procs"].items()}
        stack.info = state["info"]
        return stack

    def status(self) -> dict:
        out = {}
        for name, proc in self.procs.items():
            pids = self.members(name)
            out[name] = {
                "pid": proc.pid,
                "alive": bool(pids),
                "processes": len(pids),
                "rss_mib": procs.rss_mib(pids),
            }
        out["_stack_processes"] = len(self.leftovers())
        return out
