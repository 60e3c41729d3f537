"""Start and restart time of the Gold job: from the job's process start to its first Gold commit.

Scenarios (bench/run.py --only restart):
- restart: a checkpoint resumes at Silver_ML version V (the job ran to the end of a small table),
  then N commits are added (N = 1,000, 5,000, 20,000), then the job starts again (three times
  from the same state, the median reported);
- first start: a new checkpoint on a Silver_ML table of 20,000 commits;
each with Silver_ML carrying Delta checkpoints every 10 commits (as Spark writes them) and without.

Silver_ML commits are written straight into `_delta_log` (bench/silverlog.py): delta-rs takes
0.15-0.3 s a commit here, too slow for 20,000. The time is the Gold commit's commitInfo timestamp
minus the wall-clock time just before the process was started: JVM start and jar loading count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.silverlog import SilverLog
from flight_gold.core.config import GoldConfig
from flight_gold.spark.progress import PROGRESS_PREFIX
from flight_gold.spark.progress import log as progress_log

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "jobs" / "streaming_gold.py"
BACKLOGS = (1000, 5000, 20000)
BASE_COMMITS = 60  # 5 minutes of history at one commit every 5 s: the resume point
GOLD = "flight_phase_counts"
REPEATS = 3  # restarts per backlog (Silver_ML with checkpoints): the median is reported


def _log(message: str) -> None:
    print(f"[restart {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def gold_writes(table: Path) -> list[tuple[int, int]]:
    """(version, commitInfo timestamp ms) of every commit that appended rows to a Gold table."""
    out = []
    for path in sorted((table / "_delta_log").glob("[0-9]" * 20 + ".json")):
        actions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        if info.get("operation") in ("WRITE", "STREAMING UPDATE") and any("add" in a for a in actions):
            out.append((int(path.stem), int(info["timestamp"])))
    return out


def run_job(root: Path, log_path: Path, master: str, until_first_gold: bool, timeout: float = 900) -> dict:
    """Starts the job; available-now to its end, or processing-time until a new Gold commit (then
    SIGTERM). Returns the start time, the first new Gold commit's time and where the time went
    (`phases`). Every line of the job's log is written to `log_path` stamped with the seconds
    since the start at which it arrived: the restart's timeline."""
    trigger = ["--trigger", "processing-time", "--trigger-interval", "1 second"]
    if not until_first_gold:
        trigger = ["--trigger", "available-now"]
    table = root / "gold" / "streaming_aggregations" / GOLD
    before = {v for v, _ in gold_writes(table)} if table.exists() else set()
    cmd = [sys.executable, str(JOB), "--lakehouse-root", str(root), "--master", master, *trigger]
    load = os.getloadavg()
    with open(log_path, "w") as log:
        started = time.time()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        stamper = threading.Thread(target=_stamp_lines, args=(proc.stderr, log, started), daemon=True)
        stamper.start()
        try:
            deadline = time.monotonic() + timeout
            first = None
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if until_first_gold and table.exists():
                    new = [(v, ts) for v, ts in gold_writes(table) if v not in before]
                    if new:
                        first = new[0]
                        break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"job did not finish/commit within {timeout:.0f} s; log {log_path}")
            if until_first_gold and first is None:
                raise RuntimeError(f"job ended (rc {proc.returncode}) before a Gold commit; log {log_path}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait(timeout=60)
            stamper.join(timeout=30)
    if not until_first_gold and proc.returncode != 0:
        raise RuntimeError(f"job failed (rc {proc.returncode}); log {log_path}")
    out = {"load_average": load, "load_average_end": os.getloadavg()}
    if first is not None:
        out["seconds"] = round(first[1] / 1000 - started, 2)
        out["gold_version"] = first[0]
    out.update(phases(log_path))
    return out


def _stamp_lines(stream, log, started: float) -> None:
    for raw in stream:
        log.write(f"{time.time() - started:9.3f} {raw.decode(errors='replace')}")
    log.flush()


def phases(log_path: Path) -> dict:
    """Where a start's time went, from its stamped log (`run_job`): seconds from the process
    start to the Spark session (JVM start, jars: `session_s`) and to the last query's start (the
    checks before the first batch: `queries_started_s`), and every micro-batch the job logged
    before it was stopped (`batches`: query, batch id, rows read, duration, when it was logged).
    What is left of `seconds` after `queries_started_s` is the batches up to the first Gold
    commit; the one that made it is logged only if it ended before the job was stopped."""
    out: dict = {"batches": []}
    marker = f"{progress_log.name}: {PROGRESS_PREFIX} "
    for line in log_path.read_text(errors="replace").splitlines():
        stamp, _, text = line.lstrip().partition(" ")
        try:
            at = float(stamp)
        except ValueError:
            continue
        if "flight_gold.spark.session:" in text and "session_s" not in out:
            out["session_s"] = round(at, 2)
        elif "flight_gold.spark.queries: started query" in text:
            out["queries_started_s"] = round(at, 2)
        elif marker in text:
            batch = json.loads(text.split(marker, 1)[1])
            out["batches"].append(
                {
                    "query": batch["query"],
                    "batch_id": batch["batch_id"],
                    "input_rows": batch["input_rows"],
                    "duration_ms": batch["batch_duration_ms"],
                    "logged_s": round(at, 2),
                }
            )
    return out


def _fresh(root: Path) -> GoldConfig:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return GoldConfig.from_env({}, lakehouse_root=str(root))


def _beside_silver(root: Path) -> list[Path]:
    """The folders a run writes beside Silver_ML (checkpoints, Gold tables, metrics), not its logs."""
    return [entry for entry in root.iterdir() if entry.is_dir() and entry.name != "silver"]


def _save(root: Path, saved: Path) -> None:
    """Keeps what the base run left beside Silver_ML (checkpoints, Gold tables, metrics)."""
    shutil.rmtree(saved, ignore_errors=True)
    saved.mkdir()
    for entry in _beside_silver(root):
        shutil.copytree(entry, saved / entry.name, symlinks=True)


def _restore(root: Path, saved: Path) -> None:
    """Puts back everything the base run left beside Silver_ML (checkpoints, Gold tables, metrics)
    as it left it, so that every restart resumes at the base run's Silver_ML version."""
    for entry in saved.iterdir():
        shutil.rmtree(root / entry.name, ignore_errors=True)
        shutil.copytree(entry, root / entry.name, symlinks=True)


def resume_version(config: GoldConfig) -> int:
    """The Silver_ML version the checkpoints resume after (the oldest of the queries')."""
    from flight_gold.spark.files import LocalFiles
    from flight_gold.spark.preflight import resume_version as replayed_from

    version = replayed_from(LocalFiles(), config)
    if version is None:
        raise RuntimeError(f"no checkpoint of {', '.join(config.queries)} has a batch to resume from")
    return version - 1


def scenarios(work: Path, checkpoints: bool, master: str, backlogs=BACKLOGS, repeats: int = REPEATS) -> dict:
    """Restarts after each backlog, `repeats` times each (one Silver_ML grown step by step; the
    checkpoints and Gold tables restored to the base run's before every restart), then a first
    start on the whole table."""
    root = work / f"silver-{'ckpt' if checkpoints else 'nockpt'}"
    config = _fresh(root)
    silver = SilverLog(Path(config.paths.silver_flights_ml), checkpoint_every=10 if checkpoints else None)
    silver.append_commits(BASE_COMMITS)
    # The checkpoint resumes at the end of the first commits.
    run_job(root, root / "base.log", master, until_first_gold=False)
    saved = work / "saved"
    _save(root, saved)
    out: dict = {"restart": {}}
    added = 0
    for n in backlogs:
        began = time.monotonic()
        silver.append_commits(n - added)
        build_s = time.monotonic() - began
        added = n
        runs = []
        for attempt in range(repeats):
            _restore(root, saved)
            since = silver.version - resume_version(config)
            if since != n:
                raise RuntimeError(f"the restored checkpoints resume {since} commits back, not {n}")
            runs.append(run_job(root, root / f"restart-{n}-{attempt}.log", master, until_first_gold=True))
        # One restart varies by 2-3 s on this machine: the median one of `repeats`.
        result = dict(sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2])
        result.update(
            commits_since_checkpoint=since,
            fixture_build_s=round(build_s, 1),
            runs_s=[r["seconds"] for r in runs],
        )
        _log(f"restart after {n} commits (Silver checkpoints {checkpoints}): {result}")
        out["restart"][str(n)] = result
    for entry in _beside_silver(root):
        shutil.rmtree(entry)
    result = run_job(root, root / "first.log", master, until_first_gold=True)
    result.update(silver_commits=silver.version + 1)
    _log(f"first start on {silver.version + 1} commits (Silver checkpoints {checkpoints}): {result}")
    out["first_start"] = result
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(saved, ignore_errors=True)
    return out


def run_restart(work: Path, master: str = "local[2]", backlogs=BACKLOGS, repeats: int = REPEATS) -> dict:
    """The start-time measurements. `restart_to_first_gold_s` is the default case (Silver_ML with
    Delta checkpoints every 10 commits, as the feed writes it): the median of `repeats` restarts
    per backlog; the variant without Silver_ML checkpoints restarts once per backlog."""
    out = {
        "with_silver_checkpoints": scenarios(work, True, master, backlogs, repeats),
        "without_silver_checkpoints": scenarios(work, False, master, backlogs, 1),
    }
    with_, without = out["with_silver_checkpoints"], out["without_silver_checkpoints"]
    out["restart_to_first_gold_s"] = {n: r["seconds"] for n, r in with_["restart"].items()}
    out["restart_to_first_gold_s_without_silver_checkpoints"] = {
        n: r["seconds"] for n, r in without["restart"].items()
    }
    out["first_start_to_first_gold_s"] = {
        "with_silver_checkpoints": with_["first_start"]["seconds"],
        "without_silver_checkpoints": without["first_start"]["seconds"],
        "silver_commits": with_["first_start"]["silver_commits"],
    }
    return out
