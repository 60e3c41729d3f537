"""The tasks around the stream: the guard that refuses a second `gold_streaming` run while one
streams, the stop request of `gold_streaming_stop`, and the freshness check of `gold_freshness`.

Tasks have no database access in Airflow 3: they ask the execution API what other task instances
are doing, through the Task SDK's RuntimeTaskInstance (`get_task_states`), which the task
supervisor forwards to the API server.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from flight_gold.airflow.defaults import (
    STOP_DAG_ID,
    STREAMING_DAG_ID,
    STREAMING_GUARD_TASK,
    STREAMING_SENSOR_TASK,
    STREAMING_TASK,
)
from flight_gold.airflow.submit import task_config
from flight_gold.core.times import iso, utcnow
from flight_gold.supervision.control import StopRequests
from flight_gold.supervision.health import HealthStore

log = logging.getLogger(__name__)

# A task in one of these states is, or is about to be, at work (a lost task waiting for its retry
# included: it comes back).
ACTIVE_STATES = frozenset(
    {"running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting", "deferred"}
)
DEFAULT_STOP_WAIT_S = 600
STOP_POLL_S = 2.0


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def stream_task_states(ti) -> dict[str, dict[str, str | None]]:
    """{run_id: {task_id: state}} of the streaming DAG's guard, sensor and streaming tasks."""
    states = ti.get_task_states(
        dag_id=STREAMING_DAG_ID, task_ids=[STREAMING_GUARD_TASK, STREAMING_SENSOR_TASK, STREAMING_TASK]
    )
    return {run: {task: _state(s) for task, s in tasks.items()} for run, tasks in states.items()}


def streaming_runs(ti, exclude_run_id: str | None = None) -> list[str]:
    """The runs of `gold_streaming` that stream or are on their way to (waiting for Silver_ML, or
    about to start the job), but `exclude_run_id`."""
    found = []
    for run_id, tasks in stream_task_states(ti).items():
        if run_id == exclude_run_id:
            continue
        sensor, submit = tasks.get(STREAMING_SENSOR_TASK), tasks.get(STREAMING_TASK)
        at_work = (
            submit in ACTIVE_STATES or sensor in ACTIVE_STATES or (sensor == "success" and submit is None)
        )
        # A task state left behind by a run that ended (marked by hand, cleared) is no stream.
        if at_work and _state(ti.get_dagrun_state(STREAMING_DAG_ID, run_id)) in ("running", "queued"):
            found.append(run_id)
    return sorted(found)


def supervised_task_running(ti) -> bool:
    """Whether a `run_gold_streams` task is running, or lost and about to be retried."""
    states = ti.get_task_states(dag_id=STREAMING_DAG_ID, task_ids=[STREAMING_TASK])
    return any(_state(tasks.get(STREAMING_TASK)) in ACTIVE_STATES for tasks in states.values())


# -- gold_streaming: the guard --------------------------------------------------------------------


def refuse_if_streaming(context: Any) -> None:
    """The first task of `gold_streaming`: fails at once (no retry) when another run streams,
    naming it, so that a trigger is never silently queued behind a stream that runs for weeks."""
    ti = context["ti"]
    others = streaming_runs(ti, exclude_run_id=ti.run_id)
    if not others:
        log.info("no other %s run is streaming: this run starts the stream", STREAMING_DAG_ID)
        return
    run_id = others[0]
    since = ""
    try:
        health = HealthStore(task_config()).load()
    except Exception as exc:  # the refusal must not depend on the health document
        log.warning("could not read the stream health document: %s", exc)
        health = None
    if health is not None and health.run_id == run_id:
        start = health.running_since or health.supervised_since
        since = f", since {start.strftime('%Y-%m-%d %H:%M:%S UTC')}" if start else ""
    raise AirflowFailException(
        f"{STREAMING_DAG_ID} is already streaming (run {run_id}{since}); this run does nothing. "
        f"Stop it first with the DAG {STOP_DAG_ID} to start it with other settings."
    )


# -- gold_streaming_stop --------------------------------------------------------------------------


def request_stop(context: Any, wait_timeout_s: float = DEFAULT_STOP_WAIT_S) -> dict[str, Any]:
    """Writes the stop request, then waits (at most `wait_timeout_s`) until no `run_gold_streams`
    task is at work any more, and says how each streaming run ended."""
    ti = context["ti"]
    config = task_config()
    stops = StopRequests(config)
    streaming = streaming_runs(ti)
    request = stops.request(requested_by=f"{STOP_DAG_ID} run {ti.run_id}")
    log.info("stop request written to %s at %s", stops.uri, iso(request.requested_at))
    if not streaming:
        message = (
            f"no {STREAMING_DAG_ID} run is streaming: nothing to stop. The request stays in "
            f"{stops.uri}; the next trigger of {STREAMING_DAG_ID} removes it and streams."
        )
        log.info(message)
        return {"stopped_runs": [], "message": message, "stop_request": stops.uri}
    log.info("waiting for %s to stop: %s", STREAMING_TASK, ", ".join(streaming))
    began = time.monotonic()
    while True:
        states = stream_task_states(ti)
        busy = [r for r in streaming if states.get(r, {}).get(STREAMING_TASK) in ACTIVE_STATES]
        busy += [r for r in streaming if states.get(r, {}).get(STREAMING_SENSOR_TASK) in ACTIVE_STATES]
        if not busy:
            break
        if time.monotonic() - began > wait_timeout_s:
            raise AirflowFailException(
                f"{STREAMING_TASK} of {', '.join(sorted(set(busy)))} did not stop within "
                f"{wait_timeout_s:.0f} s of the stop request. Look at its log; to stop it at once, "
                f"mark the task failed in the UI (Airflow then sends it SIGTERM)."
            )
        time.sleep(STOP_POLL_S)
    ended = {r: states.get(r, {}).get(STREAMING_TASK) for r in streaming}
    waited = time.monotonic() - began
    message = f"stopped after {waited:.0f} s: " + ", ".join(f"{r} ({s})" for r, s in ended.items())
    log.info(message)
    return {"stopped_runs": streaming, "states": ended, "seconds": round(waited, 1), "message": message}


# -- gold_freshness -------------------------------------------------------------------------------


def check_freshness(context: Any) -> dict[str, Any]:
    from flight_gold.airflow.alerts import airflow_channels
    from flight_gold.supervision.staleness import run_freshness_check

    config = task_config()
    running = supervised_task_running(context["ti"])
    result = run_freshness_check(config, airflow_channels(text=True), stream_running=running, now=utcnow())
    result["stream_running"] = running
    return result
