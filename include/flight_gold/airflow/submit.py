"""How the project's DAGs run a Spark job: one place that prepares a spark-submit of a job of
`jobs/` (its Spark settings, the Delta packages, the `flight_gold` package as --py-files, the
worker's interpreter), runs it tied to its task, and reports how it ended.

The Spark provider keeps a few things this project needs private (the spark-submit process, the
resolved connection, the last lines spark-submit printed, the operator's hook): SubmitHandle is
the one place that reads them; tests/airflow/test_provider_contract.py fails when a provider
upgrade renames them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

from flight_gold.core.config import PROJECT_ROOT, ConfigError, GoldConfig

JOBS_DIR = PROJECT_ROOT / "jobs"
LOCAL_SPARK_CONNECTION = '{"conn_type": "spark", "host": "local[*]"}'


def task_config(**overrides: Any) -> GoldConfig:
    """The worker's GoldConfig; a bad setting fails the task without retry."""
    try:
        return GoldConfig.from_env(**overrides)
    except ConfigError as exc:
        raise AirflowFailException(f"configuration error: {exc}") from None


class SubmitHandle:
    """The provider's SparkSubmitHook, seen through what this project needs of it."""

    def __init__(self, hook) -> None:
        self.hook = hook

    @property
    def deploy_mode(self) -> str | None:
        return self.hook._connection["deploy_mode"]

    @property
    def master(self) -> str:
        return self.hook._connection["master"]

    @property
    def process(self):
        """The spark-submit Popen, once started."""
        return getattr(self.hook, "_submit_sp", None)

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def last_line(self, prefix: str) -> str | None:
        """The last line spark-submit printed that starts with `prefix` (the job's own reason)."""
        return next(
            (line for line in reversed(self.hook._last_submit_log_lines) if line.startswith(prefix)), None
        )


@dataclass
class JobFailedError(Exception):
    """spark-submit ended with a non-zero exit code: `reason` is the job's own last error line
    (or the provider's first line), `message` the provider's whole message with the log tail."""

    returncode: int | None
    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


class ProjectSparkSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator for a job of `jobs/`: at run time it builds, from the worker's
    environment, what the job needs wherever spark-submit sends it (see `ship_project`), so that
    only the Spark connection changes between `local[*]` and a cluster."""

    # The prefix of the lines the job prints when it refuses or fails ("streaming_gold:").
    job_error_prefix = ""
    # Which job it runs (flight_gold.spark.session.STREAM or MAINTENANCE): its core cap.
    spark_role = "stream"

    def new_handle(self) -> SubmitHandle:
        """A fresh hook for this try, built from the operator's fields as the provider does."""
        self._hook = self._get_hook()
        return SubmitHandle(self._hook)

    @property
    def handle(self) -> SubmitHandle | None:
        hook = getattr(self, "_hook", None)
        return SubmitHandle(hook) if hook is not None else None

    def submit_local_driver(self, handle: SubmitHandle) -> None:
        """Runs spark-submit (client mode: the driver runs here) to its end in a process group of
        its own, killed by the kernel if the task process dies; JobFailedError on a non-zero exit."""
        try:
            handle.hook.submit(self.application, process_group=0, preexec_fn=die_with_parent())
        except AirflowException as exc:
            reason = handle.last_line(self.job_error_prefix) or str(exc).splitlines()[0]
            raise JobFailedError(handle.returncode, reason, str(exc)) from None


def check_spark_connection(conn_id: str) -> None:
    """The provider falls back to master "yarn" when the connection is missing: say so instead."""
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise AirflowFailException(
            f"Airflow connection {conn_id!r} is not defined. For Spark on this machine set "
            f"AIRFLOW_CONN_{conn_id.upper()}='{LOCAL_SPARK_CONNECTION}' in the environment "
            "of the Airflow components (scripts/airflow_local.sh does), or create it under "
            "Admin > Connections (type Spark, host local[*] or spark://HOST:7077)."
        ) from None


def ship_project(operator: ProjectSparkSubmitOperator, config: GoldConfig, workdir: str) -> None:
    """Gives a project job what it needs wherever spark-submit sends it: the project's Spark
    settings as --conf, the Delta packages as --packages (resolved by spark-submit, so not in
    the conf), the `flight_gold` package as --py-files (zipped into `workdir`), and the worker's
    interpreter for the driver. What the DAG set on the operator wins.

    The settings follow the master of the operator's Spark connection (the one spark-submit
    will use), not SPARK_MASTER: local-only tweaks for local[*], core caps for spark://."""
    from flight_gold.spark.session import DELTA_EXCLUDES, packages, spark_conf

    master = operator.new_handle().master
    conf = spark_conf(config, master, getattr(operator, "spark_role", "stream"))
    conf.pop("spark.jars.packages", None)
    conf.pop("spark.jars.excludes", None)
    operator.conf = {**conf, **(operator.conf or {})}
    operator.packages = operator.packages or ",".join(packages(config))
    operator.exclude_packages = operator.exclude_packages or ",".join(DELTA_EXCLUDES)
    operator.py_files = ",".join(filter(None, [build_package_zip(workdir), operator.py_files]))
    operator.env_vars = {**_driver_env(), **(operator.env_vars or {})}


def build_package_zip(dest_dir: str | os.PathLike) -> str:
    """A zip of the installed `flight_gold` package (sources and data files, no bytecode), for
    spark-submit --py-files: the driver and executors import the same code the worker has."""
    import flight_gold

    package = Path(flight_gold.__file__).resolve().parent
    target = Path(dest_dir) / "flight_gold.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            zf.write(path, Path("flight_gold") / path.relative_to(package))
    return str(target)


def _driver_env() -> dict[str, str]:
    """spark-submit and the job's Python from the worker's own interpreter (the venv), unless the
    environment names others."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }


def die_with_parent():
    """preexec_fn: the kernel SIGKILLs spark-submit when the task process dies, however it dies
    (Airflow's supervisor SIGKILLs the task 5 s after its SIGTERM): a Spark job never outlives the
    task that owns it. The job's Python driver then exits as soon as its JVM is gone; a cut
    micro-batch, OPTIMIZE or VACUUM commits nothing. Linux only; elsewhere None (no preexec_fn)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def exit_status(proc):
    """(si_code, si_status) once the spark-submit child has exited, else None. The child is left
    unreaped, so that the main thread, blocked in Popen.wait(), still gets its return code."""
    if proc.returncode is not None:
        code = proc.returncode
        return (os.CLD_EXITED, code) if code >= 0 else (os.CLD_KILLED, -code)
    try:
        result = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped by the interrupted Popen.wait() just before this handler
        return (None, None)
    return None if result is None else (result.si_code, result.si_status)


def process(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def descendants(pid: int) -> list:
    import psutil

    parent = process(pid)
    if parent is None:
        return []
    try:
        return parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def application_processes(pid: int, application: str) -> list:
    """The job's Python driver(s) under the spark-submit JVM: the processes running `application`."""
    import psutil

    found = []
    for child in descendants(pid):
        try:
            if application in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


def send_signal(target, sig: signal.Signals) -> None:
    import psutil

    try:
        target.send_signal(sig)
    except psutil.Error:
        pass
