"""One alert check: the Gold rows added since the ledger's version, the breaches among them, each
sent to the channels that have not received it yet, and the ledger moved forward once every
channel has them all."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from flight_gold.alerting.breaches import Breach, select_breaches
from flight_gold.alerting.changes import read_new_rows
from flight_gold.alerting.ledger import LedgerStore
from flight_gold.alerting.messages import AlertContext, threshold_text
from flight_gold.alerting.settings import AlertConfigError, AlertDeliveryError, AlertSettings
from flight_gold.core.config import GoldConfig
from flight_gold.core.times import iso

log = logging.getLogger(__name__)


class Channel(Protocol):
    name: str

    def send(self, breaches: Sequence[Breach], context: AlertContext) -> None:
        """Delivers one message listing `breaches`, or raises."""


def run_check(
    config: GoldConfig,
    settings: AlertSettings,
    channels: Sequence[Channel],
    *,
    run_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One check: reads the Gold rows added since the ledger's version, sends the breaches each
    channel has not received yet, and advances the ledger once every channel has them all.

    Returns what it found and sent; raises AlertDeliveryError when a channel failed (after the
    other channels were tried and recorded)."""
    from flight_gold.lake.tables import open_table

    if not channels:
        raise AlertConfigError("no alert channel is configured")
    names = [channel.name for channel in channels]
    if len(set(names)) != len(names):
        raise AlertConfigError(f"alert channels must have distinct names, got {names}")
    gold_path = config.paths.anomaly_alerts
    store = LedgerStore(settings.ledger_location(config), config)
    ledger = store.load()
    result: dict[str, Any] = {
        "breaches_found": 0,
        "breaches_sent": {name: 0 for name in names},
        "gold_version_from": ledger.version,
        "gold_version_to": ledger.version,
        "read": "none",
        "ledger": store.uri,
    }

    table = open_table(gold_path, config)
    if table is None:
        log.info("No Gold table at %s yet: nothing to check", gold_path)
        return result
    new = read_new_rows(table, ledger.version, ledger.max_window_end, settings)
    if new is None:
        log.info("Gold table anomaly_alerts is still at version %s: nothing new", ledger.version)
        return result

    breaches = select_breaches(new.rows, settings)
    result.update(breaches_found=len(breaches), gold_version_to=new.version, read=new.read)
    if new.read == "changes":
        first = ledger.version + 1
        versions = f"version {first}" if first == new.version else f"versions {first}–{new.version}"
    else:
        versions = f"version {new.version}"
    context = AlertContext(
        threshold=settings.threshold,
        min_observations=settings.min_observations,
        max_rows=settings.max_rows,
        gold_table=gold_path,
        versions=versions,
        run_id=run_id,
    )
    log.info(
        "Read %d new row(s) of anomaly_alerts (%s, %s): %d breach(es) above %s",
        new.rows.num_rows,
        new.read,
        context.versions,
        len(breaches),
        threshold_text(settings.threshold),
    )

    failures: dict[str, BaseException] = {}
    keys = [b.key for b in breaches]
    for position, channel in enumerate(channels):
        already = ledger.sent(channel.name)
        todo = [b for b, key in zip(breaches, keys) if key not in already]
        if not todo:
            if breaches:
                log.info("%s already has the %d breach(es) of this range", channel.name, len(breaches))
            continue
        try:
            channel.send(todo, context)
        except Exception as exc:
            log.error("Sending %d breach(es) to %s failed: %s", len(todo), channel.name, exc)
            failures[channel.name] = exc
            continue
        already.update(b.key for b in todo)
        result["breaches_sent"][channel.name] = len(todo)
        if failures or position < len(channels) - 1:
            # Recorded before the next channel is tried: if that one fails, the retry must not
            # send this one again. (After the last one, the save below records everything.)
            ledger.updated_at = now or datetime.now(UTC)
            store.save(ledger)
        log.info("Sent %d breach(es) to %s", len(todo), channel.name)

    if failures:
        detail = "; ".join(f"{name}: {exc}" for name, exc in failures.items())
        raise AlertDeliveryError(
            f"{len(failures)} alert channel(s) failed ({detail}). The ledger stays at Gold version "
            f"{ledger.version}; a retry sends each channel only the breaches it has not received"
        ) from next(iter(failures.values()))

    ledger.version = new.version
    if new.max_window_end is not None:
        ledger.max_window_end = max(filter(None, [ledger.max_window_end, new.max_window_end]))
    ledger.sent_after_version = {}
    ledger.updated_at = now or datetime.now(UTC)
    if breaches:
        ledger.last_alert = {
            "at": iso(ledger.updated_at),
            "run_id": run_id,
            "breaches": len(breaches),
            "gold_versions": context.versions,
        }
    store.save(ledger)
    return result
