"""Small JSON documents beside the tables (the alert ledger, the stream's control and health
files), on the local disk or on S3 with the lakehouse's settings. A write replaces the whole
document atomically: a reader sees the old or the new one, never half of one."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from flight_gold.core.config import GoldConfig
from flight_gold.core.paths import is_s3
from flight_gold.core.s3 import S3Access


class DocumentStore:
    """One document at `uri` (a local path, file://, s3a:// or s3://)."""

    def __init__(self, uri: str, config: GoldConfig):
        self.uri = uri
        self.config = config

    def read_text(self) -> str | None:
        """The document, or None when there is none."""
        if not is_s3(self.uri):
            try:
                with open(self._local_path(), encoding="utf-8") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None
        fs, path = self._s3()
        try:
            with fs.open_input_stream(path) as handle:
                return handle.read().decode("utf-8")
        except FileNotFoundError:
            return None

    def write_text(self, text: str) -> None:
        data = text.encode("utf-8")
        if not is_s3(self.uri):
            # Written beside, flushed to disk, then renamed over.
            path = self._local_path()
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            temporary = f"{path}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
            return
        # An S3 PUT replaces an object atomically.
        fs, path = self._s3()
        with fs.open_output_stream(path) as handle:
            handle.write(data)

    def delete(self) -> bool:
        """Removes the document; False when there was none."""
        if not is_s3(self.uri):
            try:
                os.remove(self._local_path())
                return True
            except FileNotFoundError:
                return False
        fs, path = self._s3()
        from pyarrow.fs import FileType

        if fs.get_file_info(path).type == FileType.NotFound:
            return False
        fs.delete_file(path)
        return True

    def read_json(self) -> Any:
        text = self.read_text()
        return None if text is None else json.loads(text)

    def write_json(self, document: Any) -> None:
        self.write_text(json.dumps(document, indent=2) + "\n")

    def _local_path(self) -> str:
        return self.uri[len("file://") :] if self.uri.startswith("file://") else self.uri

    def _s3(self):
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(**S3Access.of(self.config).pyarrow_options()), self.uri.split("://", 1)[1]
