"""What the Gold job says while its queries wait on something: the storage unreachable (a
TCP probe of the S3 endpoint) and a micro-batch stalled far beyond its trigger interval. Spark
retries S3 requests quietly and warns only after the fact that a batch "is falling behind"."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from flight_gold.core.config import GoldConfig
from flight_gold.core.intervals import interval_seconds

log = logging.getLogger("flight_gold.jobs.streaming_gold")

# A micro-batch running this long, and this many trigger intervals, is reported as stalled.
STALL_MIN_S = 60.0
STALL_INTERVALS = 6
STALL_CHECK_EVERY_S = 2.0


class StallWatch:
    """Says, in one line per query, when a micro-batch runs far longer than its trigger interval
    (storage unreachable, executors lost: Spark retries quietly), and when it completes. Spark
    itself only warns, after the fact, that a batch "is falling behind"."""

    def __init__(self, config: GoldConfig | None):
        interval = interval_seconds(config.trigger_interval) if config else 0.0
        self.after_s = max(STALL_MIN_S, STALL_INTERVALS * interval)
        self.where = config.lakehouse_root if config else "the lakehouse"
        self.interval = config.trigger_interval if config else "?"
        self.seen: dict[str, tuple[object, float | None, bool]] = {}
        self.next_check = 0.0

    def check(self, queries) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + STALL_CHECK_EVERY_S
        for q in queries:
            try:
                status, last = q.status, q.lastProgress
            except Exception:  # a query tearing down: nothing to say about it
                continue
            batch = last.get("batchId") if last else None
            active = bool(status.get("isTriggerActive"))
            previous, since, reported = self.seen.get(q.name, (batch, None, False))
            if batch != previous and reported:
                log.warning("query %s: the stalled micro-batch completed after %.0f s", q.name, now - since)
            if batch != previous or not active:
                since, reported = (now if active else None), False
            elif since is None:
                since = now
            if active and not reported and now - since >= self.after_s:
                log.warning(
                    "query %s: micro-batch stalled for %.0f s (trigger interval %s), Spark says %r; "
                    "is the storage (%s) or the cluster unreachable? Spark retries; the batch "
                    "commits when it gets through",
                    q.name,
                    now - since,
                    self.interval,
                    status.get("message"),
                    self.where,
                )
                reported = True
            self.seen[q.name] = (batch, since, reported)


# The storage endpoint is probed this often (one TCP connection), each probe waiting this long.
PROBE_EVERY_S = 5.0
PROBE_TIMEOUT_S = 3.0


class StorageWatch:
    """A thread that probes the S3 endpoint of an s3a:// lakehouse (a TCP connection) and logs,
    once each, when it stops answering and when it answers again. A no-op on other roots."""

    def __init__(self, config: GoldConfig | None):
        self.address = storage_address(config) if config is not None and config.is_s3 else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StorageWatch:
        if self.address is not None:
            self._thread = threading.Thread(target=self._run, name="gold-storage-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(PROBE_TIMEOUT_S + 1)

    def _run(self) -> None:
        host, port = self.address
        down_since = None
        while not self._stop.wait(PROBE_EVERY_S):
            try:
                with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                    pass
            except OSError as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning(
                        "storage unreachable: the S3 endpoint %s:%s does not answer (%s); the queries "
                        "wait for it (Spark retries) and fail if it stays away",
                        host,
                        port,
                        exc.strerror or exc,
                    )
                continue
            if down_since is not None:
                log.warning(
                    "storage reachable again: the S3 endpoint %s:%s answers after %.0f s",
                    host,
                    port,
                    time.monotonic() - down_since,
                )
                down_since = None


def storage_address(config: GoldConfig) -> tuple[str, int]:
    """(host, port) of the S3 endpoint: S3_ENDPOINT's, or AWS S3's regional endpoint."""
    if config.s3_endpoint:
        url = urlsplit(config.s3_endpoint if "://" in config.s3_endpoint else f"https://{config.s3_endpoint}")
        return url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 80)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return f"s3.{region}.amazonaws.com", 443
