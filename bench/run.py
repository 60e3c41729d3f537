"""Benchmark of the Gold streaming job against the seed's configuration, in one run:

  1. real-time: the feed appends to Silver_ML at real pace while the job runs in processing-time
     mode; micro-batch duration per query and for both queries pooled;
  2. catch-up: a backlog appended while the job was down, drained in available-now mode: rows/s;
  3. freshness: per Gold window, closing Silver commit -> Gold commit (from both _delta_logs);
  4. memory: driver (Python + JVM) RSS, peak and, in full mode, its trend over a long run, and
     the trend of the JVM heap left after garbage collection (from a GC log): the live data;
  5. 1-3 for the seed's configuration (bench/seed_config.py);
  6. DuckDB computing both aggregations in batch over the same rows.

Each step runs its own Spark driver (bench/driver.py, a fresh JVM) on fresh tables and
checkpoints, one at a time. The job's and the seed's Gold tables from the catch-up are checked
for equality, and against DuckDB's.

    .venv/bin/python bench/run.py --quick                 # < 10 minutes on 2 cores
    .venv/bin/python bench/run.py                         # full: 10M backlog, 2-hour real-time run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from bench import metrics
from flight_gold.core.config import JOB_TRIGGERS, GoldConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DRIVER = REPO / "bench" / "driver.py"
CATCHUP_START = datetime(2024, 5, 1, tzinfo=UTC)
PHASES = ("catchup", "realtime-job", "realtime-seed", "restart")


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def interval_seconds(text: str) -> float:
    number, unit = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(\w+)\s*$", text).groups()
    return float(number) * {"second": 1, "minute": 60, "hour": 3600}[unit.rstrip("s")]


# -- one Spark driver process ------------------------------------------------------------------

LIVE: set[Driver] = set()


def kill_live_drivers() -> None:
    """On the way out (error, Ctrl-C, SIGTERM): no driver outlives the harness."""
    for driver in list(LIVE):
        driver.kill()


class Driver:
    """bench/driver.py in its own process group, with its RSS sampled (Python + JVM) and its
    progress file parsed on demand."""

    def __init__(
        self, name: str, workdir: Path, variant: str, root: Path, args: list[str], rss_every_s: float = 1.0
    ) -> None:
        self.name = name
        self.progress_path = workdir / f"{name}.progress.jsonl"
        self.log_path = workdir / f"{name}.log"
        self.progress_path.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            str(DRIVER),
            "--variant",
            variant,
            "--lakehouse-root",
            str(root),
            "--progress-out",
            str(self.progress_path),
            *args,
        ]
        self.cmd = cmd
        self.started = time.time()
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        LIVE.add(self)
        self.rss: list[tuple[float, int, int]] = []  # (seconds since start, total, JVM)
        self.cpu: list[tuple[float, float]] = []  # (epoch seconds, CPU seconds of the process tree)
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, args=(rss_every_s,), daemon=True)
        self._sampler.start()

    def _sample(self, every: float) -> None:
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.NoSuchProcess:
            return
        jvm_proc = None
        while not self._stop_sampling.wait(every):
            try:
                if jvm_proc is None:
                    # The JVM Spark runs in: not spark-class's short-lived launcher JVM
                    # (org.apache.spark.launcher.Main, it only builds the command line), not a
                    # process it forks for a moment (a forked child shows the parent's whole RSS
                    # until it execs).
                    jvm_proc = next(
                        (
                            c
                            for c in root.children(recursive=True)
                            if c.name() == "java"
                            and "org.apache.spark.deploy.SparkSubmit" in c.cmdline()
                            and "org.apache.spark.launcher.Main" not in c.cmdline()
                        ),
                        None,
                    )
                procs = [root] + ([jvm_proc] if jvm_proc is not None else [])
                rss = [p.memory_info().rss for p in procs]
                cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
            except psutil.NoSuchProcess:
                if not self.alive():
                    return
                jvm_proc = None  # a JVM that was gone at once (a fork before its exec): look again
                continue
            self.rss.append((round(time.time() - self.started, 2), sum(rss), rss[1] if len(rss) > 1 else 0))
            self.cpu.append((time.time(), cpu))

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds (user + system, Python and JVM) the driver used between two instants: less
        sensitive than wall time to what else the machine runs."""
        inside = [c for c in self.cpu if start <= c[0] <= end]
        if len(inside) < 2:
            return None
        return inside[-1][1] - inside[0][1]

    def records(self) -> list[dict]:
        if not self.progress_path.exists():
            return []
        out = []
        for line in self.progress_path.read_text().splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            record = metrics.batch_record(item["progress"])
            record["received_ms"] = item["received_ms"]
            out.append(record)
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"{self.name}: still running after {timeout:.0f} s; see {self.log_path}"
            ) from None
        finally:
            self._finish()

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM: the driver stops its queries at a batch boundary and Spark; then waits."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        LIVE.discard(self)

    def _finish(self) -> None:
        LIVE.discard(self)
        self._stop_sampling.set()
        self._sampler.join(timeout=5)
        self._log.close()

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def check(self, code: int) -> None:
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code}:\n{self.tail()}")


