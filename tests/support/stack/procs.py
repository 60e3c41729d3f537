"""Processes of the native stack: ports, HTTP probes, waiting, and finding every process a stack
started, however it got away from its process group.

Each component starts in a session of its own (its leader's pid = its process group = its
session id). Some processes leave the group but not the session (Airflow's task processes call
setpgid); PostgreSQL's children call setsid() and overwrite their environment with their ps
title, but keep the data folder as working directory. So a stack finds its processes by three
marks: the session, the FLIGHT_GOLD_STACK_ID environment variable every process inherits, and a
working directory under the stack's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

MARKER = "FLIGHT_GOLD_STACK_ID"


def http_get(url: str, timeout: float = 5.0, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(url: str, method: str = "GET", body=None, token: str | None = None, timeout: float = 60):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
        return json.loads(raw) if raw else None


def tail(path: str | Path | None, chars: int = 3000) -> str:
    if not path or not Path(path).exists():
        return ""
    return Path(path).read_text(errors="replace")[-chars:]


def wait_until(
    ready: Callable[[], object],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log: str | Path | None = None,
    interval: float = 0.5,
) -> float:
    """Polls `ready()` (exceptions count as not ready) until it is truthy; the seconds it took.
    Fails at once when `alive()` says the process exited, with the tail of its log."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if ready():
                return time.monotonic() - started
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited\n{tail(log)}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{tail(log)}")
        time.sleep(interval)


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` or of process group `sid` (a component's leader started
    with start_new_session: its pid is both)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if (os.getsid(proc.pid) == sid or os.getpgid(proc.pid) == sid) and _live(proc):
                found.append(proc.pid)
    return sorted(found)


def marked(stack_id: str, base: str | Path | None) -> list[int]:
    """Every live process of a stack: its marker in the environment, or a working directory under
    the stack's folder."""
    needle = f"{stack_id}"
    prefix = str(base).rstrip("/") + "/" if base else None
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if prefix and (proc.cwd() + "/").startswith(prefix) and _live(proc):
                found.append(proc.pid)
                continue
            if proc.environ().get(MARKER) == needle and _live(proc):
                found.append(proc.pid)
    return sorted(found)


def stack_ids() -> dict[str, list[int]]:
    """Every process carrying a stack marker, by stack id: what `leftovers` reports."""
    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            value = proc.environ().get(MARKER)
            if value and _live(proc):
                found.setdefault(value, []).append(proc.pid)
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_session(sid: int) -> dict[int, str]:
    """kill -9 of every process of the session (a container crash), waiting until they are gone;
    what was killed (pid -> command line)."""
    victims = describe(session_members(sid))
    signal_all(list(victims), signal.SIGKILL)
    wait_until(lambda: not session_members(sid), 30, f"session {sid} to die")
    return victims


def describe(pids: list[int]) -> dict[int, str]:
    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out[pid] = " ".join(psutil.Process(pid).cmdline())[:160]
    return out


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return round(total / 2**20, 1)
