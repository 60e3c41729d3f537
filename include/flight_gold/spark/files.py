"""File access for the job's guards: Hadoop's FileSystem through the Spark session's JVM in the
job (the same code path and credentials for a local root and for s3a://), the local file system
in tests. Both answer the same small FileAccess interface."""

from __future__ import annotations

import os
from typing import Protocol


class FileAccess(Protocol):
    def list(self, directory: str) -> list[str] | None:
        """Names in `directory`, or None when it does not exist."""

    def read(self, path: str) -> bytes: ...

    def size(self, path: str) -> int: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes: ...


class LocalFiles:
    def list(self, directory: str) -> list[str] | None:
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return None

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)


class HadoopFiles:
    """Hadoop FileSystem through the Spark session's JVM: file://, s3a://, with Spark's settings."""

    def __init__(self, spark) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, path: str):
        p = self._jvm.org.apache.hadoop.fs.Path(path)
        return p, p.getFileSystem(self._conf)

    def list(self, directory: str) -> list[str] | None:
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

    def read(self, path: str) -> bytes:
        p, fs = self._fs(path)
        stream = fs.open(p)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def size(self, path: str) -> int:
        p, fs = self._fs(path)
        return fs.getFileStatus(p).getLen()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        p, fs = self._fs(path)
        stream = fs.open(p)
        try:
            stream.seek(offset)
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream, length))
        finally:
            stream.close()
