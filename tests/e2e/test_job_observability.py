"""What a continuous run of the Gold job tells about itself, on a short real run (processing-time,
1-second trigger, one Silver_ML version per batch, the last one with late rows; the first version
is there at start, the others are appended once the job has read it):

- the per-batch metrics table `_metrics/gold_stream_progress` holds exactly one row per batch and
  query, whose counts equal the independent computation;
- the task log is sampled: exactly the first batch of each query, every batch that wrote Gold or
  dropped rows, and the newest one (logged when the query went idle) have a gold_progress line;
- the driver's Prometheus endpoint, bound to loopback, serves Spark's streaming metrics under
  their exact names: scraped every second during the run, each sample with data equals a batch of
  the metrics table (Spark's gauges show the query's last progress, idle triggers included).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pandas as pd
import psutil
import pytest

from flight_gold.lake.metrics import metrics_path
from support.expected import assert_gold_equal, streamed_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    gold,
    lakehouse_config,
    progress,
    silver_frame,
    start_job,
    stop,
    summary,
    wait_for,
)
from support.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

DELAYS = {"flight_phase_counts": pd.Timedelta(minutes=2), "anomaly_alerts": pd.Timedelta(minutes=6)}
TIMEOUT_S = 900  # a loaded 2-core machine takes minutes to start a JVM; no speed goal
PROMETHEUS = "metrics_flight_gold_driver_spark_streaming_{query}_{metric}"
# Spark's MetricsReporter gauges, by the metrics table's column each one reports.
GAUGES = {
    "inputRate_total_Value": "input_rows_per_second",
    "processingRate_total_Value": "processed_rows_per_second",
    "latency_Value": "batch_duration_ms",
    "states_rowsTotal_Value": "state_rows",
    "states_usedBytes_Value": "state_memory_bytes",
    "eventTime_watermark_Value": "watermark",
}


class Scraper(threading.Thread):
    """Scrapes the endpoint every second until stopped; keeps the samples that answered."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.samples, self.done = port, [], threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                self.samples.append(scrape(self.port))
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                continue  # the UI is not up yet ("... not ready."), or already gone


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/prometheus", timeout=30) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            values[name_labels.split("{", 1)[0]] = float(value)
    return values


def listening_addresses(port: int) -> set[str]:
    return {
        c.laddr.ip for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN"
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One processing-time run over three Silver_ML versions, stopped once it is idle."""
    tmp = tmp_path_factory.mktemp("observability")
    config = lakehouse_config(tmp / "lakehouse")
    # Five minutes, then four versions of 15 s (batches that close no window, most of them), then
    # five more minutes with rows late for both tables.
    versions = [silver_frame(600, START, 300, seed=61)]
    versions += [
        silver_frame(30, START + pd.Timedelta(seconds=300 + 15 * k), 15, seed=62 + k) for k in range(4)
    ]
    versions.append(
        pd.concat(
            [
                silver_frame(20, START - pd.Timedelta(minutes=10), 60, seed=66),
                silver_frame(600, START + pd.Timedelta(minutes=6), 300, seed=67),
            ],
            ignore_index=True,
        )
    )
    append_silver(config, versions[0])
    newest = pd.concat(versions)["event_timestamp"].max()
    final = {t: (newest - DELAYS[t]).floor("ms") for t in TABLES}
    port, log = free_port(), tmp / "job.log"
    # Sampling every hour: in this short run only the first batch of a query is "due".
    scraper = Scraper(port)
    job = start_job(
        config,
        log,
        "--max-files-per-trigger",
        "1",
        "--progress-log-every",
        "1 hour",
        "--metrics-port",
        str(port),
    )
    scraper.start()
    try:
        # A new checkpoint reads Silver_ML's snapshot in one batch (an available-now run): the
        # other versions come once both queries have read the first, one batch each from then on.
        wait_for(
            lambda: (
                {line["query"] for line in progress(log.read_text())} == set(TABLES) or job.poll() is not None
            ),
            TIMEOUT_S,
            what="the first batch of both queries",
        )
        for version in versions[1:]:
            append_silver(config, version)

        def idle_at_final_watermarks():
            lines = progress(log.read_text())
            return (
                all(
                    any(line["query"] == t and pd.Timestamp(line["watermark"]) >= final[t] for line in lines)
                    for t in TABLES
                )
                or job.poll() is not None
            )

        wait_for(idle_at_final_watermarks, TIMEOUT_S, what="the final watermarks in the log")
        assert job.poll() is None, log.read_text()[-4000:]
        addresses = listening_addresses(port)
    finally:
        scraper.done.set()
        scraper.join(timeout=30)
        code = stop(job)
    assert code == 0, log.read_text()[-4000:]
    from deltalake import DeltaTable

    metrics = DeltaTable(metrics_path(config)).to_pandas().sort_values(["query", "batch_id"])
    return config, versions, log.read_text(), metrics, scraper.samples, addresses


def test_the_metrics_table_has_one_exact_row_per_batch(run):
    config, versions, _, metrics, _, _ = run
    expected, late = streamed_gold(versions)
    assert late == {"flight_phase_counts": [0, 0, 0, 0, 0, 20], "anomaly_alerts": [0, 0, 0, 0, 0, 20]}
    actual = gold(config)
    for table in TABLES:
        assert_gold_equal(actual[table], expected[table], table)
        rows = metrics[metrics["query"] == table]
        assert rows["batch_id"].tolist() == list(range(len(rows)))
        # One batch per version; batches without data (watermark moves) may come between them.
        with_data = rows[rows["input_rows"] > 0]
        assert with_data["input_rows"].tolist() == [len(v) for v in versions]
        assert with_data["late_rows_dropped"].tolist() == late[table]
        assert rows["late_rows_dropped"].sum() == 20
        # Each window once: the rows the state operators evicted are the Gold table's rows.
        assert rows["gold_rows_written"].sum() == len(expected[table]) == len(actual[table])
        # Two query runs: the first start's available-now run over the snapshot, then the stream.
        assert rows["run_id"].nunique() == 2
        assert rows["watermark"].iloc[-1] == pd.Timestamp(newest_watermark(versions, table))
        assert (
            (rows[["dropped_null_timestamp", "dropped_future_timestamp", "nan_values_nulled"]] == 0)
            .all()
            .all()
        )


def newest_watermark(versions, table):
    return (pd.concat(versions)["event_timestamp"].max() - DELAYS[table]).floor("ms")


def test_the_log_holds_exactly_the_sampled_batches(run):
    _, versions, stderr, metrics, _, _ = run
    lines = progress(stderr)
    for table in TABLES:
        rows = metrics[metrics["query"] == table]
        wanted = {0, int(rows["batch_id"].max())} | {
            int(r.batch_id) for r in rows.itertuples() if r.gold_rows_written or r.late_rows_dropped
        }
        logged = [line for line in lines if line["query"] == table]
        assert sorted(line["batch_id"] for line in logged) == sorted(wanted)
        assert len(wanted) < len(rows), "the run must have batches to leave out"
        by_id = rows.set_index("batch_id")
        for line in logged:
            row = by_id.loc[line["batch_id"]]
            assert (
                line["input_rows"],
                line["batch_duration_ms"],
                line["state_rows"],
                line["gold_rows_written"],
            ) == (
                row["input_rows"],
                row["batch_duration_ms"],
                row["state_rows"],
                row["gold_rows_written"],
            )
        assert summary(stderr)[table]["input_rows"] == sum(len(v) for v in versions)
    kept = [line for line in stderr.splitlines() if "progress lines: " in line]
    left_out = len(metrics) - len(lines)
    assert len(kept) == 1 and kept[0].endswith(
        f"progress lines: {len(lines)} logged, {left_out} left out of the log"
    )


def test_prometheus_serves_the_batches_on_loopback_only(run):
    _, _, _, metrics, samples, addresses = run
    assert addresses and addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, addresses
    assert samples, "no scrape answered"
    for table in TABLES:
        names = {gauge: PROMETHEUS.format(query=table, metric=gauge) for gauge in GAUGES}
        assert set(names.values()) <= set(samples[-1]), sorted(k for k in samples[-1] if "_streaming_" in k)
        rows = metrics[metrics["query"] == table]
        with_data = [s for s in samples if s.get(names["inputRate_total_Value"], 0) > 0]
        assert with_data, f"no scrape of {table} caught a batch with data"
        shown = rows.assign(watermark_ms=rows["watermark"].map(lambda t: t.value // 1_000_000))
        for sample in with_data:
            # The batch this sample shows: input rate, processing rate, state rows and watermark
            # all equal to one row's. The input rate alone can be shared (a 1-second trigger gives
            # a version of 30 rows 30.0 rows/s in every batch that reads one).
            match = shown[
                (shown["input_rows_per_second"] == sample[names["inputRate_total_Value"]])
                & (shown["processed_rows_per_second"] == sample[names["processingRate_total_Value"]])
                & (shown["state_rows"] == sample[names["states_rowsTotal_Value"]])
                & (shown["watermark_ms"] == sample[names["eventTime_watermark_Value"]])
            ]
            assert len(match) >= 1, (
                table,
                {gauge: sample[name] for gauge, name in names.items()},
                shown[list(GAUGES.values()) + ["watermark_ms"]].to_dict("records"),
            )
            # Spark's latency gauge is the batch's triggerExecution time, a part of its
            # batchDuration, which also counts the progress reporting after it (milliseconds,
            # more on a loaded machine: 26 ms seen in CI, so no upper bound on the difference).
            latency = sample[names["latency_Value"]]
            assert latency > 0 and any(latency <= d for d in match["batch_duration_ms"]), (
                match["batch_duration_ms"].tolist(),
                latency,
            )
    print(json.dumps({k: v for k, v in samples[-1].items() if "_streaming_" in k}, indent=1))
