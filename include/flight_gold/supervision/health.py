"""The stream's health as its supervisor sees it, for the dashboard and for people reading the
lakehouse: one JSON document, `<root>/_control/gold_streaming_health.json`, rewritten atomically
at each change of state and every HEARTBEAT_S seconds while the task supervises.

    state           starting | running | restarting | stopped | gave_up
    running_since   when the running job started (null unless running)
    restarts        each unplanned stop of the last 24 h: when, why, exit code, delay before the
                    restart
    last_failure    the newest unplanned stop or give-up: when, why, exit code
    updated_at      the last write: a supervisor that died stops updating it
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flight_gold.core.config import GoldConfig
from flight_gold.core.times import iso, parse_iso, utcnow
from flight_gold.lake.documents import DocumentStore

HEALTH_FILE = "gold_streaming_health.json"
HEALTH_FORMAT = 1
HEARTBEAT_S = 30.0
RESTARTS_KEPT = timedelta(hours=24)
STATES = ("starting", "running", "restarting", "stopped", "gave_up")


@dataclass
class StreamHealth:
    state: str = "starting"
    dag_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None
    trigger: str | None = None
    supervised_since: datetime | None = None
    running_since: datetime | None = None
    next_restart_at: datetime | None = None
    restarts: list[dict[str, Any]] = field(default_factory=list)
    last_failure: dict[str, Any] | None = None
    message: str | None = None
    updated_at: datetime | None = None

    # -- transitions ------------------------------------------------------------------------------

    def supervising(self, dag_id: str, run_id: str, try_number: int, trigger: str, now: datetime) -> None:
        self.state, self.dag_id, self.run_id, self.try_number, self.trigger = (
            "starting",
            dag_id,
            run_id,
            try_number,
            trigger,
        )
        self.supervised_since, self.running_since, self.next_restart_at, self.message = now, None, None, None

    def job_started(self, now: datetime) -> None:
        self.state, self.running_since, self.next_restart_at, self.message = "running", now, None, None

    def unplanned_stop(self, reason: str, exit_code: int | None, delay_s: float, now: datetime) -> None:
        failure = {"at": iso(now), "reason": reason, "exit_code": exit_code}
        self.restarts.append({**failure, "delay_s": round(delay_s, 1)})
        self.last_failure = failure
        self.state, self.running_since = "restarting", None
        self.next_restart_at = now + timedelta(seconds=delay_s)
        self.message = f"restarting in {delay_s:g} s"

    def stopped(self, message: str, now: datetime) -> None:
        self.state, self.running_since, self.next_restart_at, self.message = "stopped", None, None, message

    def gave_up(self, reason: str, exit_code: int | None, message: str, now: datetime) -> None:
        self.last_failure = {"at": iso(now), "reason": reason, "exit_code": exit_code}
        self.state, self.running_since, self.next_restart_at, self.message = "gave_up", None, None, message

    # -- reading ----------------------------------------------------------------------------------

    def recent_restarts(self, now: datetime) -> list[dict[str, Any]]:
        return [r for r in self.restarts if parse_iso(r["at"]) > now - RESTARTS_KEPT]

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        return {
            "format": HEALTH_FORMAT,
            "state": self.state,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "try_number": self.try_number,
            "trigger": self.trigger,
            "supervised_since": iso(self.supervised_since),
            "running_since": iso(self.running_since),
            "next_restart_at": iso(self.next_restart_at),
            "restarts": self.recent_restarts(now),
            "last_failure": self.last_failure,
            "message": self.message,
            "updated_at": iso(self.updated_at),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> StreamHealth:
        def instant(key: str) -> datetime | None:
            return parse_iso(doc[key]) if doc.get(key) else None

        state = doc.get("state")
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        return cls(
            state=state,
            dag_id=doc.get("dag_id"),
            run_id=doc.get("run_id"),
            try_number=doc.get("try_number"),
            trigger=doc.get("trigger"),
            supervised_since=instant("supervised_since"),
            running_since=instant("running_since"),
            next_restart_at=instant("next_restart_at"),
            restarts=[dict(r) for r in doc.get("restarts") or [] if isinstance(r, dict) and r.get("at")],
            last_failure=doc.get("last_failure"),
            message=doc.get("message"),
            updated_at=instant("updated_at"),
        )


class HealthStore:
    def __init__(self, config: GoldConfig):
        self.uri = config.paths.control(HEALTH_FILE)
        self._store = DocumentStore(self.uri, config)

    def load(self) -> StreamHealth | None:
        """The document, None when there is none or it cannot be understood (it is rewritten
        whole at the next save)."""
        text = self._store.read_text()
        if text is None:
            return None
        try:
            return StreamHealth.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, health: StreamHealth, now: datetime | None = None) -> None:
        now = now or utcnow()
        health.updated_at = now
        health.restarts = health.recent_restarts(now)
        self._store.write_text(json.dumps(health.to_dict(now), indent=2) + "\n")
