"""What the Gold job checks and repairs in its own checkpoints, under their lock, before the
queries start:

- a checkpoint with no logged offset is new: whatever a kill during its first batch left there
  (temporary files, empty state folders, an empty `metadata`) belongs to no committed batch and
  is removed, since Spark refuses to start a first batch over it;
- a new checkpoint next to a Gold table that already holds rows would append every window a
  second time (the writer's idempotency key is the query id, which lived in the old
  checkpoint): refused, pointing to --full-refresh;
- the settings baked into a stream's state (the table's window, slide and watermark, the anomaly
  thresholds, the shuffle partitions) are recorded in `<checkpoint>/_gold_settings.json` when
  the checkpoint is new; a start with other values is refused, pointing to --full-refresh.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from flight_gold.core.config import GoldConfig
from flight_gold.core.contract import gold_table
from flight_gold.core.paths import delta_commit, join
from flight_gold.spark.files import FileAccess
from flight_gold.spark.guards import LOCK_FILE, GuardError
from flight_gold.spark.offset_log import COMMITS, batch_ids, log_file, read_entries

log = logging.getLogger("flight_gold.spark.checkpoints")

SETTINGS_FILE = "_gold_settings.json"
SETTINGS_FORMAT = 1
# Folders Spark requires to be empty (temporary files and subfolders included) before batch 0.
FIRST_BATCH_FOLDERS = ("offsets", "commits", "state")
_THRESHOLD_NAMES = {
    "altitude_min_m": "ANOMALY_ALTITUDE_MIN_M",
    "altitude_max_m": "ANOMALY_ALTITUDE_MAX_M",
    "velocity_min_kmh": "ANOMALY_VELOCITY_MIN_KMH",
    "velocity_max_kmh": "ANOMALY_VELOCITY_MAX_KMH",
}
SHUFFLE_PARTITIONS = "GOLD_SHUFFLE_PARTITIONS"


class SettingsChangedError(GuardError):
    """A setting baked into the stream's state differs from the one its checkpoint started with."""


class GoldNotEmptyError(GuardError):
    """A new checkpoint next to a Gold table that already holds rows."""


def is_new(files: FileAccess, checkpoint: str) -> bool:
    """No offset logged: no batch ever started its run, so none can have been committed."""
    return not batch_ids(files, checkpoint)


def clear_first_batch_debris(files: FileAccess, checkpoint: str) -> list[str]:
    """Removes what a kill during a new checkpoint's first batch can leave, and returns what it
    removed: `offsets/`, `commits/`, `state/` (only when `offsets/` holds no numbered file) and a
    `metadata` that is empty or unparsable (then the next start writes a new query id; nothing
    was written under the old one). A checkpoint with a logged offset is never touched."""
    if not is_new(files, checkpoint):
        return []
    names = set(files.list(checkpoint) or [])
    removed = [f"{name}/" for name in FIRST_BATCH_FOLDERS if name in names]
    for name in FIRST_BATCH_FOLDERS:
        if name in names:
            files.delete(join(checkpoint, name))
    if "metadata" in names and not _readable_metadata(files, join(checkpoint, "metadata")):
        files.delete(join(checkpoint, "metadata"))
        removed.append("metadata")
    return removed


def _readable_metadata(files: FileAccess, path: str) -> bool:
    try:
        return bool(json.loads(files.read(path) or b"null").get("id"))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False


def clear_checkpoint(files: FileAccess, checkpoint: str) -> list[str]:
    """Deletes everything in a checkpoint folder except the lock file (which must stay: another
    process could otherwise lock a new file of the same name while this one holds the old)."""
    removed = []
    for name in sorted(files.list(checkpoint) or []):
        if name != LOCK_FILE:
            files.delete(join(checkpoint, name))
            removed.append(name)
    return removed


# -- the settings a checkpoint was started with ----------------------------------------------------


def stream_settings(config: GoldConfig, name: str) -> dict:
    """The settings baked into the state of the stream that writes Gold table `name`."""
    table = gold_table(name)
    settings = {
        "window": table.window,
        "slide": table.slide or table.window,
        "watermark": table.watermark,
        SHUFFLE_PARTITIONS: config.shuffle_partitions,
    }
    if name == "anomaly_alerts":
        for field, value in asdict(config.thresholds).items():
            settings[_THRESHOLD_NAMES[field]] = float(value)
    return settings


