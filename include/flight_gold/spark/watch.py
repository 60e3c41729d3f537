"""What the Gold job says while its queries wait for the storage: a thread probes the S3 endpoint
(one TCP connection every few seconds). Spark retries S3 requests quietly, and warns only after
the fact that a batch "is falling behind": an outage would otherwise leave no line in the log."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from flight_gold.core.config import GoldConfig

log = logging.getLogger("flight_gold.jobs.streaming_gold")

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