def peak_mib(rss) -> dict:
    if not rss:
        return {"total": None, "jvm": None}
    return {"total": max(r[1] for r in rss) / 2**20, "jvm": max(r[2] for r in rss) / 2**20}


def lakehouse(root: Path, silver_from: Path | None = None) -> GoldConfig:
    """A fresh lakehouse; with `silver_from`, its Silver_ML is a link to that shared table."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if silver_from is not None:
        (root / "silver").mkdir()
        (root / "silver" / "flights_ml").symlink_to(silver_from, target_is_directory=True)
    return GoldConfig.from_env({}, lakehouse_root=str(root))


def job_args(args, trigger: str, max_files: int | None = None) -> list[str]:
    out = ["--master", args.master, "--trigger", trigger, "--trigger-interval", args.trigger_interval]
    if args.shuffle_partitions:
        out += ["--shuffle-partitions", str(args.shuffle_partitions)]
    if max_files:
        out += ["--max-files-per-trigger", str(max_files)]
    for item in args.job_conf:
        out += ["--conf", item]
    return out


def seed_args(args) -> list[str]:
    return ["--master", args.master, *[x for item in args.seed_conf for x in ("--conf", item)]]


def with_gc_log(extra: list[str], path: Path) -> list[str]:
    """Driver arguments plus a GC log (JDK unified logging, one line a pause), kept beside any
    JVM options a tuning trial already sets."""
    key = "spark.driver.extraJavaOptions="
    option = f"-Xlog:gc:file={path}:uptime"
    out, merged = list(extra), False
    for i in range(1, len(out)):
        if out[i - 1] == "--conf" and out[i].startswith(key):
            out[i] = f"{out[i]} {option}"
            merged = True
    return out if merged else [*out, "--conf", key + option]


# -- 2, 5, 6: catch-up, DuckDB and equality -----------------------------------------------------


def wait_seed_drained(driver: Driver, rows: int, final_wm: dict[str, int], timeout: float) -> None:
    """The seed runs Spark's default trigger, which never ends by itself: it is done when each
    query has read every row and run a batch at the final watermark (which writes the last
    windows)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not driver.alive():
            driver.check(driver.proc.returncode)
            return
        done = True
        records = driver.records()
        for query in metrics.DELAYS_MS:
            own = [r for r in records if r["query"] == query]
            if sum(r["input_rows"] for r in own) < rows:
                done = False
            if query in final_wm and not any((r["watermark_ms"] or 0) >= final_wm[query] for r in own):
                done = False
        if done:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{driver.name}: not drained after {timeout:.0f} s; see {driver.log_path}")