def _document(settings: dict, name: str) -> bytes:
    return (json.dumps({"format": SETTINGS_FORMAT, "table": name, **settings}, indent=2) + "\n").encode()


def _shuffle_partitions_in_use(files: FileAccess, checkpoint: str) -> int | None:
    """The partition count Spark recorded in the checkpoint's newest offset file (Spark keeps
    using it, whatever the session says)."""
    batches = batch_ids(files, checkpoint)
    if not batches:
        return None
    try:
        metadata = read_entries(files, log_file(checkpoint, batches[-1]))[0]
        return int(metadata["conf"]["spark.sql.shuffle.partitions"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def check_settings(files: FileAccess, config: GoldConfig, name: str) -> bytes | None:
    """Raises SettingsChangedError when this start's settings differ from the ones the stream's
    existing checkpoint was started with. Returns the settings document to write before the
    query starts (a new checkpoint, or one from before settings were recorded), else None."""
    checkpoint = config.paths.checkpoint(name)
    wanted = stream_settings(config, name)
    if is_new(files, checkpoint):
        return _document(wanted, name)
    path = join(checkpoint, SETTINGS_FILE)
    raw = files.read(path) if SETTINGS_FILE in (files.list(checkpoint) or []) else None
    recorded = None
    if raw is not None:
        try:
            recorded = json.loads(raw)
        except ValueError:
            log.warning("%s is unparsable: recording this start's settings again", path)
    if not isinstance(recorded, dict):
        in_use = _shuffle_partitions_in_use(files, checkpoint)
        if in_use is not None and in_use != wanted[SHUFFLE_PARTITIONS]:
            _refuse(name, checkpoint, SHUFFLE_PARTITIONS, in_use, wanted[SHUFFLE_PARTITIONS])
        log.warning(
            "checkpoint %s has no record of the settings it was started with (it predates them): "
            "recording this start's (%s); a later start with other values will be refused",
            checkpoint,
            ", ".join(f"{k} {v}" for k, v in wanted.items()),
        )
        return _document(wanted, name)
    for key, value in wanted.items():
        if key in recorded and recorded[key] != value:
            _refuse(name, checkpoint, key, recorded[key], value)
    return None if all(key in recorded for key in wanted) else _document(wanted, name)


def _refuse(name: str, checkpoint: str, key: str, old, new) -> None:
    raise SettingsChangedError(
        f"{key} of {name} is {new!r} but its checkpoint {checkpoint} was started with {old!r}: "
        f"the stream's open windows were computed with the old value, and mixing both would be "
        f"silently wrong. Nothing was written. Start with {key} {old!r} again, or run with "
        f"--full-refresh to rebuild {name} from all of Silver_ML with {new!r}"
    )


def write_settings(files: FileAccess, config: GoldConfig, name: str, document: bytes) -> None:
    files.write(join(config.paths.checkpoint(name), SETTINGS_FILE), document)


def nothing_due_after_a_stop(files: FileAccess, checkpoint: str, silver: str) -> bool:
    """Whether a query stopped now and started again writes every window its watermark closed
    without waiting for Silver_ML's next commit.

    Spark writes the windows a batch's watermark closed in the batch after it, one without data
    that it runs only after a batch of the same start: a new start runs no batch before its source
    has new data. So a stop is safe when Silver_ML holds a commit past the end of the checkpoint's
    newest planned batch (the next start reads it, with the watermark the commit log kept), or
    when that batch is committed and moved no watermark (no batch is due). Not while a batch that
    reads Silver_ML to its end is in flight: it may commit before the stop lands."""
    batches = batch_ids(files, checkpoint)
    if not batches:
        return True
    newest = batches[-1]
    try:
        planned, end = read_entries(files, log_file(checkpoint, newest))[:2]
        # index -1: every file of the versions before reservoirVersion was read; otherwise the
        # batch ended inside reservoirVersion, which may or may not have files left.
        unread = int(end["reservoirVersion"]) + (0 if int(end.get("index", -1)) == -1 else 1)
    except (IndexError, ValueError, KeyError, TypeError):
        return False
    if files.exists(delta_commit(silver, unread)):
        return True
    if not files.exists(log_file(checkpoint, newest, COMMITS)):
        return False
    try:
        committed = read_entries(files, log_file(checkpoint, newest, COMMITS))[0]
        return int(committed["nextBatchWatermarkMs"]) <= int(planned["batchWatermarkMs"])
    except (IndexError, ValueError, KeyError, TypeError):
        return False
