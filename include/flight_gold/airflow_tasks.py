"""The operators of the `gold_streaming` DAG: a sensor that waits for Silver_ML, and the
SparkSubmitOperator that runs jobs/streaming_gold.py and stops it cleanly.

Everything that depends on the machine (lakehouse root, Spark settings, the connection) is read
when a task runs, never when the DAG file is parsed: the DAG processor stays fast, and the same
serialized DAG runs wherever its worker's environment points.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Sequence

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import BaseHook, BaseSensorOperator, Param
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSensorTimeout,
)

from flight_gold.config import PROJECT_ROOT, QUERY_NAMES, ConfigError, GoldConfig
from flight_gold.config import _INTERVAL as _INTERVAL_RE

STREAMING_JOB = str(PROJECT_ROOT / "jobs" / "streaming_gold.py")
SPARK_APP_NAME = "flight-gold-streaming"

# The trigger form speaks of what the user wants; the job speaks Spark's trigger names.
TRIGGERS = {"continuous": "processing-time", "continuous-low-latency": "available-now-loop",
            "available-now": "available-now"}

DEFAULT_SILVER_WAIT_TIMEOUT_S = 3600
# Airflow 3's task supervisor SIGKILLs the task's process group 5 s after its SIGTERM (and the
# kernel then SIGKILLs spark-submit, see die_with_parent): past this, the job is killed.
DEFAULT_STOP_TIMEOUT_S = 4.5
# The job's exit code for bad input or configuration: retrying cannot help.
JOB_EXIT_BAD_INPUT = 2

LOCAL_SPARK_CONNECTION = '{"conn_type": "spark", "host": "local[*]"}'


def streaming_params() -> dict[str, Param]:
    """The trigger form of `gold_streaming`."""
    return {
        "trigger": Param(
            "continuous",
            "continuous: the streams run until you stop the task (mark it failed, or stop the "
            "run). continuous-low-latency: the same, but each window reaches Gold about one "
            "trigger interval sooner, for about twice the CPU (an available-now run every "
            "interval). available-now: process what Silver_ML holds now, write every window the "
            "watermark has closed, and finish.",
            type="string",
            enum=list(TRIGGERS),
            values_display={"continuous": "continuous (run until stopped)",
                            "continuous-low-latency": "continuous, low latency (about 2x the CPU)",
                            "available-now": "available-now (catch up and finish)"},
            title="Trigger",
        ),
        "trigger_interval": Param(
            "10 seconds",
            "Micro-batch interval in the continuous modes, e.g. '10 seconds' or '1 minute'.",
            type="string",
            pattern=_INTERVAL_RE.pattern,
            title="Trigger interval",
        ),
        "queries": Param(
            list(QUERY_NAMES),
            "The Gold streams to run; each has its own checkpoint.",
            type="array",
            items={"type": "string", "enum": list(QUERY_NAMES)},
            examples=list(QUERY_NAMES),
            minItems=1,
            uniqueItems=True,
            title="Queries",
        ),
        "silver_wait_timeout": Param(
            DEFAULT_SILVER_WAIT_TIMEOUT_S,
            "Seconds to wait for the Silver_ML Delta table before the run fails.",
            type="integer",
            minimum=0,
            title="Silver_ML wait timeout (s)",
        ),
    }


def _config(**overrides: Any) -> GoldConfig:
    try:
        return GoldConfig.from_env(**overrides)
    except ConfigError as exc:
        raise AirflowFailException(f"configuration error: {exc}") from None


class SilverMLSensor(BaseSensorOperator):
    """Waits until Silver_ML (`<LAKEHOUSE_ROOT>/silver/flights_ml`) is a Delta table: its
    `_delta_log/` holds a commit. Local folder or s3a:// alike, without a JVM, and in reschedule
    mode so that no worker slot is held while it waits.

    `wait_timeout` (templated, seconds) overrides `timeout` at run time, so that the trigger
    form can set it. A timeout fails the task, with no retry, naming the path it waited for.
    """

    template_fields: Sequence[str] = ("wait_timeout",)
    ui_color = "#e8f4fd"

    def __init__(self, *, wait_timeout: int | float | str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", DEFAULT_SILVER_WAIT_TIMEOUT_S)
        super().__init__(**kwargs)
        self.wait_timeout = wait_timeout
        self._path: str | None = None

    def execute(self, context: Any) -> Any:
        if self.wait_timeout not in (None, ""):
            try:
                self.timeout = float(self.wait_timeout)
            except (TypeError, ValueError):
                raise AirflowFailException(
                    f"silver_wait_timeout must be a number of seconds, got {self.wait_timeout!r}") from None
            if self.timeout < 0:
                raise AirflowFailException(f"silver_wait_timeout must be >= 0, got {self.timeout:g}")
        # Never sleep past the deadline: a short timeout fails when it says, not a poke later.
        self.poke_interval = max(1.0, min(float(self.poke_interval), self.timeout))
        config = _config()
        self._path = config.paths.silver_flights_ml
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(
                f"Silver_ML is not a Delta table after waiting {self.timeout:g} s: no commit in "
                f"{self._path}/_delta_log. Start the Silver_ML feed, or point LAKEHOUSE_ROOT at the "
                "lakehouse that holds it, then trigger the DAG again."
            ) from exc

    def poke(self, context: Any) -> bool:
        from flight_gold.lakehouse_checks import has_delta_commit

        config = _config()
        self._path = config.paths.silver_flights_ml
        ready = has_delta_commit(self._path, config)
        if ready:
            self.log.info("Silver_ML is a Delta table: %s/_delta_log holds a commit", self._path)
        else:
            self.log.info("waiting for Silver_ML: no commit in %s/_delta_log yet", self._path)
        return ready


class GoldStreamingSubmitOperator(SparkSubmitOperator):
    """Runs jobs/streaming_gold.py with spark-submit through a Spark connection.

    At run time it builds, from the worker's environment (GoldConfig): the job's arguments, the
    project's Spark settings (`flight_gold.spark.spark_conf`), the Delta packages, and a zip of
    the `flight_gold` package shipped with `--py-files`, so that only the connection changes
    between `local[*]` and a cluster.

    Stopping: Airflow sends SIGTERM to the task (task marked failed, run marked failed, worker
    shutting down); `on_kill` then sends SIGTERM to the job's Python driver, which stops its
    queries and exits 0, and falls back to the provider's kill (SIGKILL) if the job has not
    exited `stop_timeout` seconds later. spark-submit runs in a process group of its own, so
    that the supervisor's group-wide SIGTERM does not reach the Spark JVM (whose shutdown hooks
    would tear the queries down under the driver), and the kernel kills it should the task
    process die first. The task then fails ("stopped on request"); the next run resumes from
    the checkpoints. Exit code 2 of the job (bad input) fails without retry; any other failure
    is retried.
    """

    template_fields: Sequence[str] = (*SparkSubmitOperator.template_fields,
                                      "trigger", "trigger_interval", "queries")
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        trigger: str = "continuous",
        trigger_interval: str | None = None,
        queries: str | Sequence[str] | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT_S,
        application: str = STREAMING_JOB,
        name: str = SPARK_APP_NAME,
        **kwargs: Any,
    ) -> None:
        super().__init__(application=application, name=name, **kwargs)
        self.trigger = trigger
        self.trigger_interval = trigger_interval
        self.queries = queries
        self.stop_timeout = stop_timeout
        self._stop_requested = False
        self._stop_requested_at = 0.0
        self._in_submit = False

    # -- run ------------------------------------------------------------------------------------

    def job_config(self) -> GoldConfig:
        """The job's configuration: the worker's environment plus the rendered parameters."""
        if self.trigger not in TRIGGERS:
            raise AirflowFailException(
                f"trigger must be one of {', '.join(TRIGGERS)}, got {self.trigger!r}")
        queries = self.queries
        if isinstance(queries, str):
            queries = tuple(q.strip() for q in queries.split(",") if q.strip())
        return _config(trigger=TRIGGERS[self.trigger], trigger_interval=self.trigger_interval or None,
                       queries=tuple(queries) if queries else None)

    def execute(self, context: Any) -> None:
        self._stop_requested = False
        config = self.job_config()
        check_spark_connection(self._conn_id)
        workdir = tempfile.mkdtemp(prefix="flight-gold-submit-")
        # The hook is built from these attributes; they are put back afterwards so that a second
        # try in the same process (dag.test) starts from the rendered values again.
        fields = ("conf", "packages", "exclude_packages", "py_files", "env_vars", "application_args")
        rendered = {name: getattr(self, name) for name in fields}
        try:
            ship_project(self, config, workdir)
            self.application_args = [
                "--lakehouse-root", config.lakehouse_root,
                "--trigger", config.trigger,
                "--trigger-interval", config.trigger_interval,
                "--queries", ",".join(config.queries),
                *(self.application_args or []),
            ]
            self.log.info("Gold streaming job: lakehouse %s, trigger %s%s, queries %s",
                          config.lakehouse_root, self.trigger,
                          f" every {config.trigger_interval}" if self.trigger != "available-now" else "",
                          ", ".join(config.queries))
            self._hook = self._get_hook()
            if self._hook._connection["deploy_mode"] == "cluster":
                # The cluster manager owns the driver: the provider tracks and kills it.
                return super().execute(context)
            self._submit_local_driver()
        finally:
            for name, value in rendered.items():
                setattr(self, name, value)
            shutil.rmtree(workdir, ignore_errors=True)

    def _submit_local_driver(self) -> None:
        hook = self._hook
        self._in_submit = True
        try:
            hook.submit(self.application, process_group=0, preexec_fn=die_with_parent())
        except AirflowException as exc:
            returncode = hook._submit_sp.returncode if getattr(hook, "_submit_sp", None) else None
            if self._stop_requested:
                self._log_stop_outcome(returncode)
                raise AirflowException(f"the streaming job was stopped on request (SIGTERM) and ended "
                                       f"with exit code {returncode}; the next run resumes from the "
                                       "last committed batch of each query") from None
            if returncode == JOB_EXIT_BAD_INPUT:
                reason = next((line for line in reversed(hook._last_submit_log_lines)
                               if line.startswith("streaming_gold:")), str(exc).splitlines()[0])
                raise AirflowFailException(
                    f"the streaming job rejected its input (exit code 2, not retried): {reason}") from None
            raise
        finally:
            self._in_submit = False
        if self._stop_requested:
            # The job ended because it was asked to, not because its work was done.
            self._log_stop_outcome(0)
            raise AirflowException(
                "the streaming job was stopped on request (SIGTERM): it stopped its queries and "
                "exited cleanly; the next run resumes from the checkpoints")

    def _log_stop_outcome(self, returncode: int | None) -> None:
        elapsed = time.monotonic() - self._stop_requested_at
        if returncode == 0:
            self.log.info("the Spark job stopped cleanly %.1f s after SIGTERM (exit code 0)", elapsed)
        else:
            self.log.warning("the Spark job ended %.1f s after SIGTERM with exit code %s", elapsed, returncode)

    # -- stop -----------------------------------------------------------------------------------

    def on_kill(self) -> None:
        self._stop_requested = True
        self._stop_requested_at = time.monotonic()
        hook = self._hook
        proc = getattr(hook, "_submit_sp", None) if hook is not None else None
        if proc is None or hook._connection["deploy_mode"] == "cluster" or _exit_status(proc):
            super().on_kill()
            return
        drivers = _application_processes(proc.pid, self.application)
        # Before the Python driver exists (spark-submit still resolving packages) there are no
        # queries to stop: the JVM's own SIGTERM handling is then enough.
        for target in drivers or [_process(proc.pid)]:
            if target is not None:
                self.log.info("sending SIGTERM to the Spark job (pid %s) so that it stops its queries",
                              target.pid)
                _signal(target, signal.SIGTERM)
        if self._in_submit:
            # Called from the SIGTERM handler while the main thread streams spark-submit's output:
            # return at once so that the job's last lines keep flowing into the task log (and its
            # pipe never fills); a thread falls back to the kill if the job overstays.
            threading.Thread(target=self._kill_after_grace, args=(proc,), name="gold-stop-watchdog",
                             daemon=True).start()
        else:
            self._kill_after_grace(proc)

    def _kill_after_grace(self, proc) -> None:
        while time.monotonic() - self._stop_requested_at < self.stop_timeout:
            if _exit_status(proc):
                return
            time.sleep(0.1)
        self.log.warning("the Spark job did not exit within %.1f s of SIGTERM: killing it; the next "
                         "run resumes from the last committed batch", self.stop_timeout)
        leftovers = _descendants(proc.pid)
        super().on_kill()
        for child in leftovers:
            _signal(child, signal.SIGKILL)


# -- helpers ------------------------------------------------------------------------------------

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


def ship_project(operator: SparkSubmitOperator, config: GoldConfig, workdir: str) -> None:
    """Gives a project job what it needs wherever spark-submit sends it: the project's Spark
    settings as --conf, the Delta packages as --packages (resolved by spark-submit, so not in
    the conf), the `flight_gold` package as --py-files (zipped into `workdir`), and the worker's
    interpreter for the driver. What the DAG set on the operator wins."""
    from flight_gold.spark import DELTA_EXCLUDES, packages, spark_conf

    conf = spark_conf(config)
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
    env = {"PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
           "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
           "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}
    return env


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


def _exit_status(proc):
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


def _process(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _descendants(pid: int) -> list:
    import psutil

    parent = _process(pid)
    if parent is None:
        return []
    try:
        return parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _application_processes(pid: int, application: str) -> list:
    """The job's Python driver(s) under the spark-submit JVM: the processes running `application`."""
    import psutil

    found = []
    for child in _descendants(pid):
        try:
            if application in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


def _signal(process, sig: signal.Signals) -> None:
    import psutil

    try:
        process.send_signal(sig)
    except psutil.Error:
        pass
