"""How every client of the lakehouse reaches S3: Spark's S3A, delta-rs and pyarrow all take the
endpoint and path style from GoldConfig, and the credentials and region from the standard AWS
environment variables, read when they connect (never stored in the configuration)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Access:
    endpoint: str | None
    path_style: bool
    region: str
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    @classmethod
    def of(cls, config: Any, env: Mapping[str, str] | None = None) -> S3Access:
        """From a GoldConfig (endpoint, path style) and the environment (credentials, region)."""
        env = os.environ if env is None else env
        return cls(
            endpoint=config.s3_endpoint or None,
            path_style=config.s3_path_style_access,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
        )

    def delta_rs_options(self) -> dict[str, str]:
        """deltalake's storage_options."""
        options = {
            "AWS_ALLOW_HTTP": "true" if (self.endpoint or "").startswith("http://") else "false",
            # Each table delta-rs writes here has one writer (the feed, or the job's own tables).
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
            "AWS_REGION": self.region,
        }
        if self.endpoint:
            options["AWS_ENDPOINT_URL"] = self.endpoint
        if self.path_style:
            options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        for key, value in (
            ("AWS_ACCESS_KEY_ID", self.access_key),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key),
            ("AWS_SESSION_TOKEN", self.session_token),
        ):
            if value:
                options[key] = value
        return options

    def pyarrow_options(self) -> dict[str, Any]:
        """pyarrow.fs.S3FileSystem's keyword arguments."""
        kwargs: dict[str, Any] = {"region": self.region}
        if self.access_key and self.secret_key:
            kwargs.update(
                access_key=self.access_key, secret_key=self.secret_key, session_token=self.session_token
            )
        if self.endpoint:
            scheme, separator, host = self.endpoint.partition("://")
            kwargs.update(
                endpoint_override=(host if separator else scheme).rstrip("/"),
                scheme=scheme if separator else "https",
            )
        if not self.path_style:
            kwargs["force_virtual_addressing"] = True
        return kwargs
