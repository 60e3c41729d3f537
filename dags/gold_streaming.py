"""
### Gold streaming: Silver_ML -> Gold tables, with Spark Structured Streaming

Triggered by hand (**Trigger** button, top right). Two tasks:

1. **wait_for_silver_ml** waits until `silver/flights_ml` under `LAKEHOUSE_ROOT` is a Delta table
   (its `_delta_log/` holds a commit). It frees its worker slot between checks (state
   *up for reschedule*) and fails after *Silver_ML wait timeout* seconds, naming the path.
2. **run_gold_streams** submits `jobs/streaming_gold.py` with spark-submit through the Spark
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

**Watching it**: the log of *run_gold_streams* shows one `gold_progress {...}` line per
micro-batch and query: rows in, batch duration, watermark, late rows dropped, state rows.

**Stopping a continuous run**: mark the running *run_gold_streams* task as failed (or mark the
run as failed). Airflow sends SIGTERM; the job stops its queries between two micro-batches and
exits, and the task ends *failed* with "stopped on request". Nothing is lost: the next run
resumes from the checkpoints (`_checkpoints/gold/streaming_aggregations/<query>`) and writes
no window twice.

**Failures**: a crashed job is retried (with growing delays) and resumes from its checkpoints.
Bad input (Silver_ML without a needed column, bad parameters) fails at once, without retry,
with the reason in the log. So does a start that would corrupt Gold: a checkpoint deleted or
moved while its Gold table holds rows, a setting baked into the stream's state (anomaly
thresholds, shuffle partitions) changed since the checkpoint started, or a full refresh left
unfinished; the log says what to run (usually a run with *Full refresh*).

**Compaction**: the job compacts its Gold tables itself (OPTIMIZE every
`GOLD_COMPACT_INTERVAL`, default 1 hour): it is the only writer of their logs. Only one run is active at a time: two jobs must never share a
checkpoint, so a second trigger waits until the first run ends.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from flight_gold.airflow.defaults import DEFAULT_ARGS, STREAMING_DAG_ID, TAGS
from flight_gold.airflow.streaming import GoldStreamingSubmitOperator, SilverMLSensor, streaming_params


@dag(
    dag_id=STREAMING_DAG_ID,
    description="Silver_ML -> Gold Delta tables with Spark Structured Streaming (trigger by hand)",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "streaming", "spark"],
    params=streaming_params(),
    doc_md=__doc__,
)
def gold_streaming():
    wait_for_silver = SilverMLSensor(
        task_id="wait_for_silver_ml",
        wait_timeout="{{ params.silver_wait_timeout }}",
        doc_md="Waits, without holding a worker slot, until Silver_ML's `_delta_log/` holds a commit.",
    )
    run_streams = GoldStreamingSubmitOperator(
        task_id="run_gold_streams",
        conn_id="spark_default",
        trigger="{{ params.trigger }}",
        trigger_interval="{{ params.trigger_interval }}",
        queries="{{ params.queries | join(',') }}",
        full_refresh="{{ params.full_refresh }}",
        doc_md="spark-submit jobs/streaming_gold.py; one `gold_progress` log line per micro-batch.",
    )
    wait_for_silver >> run_streams


gold_streaming()
