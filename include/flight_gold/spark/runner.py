"""The Gold job's run: the start-up guards, the progress listener, the queries, and the wait
until they end, fail or are asked to stop. jobs/streaming_gold.py is its command line.

Exit codes (flight_gold.core.errors): 0 done or stopped by SIGTERM/SIGINT; 1 a query failed
(a retry resumes from its checkpoint), or a maintenance job held a checkpoint for too long; 2 bad
input or configuration (nothing written); 3 another running Gold stream holds the checkpoint.

A new checkpoint first reads Silver_ML's current snapshot in one available-now batch, whatever
maxFilesPerTrigger/maxBytesPerTrigger say: the Delta source splits a snapshot by file, not by
event time, and on a compacted or Z-ordered table a later split would hold rows older than the
watermark an earlier one set (dropped as late). The configured trigger and limits then go on
from that checkpoint. A query stopped by a Silver_ML schema change is started again, in the
same session, up to MAX_SCHEMA_RESTARTS times in a row without a batch in between.

A processing-time run starts with a head start: its first HEAD_START_BATCHES batches read at most
HEAD_START_FILES Silver_ML files each, so that a restart with a backlog writes Gold within seconds;
then each query is stopped, once a stop leaves no closed window waiting for Silver_ML's next
commit (HeadStartOver), and all are started again in the same session with the configured limit.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import SparkSession

from flight_gold.core.config import GoldConfig
from flight_gold.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECKPOINT_IN_USE,
    EXIT_OK,
    EXIT_QUERY_FAILED,
    cause_chain,
)
from flight_gold.core.intervals import interval_seconds
from flight_gold.core.jobs import STREAMING_APP_NAME, STREAMING_ERROR_PREFIX
from flight_gold.lake.metrics import MetricsWriter
from flight_gold.spark.checkpoints import nothing_due_after_a_stop
from flight_gold.spark.files import HadoopFiles
from flight_gold.spark.guards import CheckpointBusyError, CheckpointInUseError, GuardError, lock_checkpoints
from flight_gold.spark.jit import CaughtUpWatch, compile_in_background, jvm_pid
from flight_gold.spark.preflight import (
    SilverNotReadyError,
    check_silver,
    prepare_checkpoints,
    recorded_watermarks,
)
from flight_gold.spark.progress import ProgressLogger, flush_listener_events
from flight_gold.spark.queries import ALL_FILES, start_queries
from flight_gold.spark.silver_snapshot import CHECK_EVERY_S, CHECK_EVERY_S_S3, SilverSnapshotFollower
from flight_gold.spark.upstream import SkippedCommitLog, schema_change_version
from flight_gold.spark.watch import StorageWatch

log = logging.getLogger("flight_gold.jobs.streaming_gold")

APP_NAME = STREAMING_APP_NAME
# Prefix of the lines the job prints to stderr when it refuses to start or a query fails: the
# Airflow task quotes the last one as the reason.
ERROR_PREFIX = STREAMING_ERROR_PREFIX
# Restarts after a Silver_ML schema change with no committed batch in between, at most.
MAX_SCHEMA_RESTARTS = 3
# await_queries' answer when the queries stopped on a schema change and are to be started again.
RESTART = -1
# await_queries' answer when its `until` held and it stopped the queries.
UNTIL_REACHED = -2
# The head start of a processing-time run (module docstring). 50 files hold minutes of event time
# at the feed's commit rate (one every 5-10 s), enough to move the watermark past a window end;
# a batch that small costs what any batch costs, not what its files do.
HEAD_START_FILES = 50
HEAD_START_BATCHES = 2


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT only set the returned event: the wait loop stops the queries between
    two waits, so a micro-batch is never cut in the middle by Python code."""
    stop = threading.Event()

    def handler(signum, _frame) -> None:
        log.warning("received %s, stopping the queries", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    return stop


def run_gold_streams(spark: SparkSession, config: GoldConfig, stop: threading.Event) -> int:
    """Runs the configured Gold streams until they end, fail or `stop` is set; the exit code."""
    locks, listener = [], None
    try:
        # Every refusal happens before the first query starts and writes nothing (only
        # --full-refresh and the leftovers of a first batch that never committed are removed).
        try:
            check_silver(spark, config)
            locks = lock_checkpoints(config)
            fresh = prepare_checkpoints(spark, config)
        except CheckpointInUseError as exc:
            return refuse(exc, EXIT_CHECKPOINT_IN_USE)
        except CheckpointBusyError as exc:
            return refuse(exc, EXIT_QUERY_FAILED)
        except (SilverNotReadyError, GuardError) as exc:
            return refuse(exc, EXIT_BAD_INPUT)
        # The session may be shared (tests): the checkpoints are created with this count.
        spark.conf.set("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        skipped = SkippedCommitLog(HadoopFiles(spark), config.paths.silver_flights_ml)
        log_metrics_endpoint(spark, config)
        metrics = MetricsWriter(config).start()
        try:
            listener = ProgressLogger(
                config, recorded_watermarks(spark, config), skipped_commits=skipped, metrics=metrics
            )
            spark.streams.addListener(listener)
            code = run_streams(spark, config, stop, fresh)
            flush_listener_events(spark)
            listener.log_summary()
        finally:
            metrics.close()
        log.info(
            "metrics: %d row(s) written to %s; progress lines: %d logged, %d left out of the log",
            metrics.rows_written,
            metrics.path,
            listener.lines_logged,
            sum(c["batches"] for c in listener.summary().values()) - listener.lines_logged,
        )
        return code
    finally:
        if listener is not None:
            spark.streams.removeListener(listener)
        for lock in locks:
            lock.release()


def log_metrics_endpoint(spark: SparkSession, config: GoldConfig) -> None:
    url = spark.sparkContext.uiWebUrl
    if config.metrics_ui_port is not None and url:
        log.info("Prometheus metrics of the streams: %s/metrics/prometheus", url.rstrip("/"))


def refuse(exc: Exception, code: int) -> int:
    log.error("%s", exc)
    print(f"{ERROR_PREFIX} error: {exc}", file=sys.stderr, flush=True)
    return code


def run_streams(
    spark: SparkSession, config: GoldConfig, stop: threading.Event, fresh: tuple[str, ...] | list[str] = ()
) -> int:
    """Starts the queries and waits for them; in available-now-loop mode, runs them available-now
    once per trigger interval (an interval counts from a run's start) until `stop` is set or a run
    fails. A stop between two runs has nothing in flight. `fresh`: the queries whose checkpoint
    is new, which first read Silver_ML's snapshot in one batch."""
    if fresh:
        log.info(
            "new checkpoint for %s: reading Silver_ML's current snapshot in one batch first",
            ", ".join(fresh),
        )
        initial = config.replace(
            trigger="available-now",
            queries=tuple(fresh),
            max_files_per_trigger=ALL_FILES,
            max_bytes_per_trigger=None,
        )
        code = run_restarting(spark, initial, stop, first_start=True, quiet=True)
        if code != EXIT_OK or stop.is_set():
            return code
    # The initial run created the Gold tables of its queries and logged their starts.
    first = set(fresh) != set(config.queries)
    if config.trigger != "available-now-loop":
        head_start = head_start_config(config)
        if head_start is not None:
            log.info(
                "head start: the first %d batches of each query read at most %d Silver_ML files each, "
                "so that the first windows a backlog closes reach Gold within seconds",
                HEAD_START_BATCHES,
                HEAD_START_FILES,
            )
            over = HeadStartOver(HadoopFiles(spark), config)
            code = run_restarting(spark, head_start, stop, first_start=first, until=over)
            if code != UNTIL_REACHED:
                return code
            log.info(
                "head start over: restarting the queries with batches of up to %s Silver_ML files",
                config.max_files_per_trigger or "Delta's default of 1,000",
            )
            first = False
        return run_restarting(spark, config, stop, first_start=first)
    interval_s = interval_seconds(config.trigger_interval)
    run_config = config.replace(trigger="available-now")
    runs = 0
    log.info(
        "available-now-loop: an available-now run of %s every %s",
        ", ".join(config.queries),
        config.trigger_interval,
    )
    while True:
        began = time.monotonic()
        code = run_restarting(
            spark, run_config, stop, first_start=first and runs == 0, quiet=True, loop_config=config
        )
        runs += 1
        if code != EXIT_OK:
            log.info("available-now-loop: %d runs", runs)
            return code
        if stop.is_set():
            # During the run (await_queries said whether it cut a batch) or as it was finishing.
            log.info("available-now-loop: %d runs; stopped cleanly", runs)
            return EXIT_OK
        if stop.wait(max(0.0, interval_s - (time.monotonic() - began))):
            log.info(
                "stopped cleanly between two runs (%d runs): every window the watermark closed is written",
                runs,
            )
            return EXIT_OK


def head_start_config(config: GoldConfig) -> GoldConfig | None:
    """The configuration of a processing-time run's head start, or None when it has none (other
    triggers read to the end anyway; a configured limit at or below the head start's is kept)."""
    if config.trigger != "processing-time":
        return None
    if config.max_files_per_trigger is not None and config.max_files_per_trigger <= HEAD_START_FILES:
        return None
    return config.replace(max_files_per_trigger=HEAD_START_FILES)


class HeadStartOver:
    """The head start's end for one query: it has completed HEAD_START_BATCHES micro-batches (no-data
    ones too) since its start, counted by distinct batch id, and a stop now leaves no closed window
    waiting for Silver_ML's next commit (checkpoints.nothing_due_after_a_stop): a stop right after
    the batch that read the backlog's end would, as Spark runs the batch without data that writes
    the windows it closed only in the same start. recentProgress holds only this start's reports,
    a few during the head start: a cheap poll; the checkpoint is read once the batches are done."""

    def __init__(self, files, config: GoldConfig) -> None:
        self.files, self.config = files, config

    def __call__(self, query) -> bool:
        if len({p.batchId for p in query.recentProgress}) < HEAD_START_BATCHES:
            return False
        return nothing_due_after_a_stop(
            self.files, self.config.paths.checkpoint(query.name), self.config.paths.silver_flights_ml
        )


def run_restarting(
    spark: SparkSession,
    config: GoldConfig,
    stop: threading.Event,
    first_start: bool,
    quiet: bool = False,
    loop_config: GoldConfig | None = None,
    until=None,
) -> int:
    """One start of the queries, started again after a Silver_ML schema change; the exit code,
    or UNTIL_REACHED when `until` held for every query and they were stopped (await_queries)."""
    restarts = 0
    while True:
        queries = start_queries(spark, config, first_start=first_start, stop=stop)
        with (
            silver_snapshot_follower(spark, config, until, queries),
            compilers_in_gaps_when_caught_up(spark, config, until, queries),
        ):
            code = await_queries(
                queries,
                stop,
                loop_config or config,
                quiet,
                allow_restart=restarts < MAX_SCHEMA_RESTARTS,
                until=until,
            )
        if code != RESTART:
            return code
        # A committed batch since the last start: the schema change was real progress, not a loop.
        restarts = 1 if any(q.lastProgress is not None for q in queries) else restarts + 1
        first_start = False


def is_real_time_run(config: GoldConfig, until=None) -> bool:
    """A processing-time run after the head start (which has an `until`): runs that read a backlog
    to its end keep every core busy until they stop."""
    return config.trigger == "processing-time" and until is None


def silver_snapshot_follower(spark: SparkSession, config: GoldConfig, until=None, queries=()):
    """Real-time runs (processing-time, after the head start) keep Silver_ML's snapshot current
    between the triggers of `queries` (flight_gold.spark.silver_snapshot); runs that read a
    backlog to its end update it once per batch anyway."""
    if not is_real_time_run(config, until):
        return contextlib.nullcontext()
    return SilverSnapshotFollower(
        spark,
        HadoopFiles(spark),
        config.paths.silver_flights_ml,
        every_s=CHECK_EVERY_S_S3 if config.is_s3 else CHECK_EVERY_S,
        busy=lambda: any(trigger_active(q) for q in queries),
        trigger_every_s=interval_seconds(config.trigger_interval),
    )


def compilers_in_gaps_when_caught_up(spark: SparkSession, config: GoldConfig, until=None, queries=()):
    """Real-time runs (processing-time, after the head start) put the driver JVM's JIT compilers
    in the idle time between triggers once they have caught up (flight_gold.spark.jit)."""
    if not is_real_time_run(config, until) or config.jit_nice == 0:
        return contextlib.nullcontext()
    return CaughtUpWatch(
        queries,
        interval_seconds(config.trigger_interval),
        on_caught_up=lambda: compile_in_background(jvm_pid(spark), config.jit_nice),
    )


def trigger_active(query) -> bool:
    try:
        return bool(query.status["isTriggerActive"])
    except Exception:  # a query stopping under the call: no batch to wait for
        return False


def await_queries(
    queries,
    stop: threading.Event,
    config: GoldConfig | None = None,
    quiet: bool = False,
    allow_restart: bool = False,
    until=None,
) -> int:
    """Waits until the queries end, one fails or `stop` is set; the exit code, or RESTART after a
    Silver_ML schema change. `until`: a predicate of one query; a query for which it holds is
    stopped at once (not with the others: its state then is the one `until` saw), and when every
    query is, the answer is UNTIL_REACHED."""
    stopped_early: set[str] = set()

    def failed():
        # A query stopped mid-batch can end with an error on S3 (progress.interrupted): its next
        # start replays the batch.
        return [q for q in queries if q.name not in stopped_early and q.exception() is not None]

    with StorageWatch(config):
        while not stop.wait(0.2):
            if failed() or not any(q.isActive for q in queries):
                break
            if until is None:
                continue
            for q in queries:
                if q.name not in stopped_early and until(q):
                    # A batch in flight is cut as on a stop, and replayed by the next start.
                    q.stop()
                    stopped_early.add(q.name)
            if len(stopped_early) == len(queries):
                return UNTIL_REACHED
    if stop.is_set():
        # stop() cancels a micro-batch in flight; it was not committed, and the next start
        # replays it from the offset log (the Gold writer skips a batch it already holds).
        stop_all(queries)
        log.info(
            "stopped cleanly: the queries are stopped; the next start resumes from the "
            "checkpoints, replaying any batch that was cut"
        )
        return EXIT_OK
    broken = failed()
    stop_all(queries)
    versions = [schema_change_version(q.exception()) for q in broken]
    if broken and allow_restart and all(v is not None for v in versions):
        version = max(versions)
        log.warning(
            "Silver_ML's schema changed at version %s: restarting the queries",
            version if version >= 0 else "(unknown)",
        )
        return RESTART
    for q in broken:
        cause = describe_failure(q.exception(), q.name, config)
        log.error("query %s failed: %s", q.name, cause)
        print(f"{ERROR_PREFIX} query {q.name} failed: {cause}", file=sys.stderr, flush=True)
    if broken:
        return EXIT_QUERY_FAILED
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "all queries finished: every window the watermark closed is written",
    )
    return EXIT_OK


def stop_all(queries) -> None:
    """Stops the queries at the same time: each stop() waits until its query's batch in flight is
    cut, and one after the other those waits add up, while a supervisor's SIGKILL follows its
    SIGTERM after a few seconds. Raises the first query's error, if any, once all are stopped."""
    with ThreadPoolExecutor(max_workers=max(1, len(queries)), thread_name_prefix="stop-query") as pool:
        stops = [pool.submit(q.stop) for q in queries]
    for stopped in stops:
        stopped.result()


def describe_failure(exc, name: str, config: GoldConfig | None) -> str:
    """One line: out of space gets its own message (a full disk is an operations problem, not a
    bug), anything else Spark's first line."""
    text = "\n".join(cause_chain(exc))
    if "No space left on device" in text or "ENOSPC" in text:
        where = (
            f"{config.paths.gold_table(name)} or {config.paths.checkpoint(name)}"
            if config
            else "the Gold table or its checkpoint"
        )
        return (
            f"out of space: no space left on device while writing {where}. The batch was not "
            f"committed; free space, then start the job again: it resumes from its checkpoint "
            f"and writes every window exactly once"
        )
    return str(exc).strip().splitlines()[0]