def run_catchup(args, work: Path) -> dict:
    from bench import deltalog
    from bench.compare import compare, read_gold
    from bench.duckdb_gold import gold_in_batch
    from bench.feed import write_history

    shared = work / "catchup-silver"
    shared_cfg = lakehouse(shared)
    job_cfg = lakehouse(work / "catchup-job", Path(shared_cfg.paths.silver_flights_ml))
    seed_cfg = lakehouse(work / "catchup-seed", Path(shared_cfg.paths.silver_flights_ml))
    commit_rows = max(1, int(args.rate * args.feed_commit_seconds))

    # The job ran before the downtime: one minute of traffic, processed, in each checkpoint.
    prefix_rows = int(args.rate * 60)
    write_history(shared_cfg, CATCHUP_START, prefix_rows, args.rate, prefix_rows, seed=7)
    log(f"catch-up: {prefix_rows} rows before the downtime; warming both checkpoints (not timed)")
    job_before = Driver(
        "catchup-job-before", work, "job", Path(job_cfg.lakehouse_root), job_args(args, "available-now")
    )
    seed_before = Driver("catchup-seed-before", work, "seed", Path(seed_cfg.lakehouse_root), seed_args(args))
    try:
        wait_seed_drained(seed_before, prefix_rows, {}, 900)
    finally:
        seed_before.check(seed_before.stop())
        job_before.check(job_before.wait(900))

    log(f"catch-up: writing a backlog of {args.rows:,} rows in commits of {commit_rows} rows")
    backlog = write_history(
        shared_cfg,
        CATCHUP_START + timedelta(seconds=prefix_rows / args.rate),
        args.rows,
        args.rate,
        commit_rows,
        seed=11,
    )
    silver = deltalog.silver_commits(shared_cfg.paths.silver_flights_ml)
    newest = max(c["max_event_ms"] for c in silver)
    final_wm = {q: newest - delay for q, delay in metrics.DELAYS_MS.items()}
    log(f"catch-up: backlog written in {backlog['write_seconds']:.0f} s ({len(silver)} Silver commits)")

    result = {
        "backlog": backlog,
        "silver_commits": len(silver),
        "max_files_per_trigger": args.catchup_max_files_per_trigger,
    }
    log("catch-up: job (available-now)")
    d = Driver(
        "catchup-job",
        work,
        "job",
        Path(job_cfg.lakehouse_root),
        job_args(args, "available-now", args.catchup_max_files_per_trigger),
    )
    d.check(d.wait(3600))
    result["job"] = summarize_catchup(d, args.rows, time.time())

    log("catch-up: seed configuration (default trigger)")
    d = Driver("catchup-seed", work, "seed", Path(seed_cfg.lakehouse_root), seed_args(args))
    try:
        wait_seed_drained(d, args.rows, final_wm, 3600)
        drained_at = time.time()
    finally:
        d.check(d.stop())
    result["seed"] = summarize_catchup(d, args.rows, drained_at)

    log("catch-up: DuckDB in batch over the same rows")
    from deltalake import DeltaTable

    files = DeltaTable(shared_cfg.paths.silver_flights_ml).file_uris()
    duck = gold_in_batch(files, threads=psutil.cpu_count())
    result["duckdb"] = {k: duck[k] for k in ("seconds", "rows", "rows_per_second", "threads")}

    log("catch-up: comparing the Gold tables")
    job_gold, seed_gold = read_gold(job_cfg.paths), read_gold(seed_cfg.paths)
    result["equality"] = {
        "job_vs_seed": compare(job_gold, seed_gold),
        "job_vs_duckdb": compare(job_gold, duck["tables"]),
    }
    return result


def summarize_catchup(driver: Driver, rows: int, done_at: float) -> dict:
    batches = driver.records()
    rate = metrics.catchup_rate(batches, rows)
    cpu_s = driver.cpu_between(min(b["start_ms"] for b in batches) / 1000 - 1.5, done_at + 1.5)
    return {
        **rate,
        "wall_seconds_with_startup": done_at - driver.started,
        "peak_rss_mib": peak_mib(driver.rss),
        "cpu_seconds": cpu_s,
        "batch_ms": metrics.batch_stats(batches)["both"],
        "input_rows_per_query": {
            q: sum(b["input_rows"] for b in batches if b["query"] == q) for q in metrics.DELAYS_MS
        },
    }


# -- 1, 3, 4, 5: real time -------------------------------------------------------------------


