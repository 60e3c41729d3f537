"""Start-up guards of the Gold job: each refuses to start, before any query runs and anything is
written, when running would lose or double a window.

- CheckpointLock: one job per checkpoint. A second instance on the same checkpoints would replay
  the same batches against the same state and Gold tables.
- check_checkpoint_source: a checkpoint records the id of the Silver_ML table it read (Delta's
  `reservoirId`); a table deleted and re-created at the same path has another id, and the recorded
  offsets mean nothing in it.
- validate_delta_log: a truncated or unparsable commit in Silver_ML's `_delta_log` makes Delta fail
  with a long stack trace deep in a query; this names the file instead.

Files are read through flight_gold.spark.files (Hadoop's FileSystem in the job, the local file
system in tests).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass

from flight_gold.core.config import GoldConfig
from flight_gold.core.paths import commit_versions, delta_commit, delta_log, join
from flight_gold.spark.files import FileAccess, HadoopFiles
from flight_gold.spark.offset_log import batch_ids, log_file, read_entries

log = logging.getLogger("flight_gold.spark.guards")

LOCK_FILE = "_gold_job.lock"
# Who holds a checkpoint lock: the Gold stream for its whole run, or the maintenance job for
# the time of one OPTIMIZE of that checkpoint's table (local roots only).
STREAM_ROLE, MAINTENANCE_ROLE = "stream", "maintenance"
# How long a starting stream waits for a maintenance job's OPTIMIZE to end.
MAINTENANCE_WAIT_S = 120.0
# Actions a Delta commit may hold (protocol spec); a line with none of them is not a commit line.
DELTA_ACTIONS = frozenset(
    {
        "commitInfo",
        "metaData",
        "protocol",
        "add",
        "remove",
        "txn",
        "cdc",
        "domainMetadata",
        "checkpointMetadata",
        "sidecar",
    }
)
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d{10}\.\d{10}|\.[^.]+)?\.parquet$")


class GuardError(RuntimeError):
    """The job must not start; the message says why and what to do."""


class CheckpointInUseError(GuardError):
    """Another running instance holds the checkpoint."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}

    @property
    def role(self) -> str:
        # A record from before roles existed was written by a Gold stream.
        return str(self.holder.get("role", STREAM_ROLE))


class CheckpointBusyError(GuardError):
    """A maintenance job held the checkpoint for longer than the stream waits: a retry starts."""


class CheckpointMismatchError(GuardError):
    """The checkpoint was written for another Silver_ML table than the one at the path now."""


class DeltaLogError(GuardError):
    """An entry of Silver_ML's _delta_log cannot be read."""


# -- one instance per checkpoint -----------------------------------------------------------------


@dataclass
class CheckpointLock:
    """An exclusive fcntl lock on `<checkpoint>/_gold_job.lock`, held for the life of the process.

    The kernel drops it when the process ends, however it ends (kill -9 included), so a restart
    after a crash never finds a stale lock. The file itself is never deleted: deleting it would let
    two processes lock two different files of the same name.

    fcntl needs a local (or NFS) file: for an s3a:// checkpoint the lock file lives in the local
    temp folder, keyed by the checkpoint URI, so it only keeps a second instance off the same host.
    """

    checkpoint: str
    local: bool
    role: str = STREAM_ROLE
    _fd: int | None = None

    @property
    def path(self) -> str:
        if self.local:
            return os.path.join(self.checkpoint, LOCK_FILE)
        digest = hashlib.sha256(self.checkpoint.encode()).hexdigest()[:24]
        return os.path.join(tempfile.gettempdir(), "flight-gold-locks", f"{digest}.lock")

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            what = "maintenance job" if holder.get("role") == MAINTENANCE_ROLE else "Gold job"
            raise CheckpointInUseError(
                f"checkpoint {self.checkpoint} is in use by another running {what} "
                f"({_describe_holder(holder)}); only one job may run per checkpoint: stop that "
                f"job first (or leave it running)",
                holder,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "role": self.role,
                }
            ).encode(),
            0,
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return info if isinstance(info, dict) else {}
    except (ValueError, OSError):
        return {}


def _describe_holder(info: dict) -> str:
    try:
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except KeyError:
        return "holder unknown"


