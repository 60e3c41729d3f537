"""Helpers of the production-stack test (tests/e2e/test_production_stack.py): the recording with
injected anomalies the feed replays, reading the lakehouse on the stack's S3, the Spark master's
view of the applications, the streaming run, and the breaches the alert messages name."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from flight_gold.airflow.defaults import STREAMING_DAG_ID
from flight_gold.core.config import GoldConfig
from flight_gold.feed.icao import countries_of
from flight_gold.feed.opensky import load_recording
from flight_gold.lake.tables import open_table
from flight_gold.spark.progress import PROGRESS_PREFIX
from flight_gold.spark.runner import APP_NAME as STREAM_APP
from support.receivers import parse_mail, read_records
from support.stack import Stack, procs

GOLD_TABLES = ("flight_phase_counts", "anomaly_alerts")
SUBMIT = "run_gold_streams"
# A bound for each step on a shared, loaded 2-core machine, not a speed assertion.
STEP_S = 900
# Beyond the upstream filter's 15,000 m and 1,200 km/h, inside the anomaly bounds' 12,000 m and
# 1,000 km/h: the rows reach Silver_ML and are anomalies.
ANOMALOUS_ALTITUDE_FT = 42_000  # 12,802 m
ANOMALOUS_SPEED_KT = 560  # 1,037 km/h


# -- the recording --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """Every observation of `country` during minute `minute` of the recording gets an anomalous
    altitude (or ground speed): the five sliding windows around that minute breach."""

    minute: int
    country: str
    kind: str  # "altitude" | "velocity"


def anomalous_recording(path: Path, bursts: list[Burst]) -> dict[Burst, int]:
    """The packaged recording with the bursts injected, written (gzipped JSON, the recording's
    format) to `path` for the replay's --recording; the rows changed per burst."""
    raw = load_recording()
    first = int(raw["timestamp"].min())
    minute = (raw["timestamp"] - first) // 60_000
    country = countries_of(raw["icao24"].astype(str).str.strip().str.lower().to_numpy())
    changed = {}
    for burst in bursts:
        rows = (minute == burst.minute) & (country == burst.country)
        if burst.kind == "altitude":
            raw.loc[rows, "altitude"] = float(ANOMALOUS_ALTITUDE_FT)
        else:
            raw.loc[rows, "groundspeed"] = float(ANOMALOUS_SPEED_KT)
        changed[burst] = int(rows.sum())
    records = json.loads(raw.to_json(orient="records"))
    with gzip.open(path, "wt", encoding="utf-8") as out:
        json.dump(records, out)
    return changed


# -- the lakehouse ---------------------------------------------------------------------------------


