"""
### Stop the Gold stream (`gold_streaming_stop`)

Trigger it (no parameters to fill) to stop the running `gold_streaming` stream on purpose. Its
task writes a stop request (`<LAKEHOUSE_ROOT>/_control/gold_streaming_stop.json`); the
supervising task *run_gold_streams* sees it within seconds, sends SIGTERM to the Spark job, which
stops its queries cleanly, and ends as **success**. Nothing restarts the stream until you
trigger `gold_streaming` again (that trigger removes the request). No alert is sent.

The task waits until no *run_gold_streams* is running (at most `wait_timeout` seconds, default
600) and reports which runs stopped; it fails, saying what to do, if one did not stop in time.
When nothing streams, it says so and leaves the request for the next trigger to remove.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, task

from flight_gold.airflow.defaults import DEFAULT_ARGS, STOP_DAG_ID, TAGS


@dag(
    dag_id=STOP_DAG_ID,
    description="Stop the gold_streaming stream cleanly; its run ends as success (trigger by hand)",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    # A trigger must act at once: a paused stop DAG would queue the stop silently.
    is_paused_upon_creation=False,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "streaming"],
    doc_md=__doc__,
    params={
        "wait_timeout": Param(
            600,
            type="integer",
            minimum=0,
            title="Wait timeout (s)",
            description="How long to wait for the stream to stop before this run fails.",
        )
    },
)
def gold_streaming_stop():
    @task(retries=0)
    def request_stop(params=None, **context) -> dict:
        from flight_gold.airflow.control import request_stop

        return request_stop(context, float((params or {}).get("wait_timeout", 600)))

    request_stop()


gold_streaming_stop()
