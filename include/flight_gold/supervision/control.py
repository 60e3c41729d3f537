"""The stop request: a small document that the DAG `gold_streaming_stop` writes and the supervising
task of `gold_streaming` watches (`<root>/_control/gold_streaming_stop.json`, local or S3).

A request stays until a new trigger of `gold_streaming` starts: that run removes a request older
than its own start, so a stop is never undone by the supervision and never outlives the next
deliberate start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from flight_gold.core.config import GoldConfig
from flight_gold.core.times import iso, parse_iso, utcnow
from flight_gold.lake.documents import DocumentStore

STOP_FILE = "gold_streaming_stop.json"


@dataclass(frozen=True)
class StopRequest:
    requested_at: datetime
    requested_by: str | None = None

    def to_json(self) -> str:
        return json.dumps({"requested_at": iso(self.requested_at), "requested_by": self.requested_by}) + "\n"


class StopRequests:
    """The stop request document of one lakehouse."""

    def __init__(self, config: GoldConfig):
        self.uri = config.paths.control(STOP_FILE)
        self._store = DocumentStore(self.uri, config)

    def request(self, requested_by: str | None = None, now: datetime | None = None) -> StopRequest:
        request = StopRequest(now or utcnow(), requested_by)
        self._store.write_text(request.to_json())
        return request

    def current(self) -> StopRequest | None:
        """The request, or None. A document that cannot be read (edited by hand) counts as an old
        request: a running stream ignores it and the next trigger removes it."""
        text = self._store.read_text()
        if text is None:
            return None
        try:
            doc = json.loads(text)
            return StopRequest(parse_iso(doc["requested_at"]), doc.get("requested_by"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return StopRequest(datetime.min.replace(tzinfo=UTC), f"unreadable document {self.uri}")

    def pending_since(self, started_at: datetime) -> StopRequest | None:
        """The request made at or after `started_at` (a run's start), or None."""
        request = self.current()
        return request if request is not None and request.requested_at >= started_at else None

    def clear_older_than(self, started_at: datetime) -> StopRequest | None:
        """Removes a request made before `started_at` (the request a new trigger overrides);
        returns it, or None when there was none to remove."""
        request = self.current()
        if request is None or request.requested_at >= started_at:
            return None
        self._store.delete()
        return request