def run_realtime(args, work: Path, variant: str, min_batches: int, min_seconds: float) -> dict:
    from bench import deltalog
    from bench.feed import RealPaceFeed, prefill

    cfg = lakehouse(work / f"realtime-{variant}")
    now = datetime.now(UTC).replace(microsecond=0)
    history = prefill(cfg, args.prefill_minutes, args.rate, now)
    log(
        f"real-time {variant}: {history['rows']:,} rows of history; starting the driver and the feed "
        f"({args.rate:g} rows/s, a commit every ~{args.feed_commit_seconds:g} s)"
    )
    extra = job_args(args, args.realtime_trigger) if variant == "job" else seed_args(args)
    gc_log = work / f"realtime-{variant}.gc.log"
    gc_log.unlink(missing_ok=True)
    extra = with_gc_log(extra, gc_log)
    driver = Driver(
        f"realtime-{variant}",
        work,
        variant,
        Path(cfg.lakehouse_root),
        extra,
        rss_every_s=1.0 if min_seconds < 1800 else 10.0,
    )
    feed = RealPaceFeed(cfg, args.rate, args.feed_commit_seconds, history["t0"], written=history["rows"])
    feed.start()
    try:
        last_report = 0.0
        while True:
            time.sleep(2)
            if not driver.alive():
                driver.check(driver.proc.returncode)
                raise RuntimeError(f"{driver.name} ended by itself")
            if feed.error:
                raise RuntimeError(f"the real-pace feed failed: {feed.error!r}")
            records = metrics.measured_batches(driver.records(), args.warmup_batches)
            counts = {q: sum(1 for r in records if r["query"] == q) for q in metrics.DELAYS_MS}
            elapsed = time.time() - driver.started
            if time.time() - last_report > 60:
                log(f"real-time {variant}: {elapsed:.0f} s, measured batches {counts}")
                last_report = time.time()
            if min(counts.values()) >= min_batches and elapsed >= min_seconds:
                break
    finally:
        stopped_at_ms = int(time.time() * 1000)
        code = driver.stop()
        feed.stop()
    driver.check(code)

    batches = driver.records()
    measured = metrics.measured_batches(batches, args.warmup_batches)
    measure_from = min(b["start_ms"] for b in measured)
    # A window whose closing commit came this close to the stop may just not have been written
    # yet: up to two triggers (job) and two batches away.
    p95 = metrics.batch_stats(measured)["both"]["p95"] or 0
    grace_ms = int(
        (2 * interval_seconds(args.trigger_interval) if variant == "job" else 0) * 1000 + 2 * p95 + 5000
    )
    silver = deltalog.silver_commits(cfg.paths.silver_flights_ml)
    windows, missing = [], {}
    for query, delay in metrics.DELAYS_MS.items():
        gold = (
            deltalog.gold_windows(cfg.paths.gold_table(query))
            if Path(cfg.paths.gold_table(query)).exists()
            else {}
        )
        fr = metrics.window_freshness(
            silver, gold, query, batches, delay, measure_from, stopped_at_ms - grace_ms
        )
        windows += fr["windows"]
        if fr["missing"]:
            missing[query] = fr["missing"]
    fresh = [w["freshness_s"] for w in windows]
    window_end = max(b["end_ms"] for b in measured) / 1000
    cpu_s = driver.cpu_between(measure_from / 1000, window_end)
    cpu = (
        None
        if cpu_s is None
        else {
            "seconds": cpu_s,
            "window_s": window_end - measure_from / 1000,
            "cores_used": cpu_s / (window_end - measure_from / 1000),
            "ms_per_batch": cpu_s * 1000 / len(measured),
        }
    )
    rss = [(t, total) for t, total, _ in driver.rss]
    long_run = min_seconds >= 1800
    gc_lines = gc_log.read_text(errors="replace").splitlines() if gc_log.exists() else []
    # Young and mixed pauses only: a full collection's far lower figure would make a floor of it.
    heap = metrics.heap_after_gc(gc_lines, full=False)
    floor = metrics.heap_floor(heap)
    full_gc = metrics.heap_after_gc(gc_lines, full=True)
    return {
        "t0_ms": int(driver.started * 1000),
        "duration_s": stopped_at_ms / 1000 - driver.started,
        "history": {k: v for k, v in history.items() if k != "t0"},
        "feed": {"commits": len(feed.commits), "rows": feed.written},
        "stats": metrics.batch_stats(measured),
        "cpu": cpu,
        "input_rows": metrics.summarize([b["input_rows"] for b in measured]),
        "batches": [
            {
                k: b[k]
                for k in (
                    "query",
                    "batch_id",
                    "start_ms",
                    "duration_ms",
                    "input_rows",
                    "watermark_ms",
                    "state_rows",
                )
            }
            | {"durations": b["durations"]}
            for b in batches
        ],
        "freshness": {
            "stats": metrics.summarize(fresh),
            "windows": windows,
            "missing": missing,
            "per_table": {
                q: metrics.summarize([w["freshness_s"] for w in windows if w["table"] == q])
                for q in metrics.DELAYS_MS
            },
        },
        "rss": rss,
        "peak_rss_mib": peak_mib(driver.rss),
        "rss_trend": metrics.linear_trend(rss, skip_s=600) if long_run else None,
        "gc_pauses": len(heap) + len(full_gc),
        "heap_after_full_gc": full_gc,
        "heap_floor": floor,
        "heap_trend": metrics.linear_trend(floor, skip_s=600) if long_run else None,
        "state_rows_last": {
            q: next((b["state_rows"] for b in reversed(batches) if b["query"] == q), None)
            for q in metrics.DELAYS_MS
        },
    }


