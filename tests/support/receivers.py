"""Real receivers on loopback for the alert channels: an HTTP server standing in for the Slack
Incoming Webhook endpoint, an SMTP server (aiosmtpd), and an in-memory channel recorder for the
Airflow-free tests; with the AIRFLOW_CONN_* values that point the connections at them."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_string, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SENDER = "flight-gold@example.com"


def free_port() -> int:
    # aiosmtpd's Controller needs the port before it starts (it probes it once up).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class WebhookServer:
    """A real HTTP server: records each POST, answers 500 to the first `failures` of them."""

    failures: int = 0
    requests: list[dict] = field(default_factory=list)
    on_post: object = None

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
                reply = b"ok" if status == 200 else b"internal_error"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/placeholder"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def delivered(self) -> list[str]:
        return [r["body"]["text"] for r in self.requests if r["status"] == 200]


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": message_from_string(envelope.content.decode("utf-8"), policy=policy.default),
            }
        )
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        return [m["message"]["Subject"] for m in self.messages]


class SmtpReceiver:
    """An aiosmtpd server on a free loopback port, delivering into an Inbox."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.inbox = Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=free_port())

    def start(self) -> Inbox:
        self.controller.start()
        self.inbox.port = self.controller.port
        return self.inbox

    def stop(self) -> None:
        self.controller.stop()


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