class Lake:
    """The stack's lakehouse (compose's LAKEHOUSE_ROOT, S3_ENDPOINT, AWS_*), read with delta-rs
    and boto3, never through the job."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.config = GoldConfig.from_env(env)
        self.bucket = self.config.lakehouse_root[len("s3a://") :].split("/")[0]

    def with_env(self):
        """The AWS variables delta-rs and boto3 read, for the duration of a call."""
        import os
        from unittest import mock

        return mock.patch.dict(os.environ, self.env)

    def table(self, path: str) -> pd.DataFrame | None:
        with self.with_env():
            table = open_table(path, self.config)
            return None if table is None else table.to_pandas()

    def silver(self) -> pd.DataFrame:
        return self.table(self.config.paths.silver_flights_ml)

    def gold(self, name: str) -> pd.DataFrame:
        df = self.table(self.config.paths.gold_table(name))
        return pd.DataFrame() if df is None else df

    def history(self, name: str) -> list[dict]:
        """The commitInfo of every commit of a Gold table."""
        with self.with_env():
            return open_table(self.config.paths.gold_table(name), self.config).history()

    def version(self, name: str) -> int | None:
        with self.with_env():
            table = open_table(self.config.paths.gold_table(name), self.config)
            return None if table is None else table.version()

    def committed_batches(self, query: str) -> int:
        """Micro-batches the query's checkpoint on S3 has committed (commits/<n> objects)."""
        import boto3

        prefix = self.config.paths.checkpoint(query)[len(f"s3a://{self.bucket}/") :] + "/commits/"
        client = boto3.client(
            "s3",
            endpoint_url=self.env["S3_ENDPOINT"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env.get("AWS_REGION") or "us-east-1",
        )
        ids = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            ids += [
                int(o["Key"].rsplit("/", 1)[1]) for o in page.get("Contents", []) if o["Key"][-1].isdigit()
            ]
        return max(ids) + 1 if ids else 0


# -- the Spark cluster ------------------------------------------------------------------------------


def master_state(spark: dict) -> dict:
    return json.loads(procs.http_get(spark["ui"] + "/json/")[1])


def executors_by_app(spark: dict) -> dict[str, list[str]]:
    """app id -> the worker UIs (one per worker) running one of its executors, from each
    worker's JSON; dead workers answer nothing and count for nothing."""
    found: dict[str, list[str]] = {}
    for ui in spark["worker_uis"]:
        try:
            worker = json.loads(procs.http_get(ui + "/json/", timeout=3)[1])
        except OSError:
            continue
        for executor in worker["executors"]:
            found.setdefault(executor["appid"], []).append(ui)
    return found


def running_app(spark: dict, name: str) -> dict | None:
    apps = [a for a in master_state(spark)["activeapps"] if a["name"] == name and a["state"] == "RUNNING"]
    return apps[-1] if apps else None


# -- alerts ----------------------------------------------------------------------------------------

_SLACK_LINE = re.compile(r"^• \*(?P<country>.+?)\* (?P<window>\S+ \S+?–\S+(?: \S+)?) UTC: ")
_RUN = re.compile(r"gold_anomaly_alerts run (\S+?)_?$")


def window_key(start: datetime | pd.Timestamp, country: str) -> tuple[str, str]:
    return (pd.Timestamp(start).tz_convert(UTC).strftime("%Y-%m-%d %H:%M"), country)


def _key(country: str, window: str) -> tuple[str, str]:
    # "2024-05-01 10:00–10:05": the window's start (UTC) and the country.
    return (window.split("–")[0], country)


def slack_alerts(records_file: str) -> list[dict]:
    """Each delivered anomaly alert on Slack: {"run_id", "breaches": [(window start, country)...]}."""
    out = []
    for record in read_records(records_file):
        lines = record["body"].get("text", "").splitlines()
        # Other senders share the channel (the stream's supervision, freshness alerts).
        if record["status"] != 200 or not lines or "*Flight anomaly alert*" not in lines[0]:
            continue
        breaches = [_key(m["country"], m["window"]) for line in lines if (m := _SLACK_LINE.match(line))]
        run = _RUN.search(lines[-1].rstrip("_"))
        run_id = run.group(1) if run else None
        out.append({"run_id": run_id, "breaches": breaches, "text": record["body"]["text"]})
    return out


def mail_alerts(records_file: str) -> list[dict]:
    """Each anomaly alert email: {"run_id", "breaches", "subject", "to"} from its plain-text part."""
    out = []
    for record in read_records(records_file):
        message = parse_mail(record)
        if not str(message["Subject"]).startswith("[Flight Gold] Anomaly alert"):
            continue
        text = message.get_body(("plain",)).get_content()
        lines = text.splitlines()
        breaches = []
        header = next(i for i, line in enumerate(lines) if line.startswith("Country"))
        for line in lines[header + 1 :]:
            if not line.strip():
                break
            cells = re.split(r"\s{2,}", line.strip())
            breaches.append(_key(cells[0], cells[1]))
        run = next((_RUN.search(line) for line in lines if "gold_anomaly_alerts run" in line), None)
        run_id = run.group(1) if run else None
        out.append(
            {"run_id": run_id, "breaches": breaches, "subject": message["Subject"], "to": record["to"]}
        )
    return out


def exactly_once(messages: list[dict]) -> Counter:
    return Counter(key for message in messages for key in message["breaches"])


# -- the streaming run -----------------------------------------------------------------------------


class StreamRun:
    """The triggered gold_streaming run, seen through the REST API and the cluster."""

    def __init__(self, stack: Stack, airflow, run_id: str):
        self.stack, self.airflow, self.run_id = stack, airflow, run_id

    def state(self, task_id: str = SUBMIT) -> str | None:
        return self.airflow.task(STREAMING_DAG_ID, self.run_id, task_id)["state"]

    def try_number(self) -> int:
        return self.airflow.task(STREAMING_DAG_ID, self.run_id, SUBMIT)["try_number"]

    def log(self, try_number: int | None = None) -> list[str]:
        return self.airflow.log(STREAMING_DAG_ID, self.run_id, SUBMIT, try_number or self.try_number())

    def progress(self, try_number: int | None = None) -> list[dict]:
        marker = f"{PROGRESS_PREFIX} "
        return [json.loads(line.split(marker, 1)[1]) for line in self.log(try_number) if marker in line]

    def spread_app(self) -> dict | None:
        """The stream's application once it has an executor on every worker."""
        spark = self.stack.info["endpoints"]["spark"]
        app = running_app(spark, STREAM_APP)
        if app and len(set(executors_by_app(spark).get(app["id"], []))) == len(spark["worker_uis"]):
            return app
        return None

    def details(self) -> str:
        try:
            ti = self.airflow.task(STREAMING_DAG_ID, self.run_id, SUBMIT)
            lines = self.log(ti["try_number"]) if ti["try_number"] else []
            head = f"--- {SUBMIT}: {ti['state']} (try {ti['try_number']})"
            return "\n".join([head, *[line[:400] for line in lines[-40:]]])
        except Exception as exc:  # diagnostics never hide the failure itself
            return f"--- {SUBMIT}: {exc!r}"


def log_tail(stack: Stack, name: str) -> str:
    return procs.tail(stack.procs[name].log) if name in stack.procs else ""


def wait_run(airflow, dag_id: str, run_id: str, expected: str = "success") -> None:
    state = wait_for(
        f"{dag_id} run {run_id}",
        lambda: (s := airflow.run(dag_id, run_id)["state"]) in ("success", "failed") and s,
        STEP_S,
        details=lambda: "\n".join(f"{t['task_id']}: {t['state']}" for t in airflow.tasks(dag_id, run_id)),
    )
    assert state == expected, [(t["task_id"], t["state"]) for t in airflow.tasks(dag_id, run_id)]


def committed(lake: Lake) -> dict[str, int]:
    return {q: lake.committed_batches(q) for q in GOLD_TABLES}


def committing_after(lake: Lake, before: dict[str, int], batches: int = 1):
    return lambda: all(n >= before[q] + batches for q, n in committed(lake).items())


# -- figures and waiting ---------------------------------------------------------------------------


@dataclass
class Figures:
    """The measured durations the issue asks for, printed and written at the end."""

    values: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def record(self, name: str, seconds: float) -> float:
        self.values[name] = round(seconds, 1)
        return seconds

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.values, indent=2) + "\n")


def wait_for(what: str, check, timeout: float, interval: float = 3.0, details=lambda: ""):
    """Polls `check()` (an exception counts as not yet) until truthy; fails with `details()`.
    A bound on waiting for a loaded machine, not a speed assertion."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the stack is being broken on purpose: report the last one
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last error {last_error!r})\n{details()}"
            )
        time.sleep(interval)
