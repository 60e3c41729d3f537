"""A real S3-compatible HTTP server on loopback for tests: moto's server mode, in a child process.

It runs in its own process so that its request handling never competes with the test's own
interpreter (Spark's py4j callbacks, delta-rs) and so that it is certainly gone when the test ends.
Run as a script it starts the server on 127.0.0.1, on a port the kernel picks (or `--port`), prints
`PORT <n>` once it listens, and serves until stdin closes (unless `--detached`) or it gets SIGTERM.

Outages (the native production stack, tests/support/stack): SIGUSR1 stops the server as a
restarting MinIO looks from outside: the listening socket is closed (new connections are refused)
and every open connection is cut; SIGUSR2 starts it again on the same port. moto keeps its
buckets in the memory of this process, which stays alive: the data is the same after the outage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

# Any non-empty pair: moto checks no signatures. Nothing secret, and never a real account's.
ACCESS_KEY = "flight-gold-test"
SECRET_KEY = "flight-gold-test-secret"
REGION = "us-east-1"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    pid: int | None = None

    def down(self) -> None:
        """An outage: the server stops listening and cuts its connections (data kept)."""
        os.kill(self.pid, signal.SIGUSR1)

    def up(self) -> None:
        """The end of the outage: listening again on the same port."""
        os.kill(self.pid, signal.SIGUSR2)

    @property
    def env(self) -> dict[str, str]:
        """The environment a Spark job or delta-rs needs to reach this server (see GoldConfig)."""
        return {
            "S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def create_bucket(self, name: str, versioned: bool = False) -> None:
        """`versioned`: every object ever written stays listed by list_object_versions, deleted
        ones included, so that a test can tell how a Delta log was written. Only where a test
        asks: in a versioned bucket, moto's delimited listing still names a prefix whose objects
        are all deleted (AWS S3 names none), so a deleted folder looks present to S3A and Spark."""
        client = self.client()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        )


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """Starts the server in a child process and stops it (and only it) on exit."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = _read_port(proc)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_port(proc: subprocess.Popen) -> int:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    line = result[0] if result else ""
    if not line.startswith("PORT "):
        raise RuntimeError(f"the S3 test server did not start (exit code {proc.poll()}, said {line!r})")
    return int(line.split()[1])


class _Listener:
    """moto's WSGI app behind a threaded werkzeug server that can be closed and opened again on
    the same port, cutting the connections it holds (keep-alive clients would otherwise go on
    being served by their handler threads)."""

    def __init__(self, host: str, port: int):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import ThreadedWSGIServer

        open_connections = self.connections = set()

        class Server(ThreadedWSGIServer):
            def process_request(self, request, client_address):
                open_connections.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request):
                open_connections.discard(request)
                super().shutdown_request(request)

        class Handler(MotoRequestHandler):
            def log_request(self, code="-", size="-"):
                # Thousands of requests a minute: only server errors are worth a line.
                if str(code).isdigit() and int(code) >= 500:
                    super().log_request(code, size)

        self._server_class, self._handler = Server, Handler
        self.app = DomainDispatcherApplication(create_backend_app)
        self.host, self.port = host, port
        self.server = None

    def up(self) -> int:
        self.server = self._server_class(self.host, self.port, self.app, handler=self._handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.port

    def down(self) -> int:
        """Closes the listener and cuts every open connection; the number cut."""
        if self.server is None:
            return 0
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        cut = list(self.connections)
        for conn in cut:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return len(cut)


def _next(actions) -> str:
    # A timeout keeps the wait interruptible, so that the signal handlers run promptly.
    import queue

    while True:
        try:
            return actions.get(timeout=0.5)
        except queue.Empty:
            continue


def _serve(argv: list[str] | None = None) -> None:
    import argparse
    import queue

    parser = argparse.ArgumentParser(description="moto S3 server on loopback, for tests")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--detached", action="store_true", help="do not stop when stdin closes")
    args = parser.parse_args(argv)
    listener = _Listener("127.0.0.1", args.port)
    print(f"PORT {listener.up()}", flush=True)
    actions: queue.Queue = queue.Queue()
    for signum, action in ((signal.SIGTERM, "stop"), (signal.SIGUSR1, "down"), (signal.SIGUSR2, "up")):
        signal.signal(signum, lambda *_, a=action: actions.put(a))
    if not args.detached:
        # The parent closing our stdin (it died) also ends the server.
        threading.Thread(target=lambda: (sys.stdin.read(), actions.put("stop")), daemon=True).start()
    while (action := _next(actions)) != "stop":
        if action == "down":
            cut = listener.down()
            print(f"S3 server down: port {listener.port} closed, {cut} connections cut", flush=True)
        elif listener.server is None:
            listener.up()
            print(f"S3 server up again on port {listener.port}, same buckets", flush=True)
    listener.down()


if __name__ == "__main__":
    _serve()
