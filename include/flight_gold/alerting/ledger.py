"""The alert ledger: where alerting stands (the Gold version checked up to, what each channel
received since), one JSON document beside the lakehouse tables, local or on S3."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flight_gold.airflow.defaults import ALERTS_DAG_ID as DAG_ID
from flight_gold.alerting.breaches import BreachKey
from flight_gold.alerting.settings import LEDGER_FORMAT
from flight_gold.core.config import GoldConfig
from flight_gold.core.times import iso, parse_iso
from flight_gold.lake.documents import DocumentStore


class LedgerError(RuntimeError):
    """The ledger file exists but cannot be understood."""


@dataclass
class Ledger:
    version: int | None = None
    max_window_end: datetime | None = None
    sent_after_version: dict[str, set[BreachKey]] = field(default_factory=dict)
    updated_at: datetime | None = None
    last_alert: dict[str, Any] | None = None

    def sent(self, channel: str) -> set[BreachKey]:
        return self.sent_after_version.setdefault(channel, set())

    def to_json(self) -> str:
        doc = {
            "ledger": DAG_ID,
            "format": LEDGER_FORMAT,
            "version": self.version,
            "max_window_end": iso(self.max_window_end),
            "sent_after_version": {
                channel: [key.to_json() for key in sorted(keys)]
                for channel, keys in sorted(self.sent_after_version.items())
            },
            "updated_at": iso(self.updated_at),
            "last_alert": self.last_alert,
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Ledger:
        try:
            doc = json.loads(text)
            if doc.get("format") != LEDGER_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            version = doc["version"]
            if version is not None and (not isinstance(version, int) or version < 0):
                raise ValueError(f"version must be null or a table version, got {version!r}")
            return cls(
                version=version,
                max_window_end=parse_iso(doc["max_window_end"]) if doc.get("max_window_end") else None,
                sent_after_version={
                    channel: {BreachKey.from_json(item) for item in items}
                    for channel, items in (doc.get("sent_after_version") or {}).items()
                },
                updated_at=parse_iso(doc["updated_at"]) if doc.get("updated_at") else None,
                last_alert=doc.get("last_alert"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerError(
                f"alert ledger {where} is unreadable ({exc}). Fix it by hand, or delete it to "
                f"alert again on every breach the Gold table holds"
            ) from None


class LedgerStore:
    """The ledger as one JSON document, on the local disk or on S3 (same settings as the lakehouse)."""

    def __init__(self, uri: str, config: GoldConfig):
        self.uri = uri
        self._document = DocumentStore(uri, config)

    def load(self) -> Ledger:
        text = self._document.read_text()
        return Ledger() if text is None else Ledger.from_json(text, self.uri)

    def save(self, ledger: Ledger) -> None:
        self._document.write_text(ledger.to_json())
