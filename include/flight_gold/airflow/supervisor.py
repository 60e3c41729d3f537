"""The supervising side of `run_gold_streams`: in a continuous mode the task runs the Gold job
again and again until someone stops it on purpose.

- The job ending by itself (any exit code but 2 and 3, 0 included when no stop was asked, death
  by a signal such as kill -9) is an unplanned stop: people are told, the task waits a backoff
  (flight_gold.supervision.backoff) and starts the job again, from its checkpoints; no limit on
  the number of restarts.
- Exit code 2 (bad input) or 3 (another instance holds the checkpoint): people are told and the
  task fails without retry; a restart would fail the same way.
- A stop request (DAG `gold_streaming_stop`, document `_control/gold_streaming_stop.json`): the
  job gets SIGTERM, stops its queries cleanly, and the task ends as success, silently.
- "Mark success" / "Mark failed" in the UI (Airflow's SIGTERM, `on_kill`): the job is stopped the
  same way and nothing restarts it; no message either.

A watcher thread polls the stop request every POLL_S seconds (a small document read, no JVM),
writes the health document's heartbeat, and sends the alert summaries that became due.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from flight_gold.airflow.submit import exit_status
from flight_gold.core.config import GoldConfig
from flight_gold.core.errors import EXIT_BAD_INPUT, EXIT_CHECKPOINT_IN_USE
from flight_gold.core.intervals import duration_seconds
from flight_gold.core.times import iso, utcnow
from flight_gold.supervision import events
from flight_gold.supervision.backoff import RestartBackoff
from flight_gold.supervision.control import StopRequests
from flight_gold.supervision.events import StreamNotifier
from flight_gold.supervision.health import HEARTBEAT_S, HealthStore, StreamHealth

log = logging.getLogger(__name__)

POLL_S = 2.0
FLUSH_S = 30.0
# A job asked to stop by a stop request gets this long to stop its queries before it is killed
# (Airflow is not killing the task here, so there is no 5-second limit; a bound all the same).
STOP_REQUEST_GRACE_S = 300.0


@dataclass(frozen=True)
class StoppedOnRequest:
    """What `run` returns when a stop request ended the stream: the task ends as success."""

    message: str


class StreamSupervisor:
    """Supervises the job of one try of `run_gold_streams`. `operator` is the
    GoldStreamingSubmitOperator: it starts a job (`run_job_once`), signals it (`signal_job`),
    and knows whether Airflow asked the task to stop (`stop_requested`)."""

    def __init__(self, operator, config: GoldConfig, context: Any, mode: str):
        ti, dag_run = context["ti"], context["dag_run"]
        self.op, self.config, self.mode = operator, config, mode
        self.dag_id, self.run_id, self.try_number = ti.dag_id, ti.run_id, ti.try_number
        self.run_started = getattr(dag_run, "start_date", None) or utcnow()
        self.continuous = mode != "available-now"
        self.stops = StopRequests(config)
        self.health_store = HealthStore(config)
        self.health = StreamHealth()
        self.notifier = StreamNotifier(
            config, operator.stream_channels(), duration_seconds(config.stream_alert_interval)
        )
        self.backoff = RestartBackoff(
            duration_seconds(config.stream_restart_delay), duration_seconds(config.stream_restart_max_delay)
        )
        self.stop_request = None
        self.wake = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._job_running = False

    # -- the loop -------------------------------------------------------------------------------

    def run(self):
        """Runs the job until a stop request (returns StoppedOnRequest), Airflow's stop (raises
        the operator's exception), a give-up (raises AirflowFailException), or, in available-now
        mode, its end (returns the job's JobFailedError, or None)."""
        cleared = self._guarded("remove an older stop request", self.stops.clear_older_than, self.run_started)
        if cleared is not None:
            log.info(
                "removed the stop request of %s (by %s): this run started after it",
                iso(cleared.requested_at),
                cleared.requested_by,
            )
        with self._lock:
            self.health = self._guarded("read the health document", self.health_store.load) or StreamHealth()
            self.health.supervising(self.dag_id, self.run_id, self.try_number, self.mode, utcnow())
            self._save_health()
        if self.continuous and self.try_number > 1:
            self._notify(events.task_restarted(self.dag_id, self.run_id, self.try_number, utcnow()))
        watcher = threading.Thread(target=self._watch, name="gold-supervisor", daemon=True)
        watcher.start()
        try:
            return self._loop()
        finally:
            self._done.set()
            self.wake.set()
            watcher.join(timeout=10)

    def _loop(self):
        restarts = 0
        while True:
            if stopped := self._check_stops():
                return stopped
            handle = self.op.new_handle()
            began = time.monotonic()
            with self._lock:
                self._job_running = True
                self.health.job_started(utcnow())
                self._save_health()
            if restarts:
                count = len(self.health.recent_restarts(utcnow()))
                self._notify(events.restarted(self.dag_id, self.run_id, count, utcnow()))
            try:
                failure = self.op.run_job_once(handle)
            finally:
                with self._lock:
                    self._job_running = False
                reap_job(handle)
            ran_for = time.monotonic() - began
            code = 0 if failure is None else failure.returncode
            # The job's own last error line; the provider's message repeats the whole command.
            reason = handle.last_line(self.op.job_error_prefix) if failure is not None else None
            if stopped := self._check_stops(code):
                return stopped
            if not self.continuous:
                self._finish(code, reason)
                return failure
            if code in (EXIT_BAD_INPUT, EXIT_CHECKPOINT_IN_USE):
                self._give_up(code, reason)
            delay = self.backoff.delay(ran_for)
            now = utcnow()
            log.warning(
                "the Spark job %s after %.0f s without being asked to stop%s; starting it again in %g s",
                events.exit_text(code),
                ran_for,
                f" ({reason})" if reason else "",
                delay,
            )
            with self._lock:
                self.health.unplanned_stop(reason or events.exit_text(code), code, delay, now)
                self._save_health()
            self._notify(events.unplanned_stop(self.dag_id, self.run_id, code, reason, delay, now))
            self.wake.wait(delay)
            restarts += 1

    def _check_stops(self, code: int | None = None) -> StoppedOnRequest | None:
        """Whether someone asked for a stop: a stop request (StoppedOnRequest: success) or
        Airflow's SIGTERM (raises the operator's exception, as it always did)."""
        if self.op.stop_requested:
            with self._lock:
                self.health.stopped("stopped from Airflow (task marked or stopped)", utcnow())
                self._save_health()
            raise self.op.stopped_by_airflow(code)
        if self.stop_request is None:
            self.stop_request = self._guarded(
                "read the stop request", self.stops.pending_since, self.run_started
            )
        if self.stop_request is not None:
            message = (
                f"stopped on request: {self.stop_request.requested_by or 'a stop request'} at "
                f"{iso(self.stop_request.requested_at)}"
            )
            with self._lock:
                self.health.stopped(message, utcnow())
                self._save_health()
            return StoppedOnRequest(message)
        return None

    def _finish(self, code: int | None, reason: str | None) -> None:
        with self._lock:
            if code == 0:
                self.health.stopped("available-now run finished", utcnow())
            else:
                reason = reason or events.exit_text(code)
                self.health.gave_up(reason, code, "available-now run failed", utcnow())
            self._save_health()

    def _give_up(self, code: int, reason: str | None) -> None:
        now = utcnow()
        event = events.gave_up(self.dag_id, self.run_id, code, reason, now)
        with self._lock:
            self.health.gave_up(reason or events.exit_text(code), code, event.next_step, now)
            self._save_health()
        self._notify(event)
        raise AirflowFailException(
            f"the streaming job {events.exit_text(code)}, not retried: {reason or 'see the log above'}. "
            f"{event.next_step}"
        )

    # -- the watcher thread ------------------------------------------------------------------------

    def _watch(self) -> None:
        last_beat = last_flush = time.monotonic()
        while not self._done.wait(POLL_S):
            try:
                if self.stop_request is None:
                    request = self.stops.pending_since(self.run_started)
                    if request is not None:
                        self.stop_request = request
                        self._stop_job_on_request()
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT_S:
                    with self._lock:
                        self._save_health()
                    last_beat = now
                if now - last_flush >= FLUSH_S:
                    self.notifier.flush()
                    last_flush = now
            except Exception as exc:  # the watcher must outlive a storage hiccup
                log.warning("supervisor watcher: %s", exc)

    def _stop_job_on_request(self) -> None:
        log.info(
            "stop requested by %s at %s: stopping the Spark job cleanly (SIGTERM)",
            self.stop_request.requested_by,
            iso(self.stop_request.requested_at),
        )
        self.wake.set()
        deadline = time.monotonic() + STOP_REQUEST_GRACE_S
        signalled = False
        while not self._done.is_set() and time.monotonic() < deadline:
            with self._lock:
                running = self._job_running
            if not running:
                return
            handle = self.op.handle
            proc = handle.process if handle is not None else None
            # The process may not exist yet (spark-submit about to start): signal it once it does.
            if proc is not None:
                if exit_status(proc):
                    return
                if not signalled:
                    self.op.signal_job(signal.SIGTERM)
                    signalled = True
            time.sleep(0.2)
        if not self._done.is_set():
            log.warning(
                "the Spark job did not stop within %.0f s of SIGTERM: killing it", STOP_REQUEST_GRACE_S
            )
            reap_job(self.op.handle)

    # -- helpers ----------------------------------------------------------------------------------

    def _guarded(self, what: str, call, *args):
        """`call(*args)`, or None when the lakehouse cannot be reached: the control documents must
        never stop a stream (the watcher asks again two seconds later)."""
        try:
            return call(*args)
        except Exception as exc:
            log.warning("could not %s: %s", what, exc)
            return None

    def _save_health(self) -> None:
        try:
            self.health_store.save(self.health)
        except Exception as exc:
            log.warning("could not write the stream health document %s: %s", self.health_store.uri, exc)

    def _notify(self, event: events.StreamEvent) -> None:
        try:
            outcome = self.notifier.notify(event)
            log.info("notified %s: %s", event.kind, outcome or "no channel configured")
        except Exception as exc:
            log.warning("could not notify %s: %s", event.kind, exc)


def reap_job(handle) -> None:
    """Kills what is left of a job whose spark-submit ended: its process group (spark-submit runs
    in a group of its own) may still hold the job's Python driver, which holds the checkpoint
    lock; the next start would then be refused as a second instance."""
    proc = handle.process if handle is not None else None
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
