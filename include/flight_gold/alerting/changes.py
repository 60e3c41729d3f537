"""What the Gold table anomaly_alerts gained since the last check, read with deltalake: the
change feed of the commits after the ledger's version, or, when those cannot be read any more,
the windows of the current snapshot that end after the last one seen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flight_gold.alerting.settings import ALERT_COLUMNS, AlertSettings
from flight_gold.core.errors import one_line
from flight_gold.core.times import as_utc, iso

log = logging.getLogger(__name__)


@dataclass
class NewRows:
    rows: Any  # pyarrow.Table with ALERT_COLUMNS
    version: int  # the Gold table version read up to (inclusive)
    read: str  # "snapshot", "changes" or "fallback"
    max_window_end: datetime | None


def read_new_rows(
    table, since_version: int | None, since_window_end: datetime | None, settings: AlertSettings
) -> NewRows | None:
    """Rows of `table` (a deltalake DeltaTable at its latest version) added after since_version;
    None when there is nothing after it."""
    version = table.version()
    if since_version is None:
        return _read_snapshot(table, version, None, settings, "snapshot")
    if version == since_version:
        return None
    if version < since_version:
        log.warning(
            "Gold table anomaly_alerts is at version %d, behind the ledger's %d (was it "
            "recreated?): reading the windows that end after %s",
            version,
            since_version,
            iso(since_window_end),
        )
        return _read_snapshot(table, version, since_window_end, settings, "fallback")
    import pyarrow as pa

    try:
        changes = pa.table(
            table.load_cdf(
                starting_version=since_version + 1,
                ending_version=version,
                columns=[*ALERT_COLUMNS, "_change_type", "_commit_version"],
            )
        )
    except Exception as exc:
        # Typically VACUUM removed the files of those commits, or the log of those versions is
        # gone; the snapshot still holds their rows.
        log.warning(
            "Cannot read the Gold commits %d..%d (%s); reading the windows that end after "
            "%s from the snapshot instead",
            since_version + 1,
            version,
            one_line(exc, 300),
            iso(since_window_end),
        )
        return _read_snapshot(table, version, since_window_end, settings, "fallback")
    rows = _inserted_rows(changes, since_window_end)
    return NewRows(rows, version, "changes", _max_time(rows["window_end"]))


def _inserted_rows(changes, since_window_end: datetime | None = None):
    """The inserted rows of a change feed, in commit order, as ALERT_COLUMNS, without the
    windows that end at or before `since_window_end`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    changes = _normalize(changes)
    # Without CDF enabled an append shows up as "insert"; the DELETE of a full refresh shows up
    # as "delete", and is no new window.
    changes = changes.filter(pc.equal(changes["_change_type"], "insert"))
    if since_window_end is not None:
        # The stream appends windows in the order of their end (each batch's windows end after
        # the previous batch's watermark): a window ending at or before one already seen is a
        # window written again by a full refresh, whose breaches were alerted the first time.
        changes = changes.filter(
            pc.greater(changes["window_end"], pa.scalar(since_window_end, changes["window_end"].type))
        )
    changes = changes.sort_by([("_commit_version", "ascending")])
    return changes.select(list(ALERT_COLUMNS))


def _read_snapshot(
    table, version: int, since_window_end: datetime | None, settings: AlertSettings, read: str
) -> NewRows:
    import pyarrow.dataset as ds

    predicate = ds.field("anomaly_rate") > settings.threshold
    if since_window_end is not None:
        predicate = predicate & (ds.field("window_end") > since_window_end)
    rows = _normalize(table.to_pyarrow_table(columns=list(ALERT_COLUMNS), filters=predicate))
    return NewRows(rows, version, read, _snapshot_max_window_end(table))


def _snapshot_max_window_end(table) -> datetime | None:
    """From the file statistics when every file has them, else from the column itself."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    if "max.window_end" in actions.column_names and actions["max.window_end"].null_count == 0:
        return _max_time(actions["max.window_end"])
    return _max_time(table.to_pyarrow_table(columns=["window_end"])["window_end"])


def _normalize(rows):
    """delta-rs may hand out string_view columns; plain strings are what pyarrow.compute and
    to_pylist handle everywhere."""
    import pyarrow as pa

    for index, column in enumerate(rows.schema):
        if column.type == pa.string_view() or column.type == pa.large_string():
            rows = rows.set_column(index, column.name, rows[column.name].cast(pa.string()))
    return rows


def _max_time(column) -> datetime | None:
    import pyarrow.compute as pc

    value = pc.max(column).as_py()
    return as_utc(value) if value is not None else None
