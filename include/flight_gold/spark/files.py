"""File access for the job's guards and pollers, one small FileAccess interface: HadoopFiles in the
job (Hadoop's FileSystem through the Spark session's JVM, with Spark's settings and credentials,
for s3a://; the operating system's calls for a local root, as a Py4J round trip per call costs
~1 ms and a start may read thousands of commits), LocalFiles in tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Protocol

from flight_gold.core.paths import commit_versions, delta_log


class FileAccess(Protocol):
    def list(self, directory: str) -> list[str] | None:
        """Names in `directory`, or None when it does not exist."""

    def read(self, path: str) -> bytes: ...

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes: ...

    def write(self, path: str, data: bytes) -> None:
        """Replaces `path` with `data` whole: a reader sees the old content or the new one."""

    def delete(self, path: str) -> bool:
        """Deletes a file or a folder with everything in it; False when nothing was there."""


def commits_newest_first(files: FileAccess, table: str) -> list[int]:
    """The versions of `table`'s JSON commits, newest first (none when its log is missing): where
    the readers that walk back from a table's head start."""
    return commit_versions(files.list(delta_log(table)) or [])[::-1]


def _write_local(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class LocalFiles:
    def list(self, directory: str) -> list[str] | None:
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return None

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def write(self, path: str, data: bytes) -> None:
        _write_local(path, data)

    def delete(self, path: str) -> bool:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            return True
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False


def _local_path(path: str) -> str | None:
    """The operating system's path of a local one (plain or file://); None for other schemes."""
    if "://" not in path:
        return path
    return path.removeprefix("file://") if path.startswith("file://") else None


class HadoopFiles:
    """Hadoop FileSystem through the Spark session's JVM: file://, s3a://, with Spark's settings."""

    def __init__(self, spark) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, path: str):
        p = self._jvm.org.apache.hadoop.fs.Path(path)
        return p, p.getFileSystem(self._conf)

    def list(self, directory: str) -> list[str] | None:
        if (local := _local_path(directory)) is not None:
            # One os.listdir. Through Py4J every entry costs three round trips (seconds for a
            # _delta_log of 20,000 commits).
            return LocalFiles().list(local)
        p, fs = self._fs(directory)
        if not fs.exists(p):
            return None
        return [status.getPath().getName() for status in fs.listStatus(p)]

    def only_folders(self, directory: str) -> bool:
        """Whether `directory` exists and holds no file anywhere below it (empty folders only)."""
        p, fs = self._fs(directory)
        return fs.exists(p) and not fs.listFiles(p, True).hasNext()

    def delete_tree(self, directory: str) -> None:
        p, fs = self._fs(directory)
        fs.delete(p, True)

    def delete(self, path: str) -> bool:
        p, fs = self._fs(path)
        return bool(fs.delete(p, True))

    def write(self, path: str, data: bytes) -> None:
        if (local := _local_path(path)) is not None:
            # A rename makes the replacement atomic (Hadoop's local create is not).
            _write_local(local, data)
            return
        # An object store's PUT is atomic: the object appears whole when the stream closes.
        p, fs = self._fs(path)
        out = fs.create(p, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def read(self, path: str) -> bytes:
        if (local := _local_path(path)) is not None:
            # One read, not a Py4J round trip per call (the job's pollers read small checkpoint
            # and log files several times a second, the start thousands of commits).
            return LocalFiles().read(local)
        p, fs = self._fs(path)
        stream = fs.open(p)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def exists(self, path: str) -> bool:
        if (local := _local_path(path)) is not None:
            return LocalFiles().exists(local)
        p, fs = self._fs(path)
        return bool(fs.exists(p))

    def size(self, path: str) -> int:
        if (local := _local_path(path)) is not None:
            return LocalFiles().size(local)
        p, fs = self._fs(path)
        return fs.getFileStatus(p).getLen()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if (local := _local_path(path)) is not None:
            return LocalFiles().read_range(local, offset, length)
        p, fs = self._fs(path)
        stream = fs.open(p)
        try:
            stream.seek(offset)
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream, length))
        finally:
            stream.close()