# -- report ------------------------------------------------------------------------------------


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    import pyspark

    from flight_gold.spark.session import DELTA_VERSION

    return {
        "cpu": model,
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "spark": pyspark.__version__,
        "delta_spark": DELTA_VERSION,
    }


def fmt(value, unit="", digits=0):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def table(results: dict) -> str:
    job, seed = results.get("job", {}), results.get("seed", {})
    cu = results.get("catchup") or {}

    def rt(variant, query, key):
        return ((variant.get("realtime") or {}).get("stats") or {}).get(query, {}).get(key)

    def fr(variant, key):
        return (((variant.get("realtime") or {}).get("freshness") or {}).get("stats") or {}).get(key)

    rows = [("metric", "job", "seed config", "DuckDB", "job vs seed")]
    for query in ("flight_phase_counts", "anomaly_alerts", "both"):
        for key in ("median", "p95"):
            a, b = rt(job, query, key), rt(seed, query, key)
            rows.append(
                (
                    f"real-time batch ms, {query}, {key}",
                    fmt(a),
                    fmt(b),
                    "",
                    f"{b / a:.1f}x" if a and b else "-",
                )
            )
    cpu_j = (job.get("realtime") or {}).get("cpu") or {}
    cpu_s = (seed.get("realtime") or {}).get("cpu") or {}
    rows.append(
        (
            "real-time CPU ms per batch",
            fmt(cpu_j.get("ms_per_batch")),
            fmt(cpu_s.get("ms_per_batch")),
            "",
            f"{cpu_s['ms_per_batch'] / cpu_j['ms_per_batch']:.1f}x"
            if cpu_j.get("ms_per_batch") and cpu_s.get("ms_per_batch")
            else "-",
        )
    )
    rows.append(
        (
            "real-time CPU, cores used",
            fmt(cpu_j.get("cores_used"), digits=2),
            fmt(cpu_s.get("cores_used"), digits=2),
            "",
            "",
        )
    )
    ja, sa = (cu.get("job") or {}).get("rows_per_second"), (cu.get("seed") or {}).get("rows_per_second")
    da = (cu.get("duckdb") or {}).get("rows_per_second")
    rows.append(
        (
            f"catch-up rows/s ({fmt((cu.get('backlog') or {}).get('rows'))} rows)",
            fmt(ja),
            fmt(sa),
            fmt(da),
            f"{ja / sa:.1f}x" if ja and sa else "-",
        )
    )
    for key in ("median", "p95"):
        a, b = fr(job, key), fr(seed, key)
        rows.append((f"freshness s, {key}", fmt(a, digits=1), fmt(b, digits=1), "", ""))
    rows.append(
        (
            "peak driver RSS MiB (real-time)",
            fmt(((job.get("realtime") or {}).get("peak_rss_mib") or {}).get("total")),
            fmt(((seed.get("realtime") or {}).get("peak_rss_mib") or {}).get("total")),
            "",
            "",
        )
    )

    def heap(variant, at):
        floor = (variant.get("realtime") or {}).get("heap_floor") or []
        return floor[at][1] / 2**20 if floor else None

    def full(variant):
        points = (variant.get("realtime") or {}).get("heap_after_full_gc") or []
        return " / ".join(f"{p[1] / 2**20:,.0f}" for p in points) or None

    for label, at in (("first", 0), ("last", -1)):
        rows.append(
            (
                f"heap MiB, {label} 5-min floor after young GCs",
                fmt(heap(job, at)),
                fmt(heap(seed, at)),
                "",
                "",
            )
        )
    rows.append(("live heap MiB after each full GC", full(job) or "-", full(seed) or "-", "", ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    lines = [
        "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2M-row backlog, no long memory run (about 10 min on an idle 2-core machine)",
    )
    parser.add_argument(
        "--out",
        default=str(RESULTS / "results.json"),
        help="JSON results, default bench/results/results.json; the PNG goes beside it",
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="catch-up backlog rows (default 10M, 2M with --quick)"
    )
    parser.add_argument(
        "--rate", type=float, default=600.0, help="real-pace feed, observations per second (600)"
    )
    parser.add_argument(
        "--feed-commit-seconds",
        type=float,
        default=5.0,
        help="mean seconds between two Silver commits of the feed (5, jittered +-50%%)",
    )
    parser.add_argument(
        "--trigger-interval", default="10 seconds", help="the job's processing-time trigger ('10 seconds')"
    )
    parser.add_argument(
        "--realtime-trigger",
        choices=[t for t in JOB_TRIGGERS if t != "available-now"],
        default="processing-time",
        help="the job's trigger in the real-time runs",
    )
    parser.add_argument(
        "--realtime-batches", type=int, default=30, help="measured batches per query, at least (30)"
    )
    parser.add_argument(
        "--realtime-minutes",
        type=float,
        default=None,
        help="the job's real-time run, at least (default 120 in full mode: the memory trend)",
    )
    parser.add_argument(
        "--seed-realtime-seconds",
        type=float,
        default=None,
        help="the seed's real-time run, at least (default 150 quick, 600 full)",
    )
    parser.add_argument(
        "--prefill-minutes",
        type=float,
        default=8.0,
        help="minutes of history in Silver_ML when a real-time run starts (8), so that windows close at once",
    )
    parser.add_argument(
        "--warmup-batches", type=int, default=3, help="first batches of each query left out (3)"
    )
    parser.add_argument(
        "--catchup-max-files-per-trigger",
        type=int,
        default=None,
        help="the job's maxFilesPerTrigger for the catch-up (default: the job's default)",
    )
    parser.add_argument(
        "--shuffle-partitions", type=int, default=None, help="the job's (default: its default)"
    )
    parser.add_argument(
        "--job-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting for the job's driver (tuning trials)",
    )
    parser.add_argument(
        "--seed-conf", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS
    )
    parser.add_argument("--master", default="local[2]", help="Spark master of every driver (local[2])")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated among {', '.join(PHASES)}")
    parser.add_argument("--keep-work", action="store_true", help="keep the tables and checkpoints")
    args = parser.parse_args(argv)
    args.rows = args.rows or (2_000_000 if args.quick else 10_000_000)
    realtime_minutes = (
        args.realtime_minutes if args.realtime_minutes is not None else (0 if args.quick else 120)
    )
    seed_seconds = args.seed_realtime_seconds or (150 if args.quick else 600)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if only - set(PHASES):
        parser.error(f"--only: unknown {', '.join(sorted(only - set(PHASES)))}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.time()
    results: dict = {
        "title": f"Flight Gold benchmark ({'quick' if args.quick else 'full'}), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": {"start": os.getloadavg()},
        "settings": {
            "rate_per_s": args.rate,
            "feed_commit_seconds": args.feed_commit_seconds,
            "realtime_trigger": args.realtime_trigger,
            "trigger_interval": args.trigger_interval,
            "trigger_interval_s": interval_seconds(args.trigger_interval),
            "backlog_rows": args.rows,
            "realtime_batches": args.realtime_batches,
            "realtime_minutes": realtime_minutes,
            "seed_realtime_seconds": seed_seconds,
            "prefill_minutes": args.prefill_minutes,
            "warmup_batches": args.warmup_batches,
            "catchup_max_files_per_trigger": args.catchup_max_files_per_trigger,
            "job_conf": args.job_conf,
            "master": args.master,
        },
        "job": {},
        "seed": {},
    }
    log(f"work folder {work}; load average {os.getloadavg()[0]:.2f}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if "catchup" in only:
            results["catchup"] = run_catchup(args, work)
        if "realtime-job" in only:
            results["job"]["realtime"] = run_realtime(
                args, work, "job", args.realtime_batches, realtime_minutes * 60
            )
        if "realtime-seed" in only:
            results["seed"]["realtime"] = run_realtime(
                args, work, "seed", args.realtime_batches, seed_seconds
            )
        if "restart" in only:
            from bench.restart import run_restart

            results["restart"] = run_restart(work / "restart", args.master)
    finally:
        kill_live_drivers()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    finish(results, args, started, out)
    return 0


def headline(results: dict) -> None:
    job_rt = results["job"].get("realtime") or {}
    seed_rt = results["seed"].get("realtime") or {}
    cu = results.get("catchup") or {}

    def both(rt):
        return ((rt.get("stats") or {}).get("both") or {}).get("median")

    results["realtime_batch_ms_median"] = both(job_rt)
    results["realtime_batch_ms_p95"] = ((job_rt.get("stats") or {}).get("both") or {}).get("p95")
    results["realtime_speedup_vs_seed"] = (
        (both(seed_rt) / both(job_rt)) if both(job_rt) and both(seed_rt) else None
    )
    job_rate = (cu.get("job") or {}).get("rows_per_second")
    seed_rate = (cu.get("seed") or {}).get("rows_per_second")
    results["catchup_rows_per_second"] = job_rate
    results["catchup_speedup_vs_seed"] = job_rate / seed_rate if job_rate and seed_rate else None
    results["duckdb_rows_per_second"] = (cu.get("duckdb") or {}).get("rows_per_second")
    fresh = (job_rt.get("freshness") or {}).get("stats") or {}
    results["freshness_s_median"] = fresh.get("median")
    results["freshness_s_p95"] = fresh.get("p95")
    results["driver_peak_rss_mib"] = (job_rt.get("peak_rss_mib") or {}).get("total")
    results["memory"] = {
        "peak_rss_mib": results["driver_peak_rss_mib"],
        "trend": job_rt.get("rss_trend"),
        "heap_trend": job_rt.get("heap_trend"),
    }
    eq = cu.get("equality")
    compared = eq and sum(t["rows_left"] for t in eq["job_vs_seed"]["tables"].values()) > 0
    results["gold_equal_job_vs_seed"] = eq["job_vs_seed"]["equal"] if compared else None
    results["gold_equal_job_vs_duckdb"] = eq["job_vs_duckdb"]["equal"] if compared else None
    restart = results.get("restart") or {}
    results["restart_to_first_gold_s"] = restart.get("restart_to_first_gold_s")
    results["restart_to_first_gold_s_without_silver_checkpoints"] = restart.get(
        "restart_to_first_gold_s_without_silver_checkpoints"
    )
    results["first_start_to_first_gold_s"] = restart.get("first_start_to_first_gold_s")


def finish(results: dict, args, started: float, out: Path) -> None:
    headline(results)
    results["load_average"]["end"] = os.getloadavg()
    results["elapsed_s"] = time.time() - started
    results["goals"] = metrics.goals(results, results["settings"]["trigger_interval_s"])
    # The results first: a chart that cannot be drawn must not lose the run.
    out.write_text(json.dumps(results, indent=1, default=str))
    png = out.with_suffix(".png")
    try:
        from bench.chart import render

        render(results, str(png))
    except Exception as exc:
        print(f"chart not drawn ({type(exc).__name__}: {exc}); results are in {out}", file=sys.stderr)

    print()
    print(results["title"])
    m = results["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Spark {m['spark']}, "
        f"Delta {m['delta_spark']}, {m['java']}; master {args.master}"
    )
    print(
        f"load average at start {results['load_average']['start'][0]:.2f}, at end "
        f"{results['load_average']['end'][0]:.2f}; {results['elapsed_s'] / 60:.1f} min"
    )
    print()
    print(table(results))
    print()
    if results["gold_equal_job_vs_seed"] is None:
        print("Gold equality: not checked (no catch-up phase, or no window closed in it)")
    else:
        eq = results["catchup"]["equality"]
        for name in ("job_vs_seed", "job_vs_duckdb"):
            parts = ", ".join(
                f"{t}: {e['detail'] if not e['equal'] else 'equal'} ({e['rows_left']} rows)"
                for t, e in eq[name]["tables"].items()
            )
            verdict = "EQUAL" if eq[name]["equal"] else "DIFFERENT"
            print(f"Gold equality {name.replace('_', ' ')}: {verdict} - {parts}")
    print()
    for g in results["goals"]:
        state = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        value = g["value"]
        shown = "-" if value is None else (f"{value:,.2f}" if isinstance(value, float) else value)
        print(f"goal: {g['goal']}: {shown} -> {state}")
    for key in ("restart_to_first_gold_s", "restart_to_first_gold_s_without_silver_checkpoints"):
        if results.get(key):
            print(f"{key}: {results[key]}")
    if results.get("first_start_to_first_gold_s"):
        print(f"first_start_to_first_gold_s: {results['first_start_to_first_gold_s']}")
    print()
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    sys.exit(main())
