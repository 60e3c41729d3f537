"""The alert channels' real receivers on loopback: an HTTP server standing in for the Slack
Incoming Webhook endpoint, an SMTP server (aiosmtpd), the AIRFLOW_CONN_* values that point the
connections at them, and an in-memory channel recorder for the Airflow-free tests.

In a test's own process (`WebhookServer().start()`, `SmtpReceiver().start()`, `smtp_receiver()`),
or as a process of the native production stack (tests/support/stack), which appends every message
it receives to a JSON Lines file that the test reads:

    python -m support.receivers slack --port P --out DIR/slack.jsonl
    python -m support.receivers smtp --port P --out DIR/mail.jsonl

A Slack line is {"path", "status", "body"}; a mail line is {"from", "to", "raw"} (the message as
received: `parse_mail(line)` reads it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_string, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.net import free_port

SENDER = "flight-gold@example.com"
WEBHOOK_PATH = "/services/T000/B000/placeholder"


@dataclass
class WebhookServer:
    """A real HTTP server: records each POST, answers 500 to the first `failures` of them."""

    failures: int = 0
    requests: list[dict] = field(default_factory=list)
    on_post: object = None
    port: int = 0
    on_record: Callable[[dict], None] | None = None

    def start(self) -> WebhookServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = 500 if owner.failures > 0 else 200
                owner.failures -= 1 if status == 500 else 0
                record = {
                    "path": self.path,
                    "status": status,
                    "body": json.loads(body),
                    "content_type": self.headers.get("Content-Type"),
                }
                if owner.on_post:
                    record["seen"] = owner.on_post()
                owner.requests.append(record)
                if owner.on_record:
                    owner.on_record(record)
                reply = b"ok" if status == 200 else b"internal_error"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{WEBHOOK_PATH}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def delivered(self) -> list[str]:
        return [r["body"]["text"] for r in self.requests if r["status"] == 200]


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self, on_record: Callable[[dict], None] | None = None):
        self.messages = []
        self.port = 0
        self.on_record = on_record

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        raw = envelope.content.decode("utf-8")
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": message_from_string(raw, policy=policy.default),
            }
        )
        if self.on_record:
            self.on_record({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "raw": raw})
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        return [m["message"]["Subject"] for m in self.messages]


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 (`port`, or a free one), delivering into an Inbox."""

    def __init__(self, port: int = 0, on_record: Callable[[dict], None] | None = None):
        from aiosmtpd.controller import Controller

        self.inbox = Inbox(on_record)
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port or free_port())

    def start(self) -> Inbox:
        self.controller.start()
        self.inbox.port = self.controller.port
        return self.inbox

    def stop(self) -> None:
        self.controller.stop()


@contextlib.contextmanager
def smtp_receiver(port: int = 0, on_record: Callable[[dict], None] | None = None) -> Iterator[Inbox]:
    """SmtpReceiver as a context manager: the Inbox holds what it accepted."""
    receiver = SmtpReceiver(port, on_record)
    inbox = receiver.start()
    try:
        yield inbox
    finally:
        receiver.stop()


def connection_env(webhook: WebhookServer, inbox: Inbox, recipients: list[str]) -> dict[str, str]:
    """The environment that points `slack_alerts` and `smtp_alerts` at the receivers."""
    return {
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps({"conn_type": "slackwebhook", "password": webhook.url}),
        "AIRFLOW_CONN_SMTP_ALERTS": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": inbox.port,
                "extra": {"from_email": SENDER, "disable_tls": True, "disable_ssl": True, "timeout": 10},
            }
        ),
        "ALERT_EMAIL_TO": ",".join(recipients),
    }


@dataclass
class Recorder:
    """A channel (name, send) that keeps what it is given, failing the first `fail` sends."""

    name: str
    fail: int = 0
    notices: list = field(default_factory=list)

    def send(self, notice) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("webhook answered 500")
        self.notices.append(notice)


def read_records(path: str | Path) -> list[dict]:
    """The JSON Lines a receiver process wrote (none yet: an empty list)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def parse_mail(record: dict):
    return message_from_string(record["raw"], policy=policy.default)


def _serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m support.receivers", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["slack", "smtp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True, help="JSON Lines file, appended to")
    args = parser.parse_args(argv)
    lock = threading.Lock()

    def record(entry: dict) -> None:
        with lock, open(args.out, "a") as out:
            out.write(json.dumps(entry) + "\n")

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if args.kind == "slack":
        server = WebhookServer(port=args.port, on_record=record).start()
        print(f"Slack webhook receiver on {server.url}", flush=True)
        while not done.wait(0.5):
            pass
        server.stop()
        return
    with smtp_receiver(args.port, on_record=record) as inbox:
        print(f"SMTP receiver on 127.0.0.1:{inbox.port}", flush=True)
        while not done.wait(0.5):
            pass


if __name__ == "__main__":
    _serve()
