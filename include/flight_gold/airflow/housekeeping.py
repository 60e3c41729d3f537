"""The tasks of `gold_housekeeping`: Airflow's own metadata and task logs older than a retention
(`GOLD_AIRFLOW_RETENTION_DAYS`, default 30) are removed, so that a stream supervised for months
and checks every few minutes do not grow the database and the log folder without end.

Metadata goes through Airflow's own `airflow db clean` (it knows the tables, and keeps each DAG's
latest run), run by the task as a command: it needs the metadata database connection of the
Airflow configuration, which the LocalExecutor's tasks have (they run beside the scheduler); on
workers without database access (Celery or Kubernetes executors with a locked-down worker) run
it from the scheduler's host instead (README, "Housekeeping").

Airflow 3's task runner overwrites AIRFLOW__DATABASE__SQL_ALCHEMY_CONN in the task process with a
marker (`airflow-db-not-allowed:///`) to keep DAG code off the ORM; the command, a separate
Airflow process, gets the worker's own value back (db_clean_env). Found on the native production
stack, where compose's connection is that variable: every run failed on an unparsable URL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowException

from flight_gold.core.times import iso, utcnow

log = logging.getLogger(__name__)

DB_CLEAN_TIMEOUT_S = 3600
# What the task runner puts in place of the database connection (airflow.sdk.execution_time.
# supervisor.block_orm_access).
BLOCKED_DB_MARKER = "airflow-db-not-allowed:"
DB_CONN_VARIABLES = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")


def process_start_environ() -> dict[str, str]:
    """The environment this process started with (the worker's: the task process is a fork of
    it), which the task runner's later changes to os.environ do not touch."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def db_clean_env(env: dict[str, str] | None = None, started: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the `airflow db clean` command: `env` (os.environ) with the metadata
    connection the task runner blocked put back from the worker's (`started`) environment, or
    removed when the worker had none (then the Airflow configuration file's applies)."""
    env = dict(os.environ if env is None else env)
    started = process_start_environ() if started is None else started
    for name in DB_CONN_VARIABLES:
        if env.get(name, "").startswith(BLOCKED_DB_MARKER):
            original = started.get(name, "")
            if original and not original.startswith(BLOCKED_DB_MARKER):
                env[name] = original
            else:
                env.pop(name)
    return env


def clean_metadata(retention_days: int, now: datetime | None = None) -> dict[str, Any]:
    """`airflow db clean` of every table, rows older than the retention, without archive tables."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    command = [
        sys.executable,
        "-m",
        "airflow",
        "db",
        "clean",
        "--clean-before-timestamp",
        cutoff.isoformat(),
        "--yes",
        "--skip-archive",
    ]
    log.info("running: %s", " ".join(command[1:]))
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=DB_CLEAN_TIMEOUT_S, env=db_clean_env()
    )
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    for line in lines:
        log.info("db clean: %s", line)
    if run.returncode != 0:
        raise AirflowException(
            f"airflow db clean failed with exit code {run.returncode}: "
            + (" / ".join(lines[-3:]) or "no output")
        )
    return {"clean_before": iso(cutoff), "output_lines": len(lines)}


def log_folder() -> Path:
    from airflow.configuration import conf

    return Path(conf.get("logging", "base_log_folder")).expanduser()


def clean_task_logs(retention_days: int, folder: Path | None = None, now: datetime | None = None) -> dict:
    """Removes the files of the log folder last written before the retention, then the folders
    left empty. A running task's log is written to, so it is never that old."""
    folder = folder or log_folder()
    cutoff = ((now or utcnow()) - timedelta(days=retention_days)).timestamp()
    removed = freed = 0
    emptied: set[Path] = set()
    if not folder.is_dir():
        return {"folder": str(folder), "files_removed": 0, "bytes_freed": 0}
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(root) / name
            try:
                stat = path.lstat()
                if stat.st_mtime < cutoff:
                    path.unlink()
                    removed += 1
                    freed += stat.st_size
                    emptied.add(Path(root))
            except FileNotFoundError:
                continue
        for name in dirs:
            path = Path(root) / name
            try:
                # A folder this pass emptied, or one empty since before the cutoff (never one a
                # task has just made for its log).
                if not any(path.iterdir()) and (path in emptied or path.lstat().st_mtime < cutoff):
                    path.rmdir()
                    emptied.add(Path(root))
            except OSError:
                continue
    log.info(
        "removed %d log file(s) (%d bytes) older than %d days from %s", removed, freed, retention_days, folder
    )
    return {"folder": str(folder), "files_removed": removed, "bytes_freed": freed}