def lock_checkpoints(
    config: GoldConfig, wait_s: float = MAINTENANCE_WAIT_S, poll_s: float = 0.5
) -> list[CheckpointLock]:
    """Locks the checkpoint of every configured query, or none.

    A checkpoint held by a maintenance job (an OPTIMIZE of that table, minutes at most) is
    waited for, up to `wait_s` seconds (then CheckpointBusyError: a retry will start); one held
    by another Gold stream raises CheckpointInUseError at once."""
    if config.is_s3:
        log.warning(
            "checkpoints on object storage: the single-instance lock only covers this host; "
            "run at most one Gold job per checkpoint (the Airflow DAG runs one at a time)"
        )
    locks: list[CheckpointLock] = []
    try:
        for name in config.queries:
            lock = CheckpointLock(config.paths.checkpoint(name), local=not config.is_s3)
            _acquire_waiting_for_maintenance(lock, wait_s, poll_s)
            locks.append(lock)
    except GuardError:
        for lock in locks:
            lock.release()
        raise
    return locks


def _acquire_waiting_for_maintenance(lock: CheckpointLock, wait_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + wait_s
    logged = False
    stream_seen = 0
    while True:
        try:
            lock.acquire()
            return
        except CheckpointInUseError as exc:
            if exc.role != MAINTENANCE_ROLE:
                # Seen twice, so that the record a new holder has not yet replaced (it writes
                # it right after taking the lock) cannot pass for another stream.
                stream_seen += 1
                if stream_seen >= 2:
                    raise
                time.sleep(poll_s)
                continue
            stream_seen = 0
            if time.monotonic() >= deadline:
                raise CheckpointBusyError(
                    f"checkpoint {lock.checkpoint} is still held by a maintenance job "
                    f"({_describe_holder(exc.holder)}) after {wait_s:.0f} s; start the job again "
                    f"once it has finished (an Airflow retry does)"
                ) from None
            elif not logged:
                log.warning(
                    "checkpoint %s is held by a maintenance job (%s): waiting up to %.0f s for it",
                    lock.checkpoint,
                    _describe_holder(exc.holder),
                    wait_s,
                )
                logged = True
        time.sleep(poll_s)


# -- the checkpoint belongs to this Silver_ML table ----------------------------------------------


def latest_source_offset(files: FileAccess, checkpoint: str) -> dict | None:
    """The Delta source offset of the checkpoint's latest batch ({"reservoirId", "reservoirVersion",
    ...}), or None before the first batch."""
    batches = batch_ids(files, checkpoint)
    if not batches:
        return None
    path = log_file(checkpoint, batches[-1])
    try:
        return read_entries(files, path)[1]
    except (IndexError, ValueError):
        raise GuardError(
            f"checkpoint offset file {path} cannot be parsed; the checkpoint is damaged: "
            f"move {checkpoint} aside together with its Gold table, then start again"
        ) from None


def checkpoint_watermarks(files: FileAccess, checkpoint: str, last: int = 2) -> dict[int, int]:
    """{batch id: watermark in ms} of the checkpoint's `last` newest batches (their offset files'
    `batchWatermarkMs`), for the late-row count of the first batch after a restart."""
    result = {}
    for batch in batch_ids(files, checkpoint)[-last:]:
        try:
            result[batch] = int(read_entries(files, log_file(checkpoint, batch))[0]["batchWatermarkMs"])
        except (IndexError, ValueError, KeyError, TypeError):
            continue
    return result


def check_checkpoint_source(files: FileAccess, config: GoldConfig, silver_table_id: str) -> None:
    silver = config.paths.silver_flights_ml
    for name in config.queries:
        checkpoint = config.paths.checkpoint(name)
        offset = latest_source_offset(files, checkpoint)
        if offset is None or offset.get("reservoirId") in (None, silver_table_id):
            continue
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint} belongs to another Silver_ML table (table id "
            f"{offset['reservoirId']}) than the one now at {silver} (table id {silver_table_id}): "
            f"the table was deleted and re-created, and the checkpoint's offsets mean nothing in the "
            f"new one. Nothing was written. To keep the old results and its offsets, restore the old "
            f"table; to process the new table from its start, run with --full-refresh (it deletes "
            f"the Gold rows of the old table with the checkpoint), or move aside both the checkpoint "
            f"{checkpoint} and the Gold table {config.paths.gold_table(name)} (its windows came from "
            f"the old table), then start the job again"
        )


# -- Silver_ML's _delta_log is readable ------------------------------------------------------------


def clear_unborn_delta_log(files: HadoopFiles, table: str) -> bool:
    """Removes a `_delta_log` that holds folders and no file, which is what a kill during the
    table's very first creation leaves (`_delta_log/_staged_commits/`): Delta then takes the
    folder for a table and refuses both to read and to create it. With no file there is no
    commit, so nothing is lost. True when it removed one."""
    log_dir = delta_log(table)
    if not files.only_folders(log_dir):
        return False
    files.delete_tree(log_dir)
    return True


