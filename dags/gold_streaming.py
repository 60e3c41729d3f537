"""
### Gold streaming: Silver_ML -> Gold tables, with Spark Structured Streaming

Triggered by hand (**Trigger** button, top right). Three tasks:

1. **check_not_streaming** fails at once, naming the running run, when another run of this DAG
   is streaming: only one stream may run (two jobs must never share a checkpoint). Stop it with
   the DAG **gold_streaming_stop** to start it again with other settings.
2. **wait_for_silver_ml** waits until `silver/flights_ml` under `LAKEHOUSE_ROOT` is a Delta table
   (its `_delta_log/` holds a commit). It frees its worker slot between checks (state
   *up for reschedule*) and fails after *Silver_ML wait timeout* seconds, naming the path.
3. **run_gold_streams** submits `jobs/streaming_gold.py` with spark-submit through the Spark
   connection `spark_default` (`local[*]` on this machine, or a cluster's master). It appends
   1-minute phase counts to `gold/streaming_aggregations/flight_phase_counts` and 5-minute
   sliding anomaly statistics to `gold/streaming_aggregations/anomaly_alerts`.

**Trigger form**

| parameter | meaning |
|---|---|
| Trigger | `continuous` (default): the streams run until you stop them. `continuous-low-latency`: the same, each window in Gold about one interval sooner for about 2x the CPU. `available-now`: process what Silver_ML holds, write every window the watermark has closed, finish. |
| Trigger interval | micro-batch interval in the continuous modes (`10 seconds`) |
| Queries | the Gold streams to run (both by default) |
| Full refresh | off by default. Deletes every row of the chosen Gold tables and their checkpoints, then rebuilds them from all of Silver_ML: how new anomaly thresholds or windows reach history. A retry after the refresh finished resumes instead of refreshing again. |
| Silver_ML wait timeout (s) | how long the sensor waits for Silver_ML |

**Supervision (continuous modes)**: the task keeps the job running. If the job stops without
being asked to (a crash, kill -9, an exit), you get one Slack message and one email (connections
`slack_alerts`, `smtp_alerts`, recipients `ALERT_EMAIL_TO`) and the job starts again after a
backoff (`GOLD_STREAM_RESTART_DELAY` 5 s, doubling up to `GOLD_STREAM_RESTART_MAX_DELAY` 5 min),
from its checkpoints, for as long as it takes. Bad input (exit code 2) or a second instance
(exit code 3) is not retried: you are told, and the task fails. If the task itself is lost
(scheduler or worker restart), Airflow retries it (up to 5 minutes later) and you are told.
Messages are rate-limited (`GOLD_STREAM_ALERT_INTERVAL`, 5 min, with a summary of what happened
in between).

**Stopping**: trigger the DAG **gold_streaming_stop**: the job stops its queries cleanly and
this run ends as *success*; nothing restarts it until you trigger this DAG again. Marking
*run_gold_streams* success or failed also stops it (no message, no restart).

**Refused starts**: bad input (Silver_ML without a needed column, bad parameters) fails at once,
without retry, with the reason in the log. So does a start that would corrupt Gold: a checkpoint
deleted or moved while its Gold table holds rows, a setting baked into the stream's state (anomaly
thresholds, shuffle partitions) changed since the checkpoint started, or a full refresh left
unfinished; the log says what to run (usually a run with *Full refresh*).

**Compaction**: the job compacts its Gold tables itself (OPTIMIZE every `GOLD_COMPACT_INTERVAL`,
default 1 hour): it is the only writer of their logs.

**Watching it**: the Flight Gold page (stream health: running since, restarts in 24 h, the last
failure, freshness per table; per-batch metrics from `_metrics/gold_stream_progress`), the log of
*run_gold_streams* (a `gold_progress {...}` line per query and minute, and per batch that wrote
Gold or dropped rows), Prometheus on the driver (`GOLD_METRICS_PORT`, default 4040,
`/metrics/prometheus`), and the DAG **gold_freshness** (an alert when Gold falls behind).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from flight_gold.airflow.defaults import (
    DEFAULT_ARGS,
    STREAMING_DAG_ID,
    STREAMING_GUARD_TASK,
    STREAMING_SENSOR_TASK,
    STREAMING_TASK,
    STREAMING_TASK_RETRIES,
    TAGS,
)
from flight_gold.airflow.streaming import GoldStreamingSubmitOperator, SilverMLSensor, streaming_params


@dag(
    dag_id=STREAMING_DAG_ID,
    description="Silver_ML -> Gold Delta tables with Spark Structured Streaming (trigger by hand)",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # A trigger while a stream runs is refused by its first task, visibly, instead of queueing
    # for weeks behind it.
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "streaming", "spark"],
    params=streaming_params(),
    doc_md=__doc__,
)
def gold_streaming():
    @task(task_id=STREAMING_GUARD_TASK, retries=0)
    def check_not_streaming(**context) -> None:
        """Fails at once, naming the running run, when another run of this DAG streams."""
        from flight_gold.airflow.control import refuse_if_streaming

        refuse_if_streaming(context)

    wait_for_silver = SilverMLSensor(
        task_id=STREAMING_SENSOR_TASK,
        wait_timeout="{{ params.silver_wait_timeout }}",
        doc_md="Waits, without holding a worker slot, until Silver_ML's `_delta_log/` holds a commit.",
    )
    run_streams = GoldStreamingSubmitOperator(
        task_id=STREAMING_TASK,
        conn_id="spark_default",
        trigger="{{ params.trigger }}",
        trigger_interval="{{ params.trigger_interval }}",
        queries="{{ params.queries | join(',') }}",
        full_refresh="{{ params.full_refresh }}",
        doc_md="spark-submit jobs/streaming_gold.py, started again after an unplanned stop; "
        "stopped by the DAG gold_streaming_stop.",
        **STREAMING_TASK_RETRIES,
    )
    check_not_streaming() >> wait_for_silver >> run_streams


gold_streaming()
