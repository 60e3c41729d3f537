"""The operators of the `gold_streaming` DAG: a sensor that waits for Silver_ML, and the
SparkSubmitOperator that runs jobs/streaming_gold.py and stops it cleanly.

Everything that depends on the machine (lakehouse root, Spark settings, the connection) is read
when a task runs, never when the DAG file is parsed: the DAG processor stays fast, and the same
serialized DAG runs wherever its worker's environment points.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from flight_gold.airflow.submit import (
    JOBS_DIR,
    JobFailedError,
    ProjectSparkSubmitOperator,
    application_processes,
    check_spark_connection,
    descendants,
    exit_status,
    process,
    send_signal,
    ship_project,
    task_config,
)
from flight_gold.core.config import QUERY_NAMES, GoldConfig
from flight_gold.core.errors import EXIT_BAD_INPUT
from flight_gold.core.intervals import INTERVAL_PATTERN
from flight_gold.spark.runner import APP_NAME, ERROR_PREFIX

STREAMING_JOB = str(JOBS_DIR / "streaming_gold.py")

# The trigger form speaks of what the user wants (the DAG's "trigger" param); the job speaks
# Spark's trigger names (GoldConfig.trigger).
STREAM_MODES = {
    "continuous": "processing-time",
    "continuous-low-latency": "available-now-loop",
    "available-now": "available-now",
}

DEFAULT_SILVER_WAIT_TIMEOUT_S = 3600
# Airflow 3's task supervisor SIGKILLs the task's process group 5 s after its SIGTERM (and the
# kernel then SIGKILLs spark-submit, see die_with_parent): past this, the job is killed.
DEFAULT_STOP_TIMEOUT_S = 4.5
# available-now is a batch run: it fails for good on its third try, whatever the task's retries.
AVAILABLE_NOW_TRIES = 3


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
            enum=list(STREAM_MODES),
            values_display={
                "continuous": "continuous (run until stopped)",
                "continuous-low-latency": "continuous, low latency (about 2x the CPU)",
                "available-now": "available-now (catch up and finish)",
            },
            title="Trigger",
        ),
        "trigger_interval": Param(
            "10 seconds",
            "Micro-batch interval in the continuous modes, e.g. '10 seconds' or '1 minute'.",
            type="string",
            pattern=INTERVAL_PATTERN,
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
        "full_refresh": Param(
            False,
            "Deletes every row of the chosen Gold tables and their checkpoints, then rebuilds "
            "them from all of Silver_ML (how new thresholds or windows reach history). Tick only "
            "if you mean it.",
            type="boolean",
            title="Full refresh",
        ),
        "silver_wait_timeout": Param(
            DEFAULT_SILVER_WAIT_TIMEOUT_S,
            "Seconds to wait for the Silver_ML Delta table before the run fails.",
            type="integer",
            minimum=0,
            title="Silver_ML wait timeout (s)",
        ),
    }


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
                    f"silver_wait_timeout must be a number of seconds, got {self.wait_timeout!r}"
                ) from None
            if self.timeout < 0:
                raise AirflowFailException(f"silver_wait_timeout must be >= 0, got {self.timeout:g}")
        # Never sleep past the deadline: a short timeout fails when it says, not a poke later.
        self.poke_interval = max(1.0, min(float(self.poke_interval), self.timeout))
        config = task_config()
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
        from flight_gold.lake.checks import has_delta_commit

        config = task_config()
        self._path = config.paths.silver_flights_ml
        ready = has_delta_commit(self._path, config)
        if ready:
            self.log.info("Silver_ML is a Delta table: %s/_delta_log holds a commit", self._path)
        else:
            self.log.info("waiting for Silver_ML: no commit in %s/_delta_log yet", self._path)
        return ready


class GoldStreamingSubmitOperator(ProjectSparkSubmitOperator):
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

    template_fields: Sequence[str] = (
        *ProjectSparkSubmitOperator.template_fields,
        "trigger",
        "trigger_interval",
        "queries",
        "full_refresh",
    )
    ui_color = "#fff3e0"
    job_error_prefix = ERROR_PREFIX

    def __init__(
        self,
        *,
        trigger: str = "continuous",
        trigger_interval: str | None = None,
        queries: str | Sequence[str] | None = None,
        full_refresh: bool | str = False,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT_S,
        application: str = STREAMING_JOB,
        name: str = APP_NAME,
        **kwargs: Any,
    ) -> None:
        super().__init__(application=application, name=name, **kwargs)
        self.trigger = trigger
        self.trigger_interval = trigger_interval
        self.queries = queries
        self.full_refresh = full_refresh
        self.stop_timeout = stop_timeout
        self._stop_requested = False
        self._stop_requested_at = 0.0
        self._in_submit = False
        self._supervisor = None

    # -- run ------------------------------------------------------------------------------------

    def job_config(self) -> GoldConfig:
        """The job's configuration: the worker's environment plus the rendered parameters."""
        if self.trigger not in STREAM_MODES:
            raise AirflowFailException(
                f"trigger must be one of {', '.join(STREAM_MODES)}, got {self.trigger!r}"
            )
        queries = self.queries
        if isinstance(queries, str):
            queries = tuple(q.strip() for q in queries.split(",") if q.strip())
        return task_config(
            trigger=STREAM_MODES[self.trigger],
            trigger_interval=self.trigger_interval or None,
            queries=tuple(queries) if queries else None,
        )

    def refresh_requested(self, context: Any, config: GoldConfig) -> bool:
        """Whether this try passes --full-refresh. A retry does only while a refresh is
        unfinished (its marker is there): once done, a retry resumes from the new checkpoints
        instead of deleting the rows rebuilt so far."""
        if str(self.full_refresh).strip().lower() not in ("true", "1", "yes", "on"):
            return False
        ti = context.get("ti") if hasattr(context, "get") else None
        if getattr(ti, "try_number", 1) <= 1:
            return True
        from flight_gold.lake.documents import DocumentStore

        unfinished = [
            q for q in config.queries if DocumentStore(config.paths.refresh_marker(q), config).read_text()
        ]
        if not unfinished:
            self.log.info(
                "the full refresh finished on an earlier try: this try resumes from the checkpoints"
            )
        return bool(unfinished)

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
            self._ship_metrics(config)
            self.application_args = [
                "--lakehouse-root",
                config.lakehouse_root,
                "--trigger",
                config.trigger,
                "--trigger-interval",
                config.trigger_interval,
                "--queries",
                ",".join(config.queries),
                *(["--full-refresh"] if self.refresh_requested(context, config) else []),
                *(self.application_args or []),
            ]
            self.log.info(
                "Gold streaming job: lakehouse %s, trigger %s%s, queries %s%s",
                config.lakehouse_root,
                self.trigger,
                f" every {config.trigger_interval}" if self.trigger != "available-now" else "",
                ", ".join(config.queries),
                ", FULL REFRESH" if "--full-refresh" in self.application_args else "",
            )
            handle = self.new_handle()
            if handle.deploy_mode == "cluster":
                # The cluster manager owns the driver: the provider tracks and kills it, and
                # Airflow's retries restart it.
                return super().execute(context)
            self._supervise(context, config)
        finally:
            for name, value in rendered.items():
                setattr(self, name, value)
            shutil.rmtree(workdir, ignore_errors=True)
            self._supervisor = None

    def _ship_metrics(self, config: GoldConfig) -> None:
        """The job's UI and Prometheus endpoint (GOLD_METRICS_PORT), on loopback for a local master."""
        from flight_gold.spark.session import loopback_env, metrics_conf

        self.conf = {**metrics_conf(config), **(self.conf or {})}
        master = self.new_handle().master
        self.env_vars = {**loopback_env(config, master), **(self.env_vars or {})}

    def _supervise(self, context: Any, config: GoldConfig) -> None:
        from flight_gold.airflow.supervisor import StoppedOnRequest, StreamSupervisor

        self._supervisor = StreamSupervisor(self, config, context, self.trigger)
        outcome = self._supervisor.run()
        if isinstance(outcome, StoppedOnRequest):
            self.log.info(
                "%s: the task ends as success; nothing restarts the stream until a new trigger",
                outcome.message,
            )
            return
        failure = outcome
        # available-now: one run, as a batch job.
        if failure is None:
            return
        if failure.returncode == EXIT_BAD_INPUT:
            raise AirflowFailException(
                f"the streaming job rejected its input (exit code 2, not retried): {failure.reason}"
            )
        if context["ti"].try_number >= AVAILABLE_NOW_TRIES:
            # run_gold_streams keeps many retries for the continuous modes (a lost task comes
            # back); a one-shot run fails for good after its third try, as it always did.
            raise AirflowFailException(f"{failure.message} (try {context['ti'].try_number}, not retried)")
        raise AirflowException(failure.message)

    # -- what the supervisor calls ----------------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        """Airflow asked the task to stop (SIGTERM: marked success or failed, run stopped, worker
        shutting down)."""
        return self._stop_requested

    def run_job_once(self, handle) -> JobFailedError | None:
        """Runs spark-submit to its end; the failure, or None when it exited 0."""
        self._in_submit = True
        try:
            self.submit_local_driver(handle)
            return None
        except JobFailedError as failure:
            return failure
        finally:
            self._in_submit = False

    def stopped_by_airflow(self, returncode: int | None) -> AirflowException:
        """What the task raises when Airflow stopped it: a failure of this try, which Airflow
        does not retry when a person marked the task (its state is already final), and retries
        when the task was lost (worker or scheduler shutdown): the next try resumes."""
        if returncode is None:
            return AirflowException(
                "stopped on request (SIGTERM) while waiting to restart the streaming job; the next "
                "run resumes from the checkpoints"
            )
        self._log_stop_outcome(returncode)
        if returncode == 0:
            return AirflowException(
                "the streaming job was stopped on request (SIGTERM): it stopped its queries and "
                "exited cleanly; the next run resumes from the checkpoints"
            )
        return AirflowException(
            f"the streaming job was stopped on request (SIGTERM) and ended with exit code "
            f"{returncode}; the next run resumes from the last committed batch of each query"
        )

    def stream_channels(self) -> list:
        from flight_gold.airflow.alerts import stream_channels

        return stream_channels()

    def signal_job(self, sig: signal.Signals) -> bool:
        """Sends `sig` to the job's Python driver (or to spark-submit before the driver exists);
        False when no job is running."""
        handle = self.handle
        proc = handle.process if handle is not None else None
        if proc is None or exit_status(proc):
            return False
        drivers = application_processes(proc.pid, self.application)
        # Before the Python driver exists (spark-submit still resolving packages) there are no
        # queries to stop: the JVM's own SIGTERM handling is then enough.
        for target in drivers or [process(proc.pid)]:
            if target is not None:
                self.log.info(
                    "sending %s to the Spark job (pid %s) so that it stops its queries", sig.name, target.pid
                )
                send_signal(target, sig)
        return True

    def _log_stop_outcome(self, returncode: int | None) -> None:
        elapsed = time.monotonic() - self._stop_requested_at
        if returncode == 0:
            self.log.info("the Spark job stopped cleanly %.1f s after SIGTERM (exit code 0)", elapsed)
        else:
            self.log.warning(
                "the Spark job ended %.1f s after SIGTERM with exit code %s", elapsed, returncode
            )

    # -- stop -----------------------------------------------------------------------------------

    def on_kill(self) -> None:
        self._stop_requested = True
        self._stop_requested_at = time.monotonic()
        if self._supervisor is not None:
            self._supervisor.wake.set()
        handle = self.handle
        proc = handle.process if handle is not None else None
        if proc is None or handle.deploy_mode == "cluster" or exit_status(proc):
            super().on_kill()
            return
        self.signal_job(signal.SIGTERM)
        if self._in_submit:
            # Called from the SIGTERM handler while the main thread streams spark-submit's output:
            # return at once so that the job's last lines keep flowing into the task log (and its
            # pipe never fills); a thread falls back to the kill if the job overstays.
            threading.Thread(
                target=self._kill_after_grace, args=(proc,), name="gold-stop-watchdog", daemon=True
            ).start()
        else:
            self._kill_after_grace(proc)

    def _kill_after_grace(self, proc) -> None:
        while time.monotonic() - self._stop_requested_at < self.stop_timeout:
            if exit_status(proc):
                return
            time.sleep(0.1)
        self.log.warning(
            "the Spark job did not exit within %.1f s of SIGTERM: killing it; the next "
            "run resumes from the last committed batch",
            self.stop_timeout,
        )
        leftovers = descendants(proc.pid)
        super().on_kill()
        for child in leftovers:
            send_signal(child, signal.SIGKILL)