def validate_delta_log(
    files: FileAccess, table: str, from_version: int | None = None, replay_span: int | None = None
) -> int | None:
    """Checks the log entries Delta will read: every commit after the newest checkpoint (the
    snapshot) and the commits from `from_version` on that a resuming stream replays; with
    `replay_span`, only the first `replay_span` + 1 of them (what its first batch can read: the
    source admits at most maxFilesPerTrigger files a batch, one file a commit at least). Later
    commits are read batch by batch; a damaged one then stops the stream with Delta's own error.

    Raises DeltaLogError naming the first bad file; returns the table's latest version (None if the
    log has no commit)."""
    log_dir = delta_log(table)
    names = files.list(log_dir) or []
    commits = commit_versions(names)
    checkpoints: dict[int, list[str]] = {}
    for name in names:
        m = _CHECKPOINT.match(name)
        if m:
            checkpoints.setdefault(int(m.group(1)), []).append(name)
    if not commits and not checkpoints:
        return None
    latest = max(commits[-1] if commits else -1, max(checkpoints, default=-1))
    snapshot_checkpoint = max((v for v in checkpoints if v <= latest), default=None)
    start = 0 if snapshot_checkpoint is None else snapshot_checkpoint + 1
    if from_version is not None:
        start = min(start, from_version)
    if snapshot_checkpoint is not None:
        for name in checkpoints[snapshot_checkpoint]:
            _check_parquet(files, join(log_dir, name))

    replay_end = None if from_version is None or replay_span is None else from_version + replay_span
    snapshot_start = 0 if snapshot_checkpoint is None else snapshot_checkpoint + 1

    def read_first(v: int) -> bool:
        return v >= snapshot_start or replay_end is None or v <= replay_end

    previous = None
    for version in (v for v in commits if v >= start and read_first(v)):
        if previous is not None and version != previous + 1 and read_first(previous + 1):
            raise DeltaLogError(
                f"Silver_ML's _delta_log in {log_dir} is missing commit "
                f"{previous + 1:020d}.json (the commits jump to {version:020d}.json). {_FIX}"
            )
        previous = version
        _check_commit(files, delta_commit(table, version))
    return latest


def table_id_from_log(files: FileAccess, table: str) -> str | None:
    """The table id of a Delta table's metaData action: from version 0's commit (one small read),
    else from the newest checkpoint's metaData column; None when neither answers."""
    log_dir = delta_log(table)
    try:
        for line in files.read(delta_commit(table, 0)).decode("utf-8").splitlines():
            action = json.loads(line) if line.strip() else {}
            if isinstance(action, dict) and "metaData" in action:
                return str(action["metaData"]["id"])
    except Exception:  # cleaned up, or unreadable: the checkpoint may answer
        pass
    import io

    import pyarrow.parquet as pq

    names = files.list(log_dir) or []
    checkpoints = sorted((int(m.group(1)), name) for name in names if (m := _CHECKPOINT.match(name)))
    for _version, name in reversed(checkpoints):
        try:
            column = pq.read_table(io.BytesIO(files.read(join(log_dir, name))), columns=["metaData"]).column(
                0
            )
        except Exception:
            continue
        for value in column.to_pylist():
            if value and value.get("id"):
                return str(value["id"])
    return None


def _check_commit(files: FileAccess, path: str) -> None:
    data = files.read(path)
    if not data.strip():
        raise DeltaLogError(
            f"Silver_ML log entry {path} is empty (a truncated commit); Delta cannot read the table. {_FIX}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DeltaLogError(
            f"Silver_ML log entry {path} is not UTF-8 text (an unparsable commit); {_FIX}"
        ) from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except ValueError as exc:
            raise DeltaLogError(
                f"Silver_ML log entry {path} is truncated or unparsable at line {number}: {exc.msg}. {_FIX}"
            ) from None
        if not isinstance(action, dict) or not (DELTA_ACTIONS & action.keys()):
            raise DeltaLogError(f"Silver_ML log entry {path} line {number} is no Delta action. {_FIX}")


def _check_parquet(files: FileAccess, path: str) -> None:
    size = files.size(path)
    if size < 12 or files.read_range(path, 0, 4) != b"PAR1" or files.read_range(path, size - 4, 4) != b"PAR1":
        raise DeltaLogError(f"Silver_ML log checkpoint {path} is truncated (no Parquet footer). {_FIX}")


_FIX = (
    "The Gold job read nothing and wrote nothing. Repair the table upstream (restore the file "
    "from a backup, or have the writer rewrite that version), then start the job again"
)
