"""The alert check's settings: threshold, minimum observations, list length, ledger location and
recipients, from the environment (and the DAG run's params), validated with a message that names
the setting."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from flight_gold.core.config import ConfigError, GoldConfig
from flight_gold.core.contract import ANOMALY_ALERTS

SLACK_CONN_ID = "slack_alerts"
SMTP_CONN_ID = "smtp_alerts"
EMAIL_TO_ENV = "ALERT_EMAIL_TO"
EMAIL_FROM_ENV = "ALERT_EMAIL_FROM"
SCHEDULE_ENV = "GOLD_ALERTS_SCHEDULE"
THRESHOLD_ENV = "GOLD_ALERTS_THRESHOLD"
MIN_OBSERVATIONS_ENV = "GOLD_ALERTS_MIN_OBSERVATIONS"
MAX_ROWS_ENV = "GOLD_ALERTS_MAX_ROWS"
LEDGER_ENV = "GOLD_ALERTS_LEDGER"

DEFAULT_SCHEDULE = "*/5 * * * *"
DEFAULT_THRESHOLD = 0.1
DEFAULT_MIN_OBSERVATIONS = 1
DEFAULT_MAX_ROWS = 20
# Keeps a Slack message far below its 40,000-character limit.
MAX_ROWS_LIMIT = 100
LEDGER_FILE = "gold_anomaly_alerts.json"
LEDGER_FORMAT = 1

SLACK = "slack"
EMAIL = "email"

# What "alerted once" is about: one window of one country.
KEY_COLUMNS = ANOMALY_ALERTS.key_columns
ALERT_COLUMNS = (
    *KEY_COLUMNS,
    "total_observations",
    "altitude_anomalies",
    "velocity_anomalies",
    "anomaly_rate",
    "max_altitude",
    "max_velocity",
)


class AlertConfigError(ConfigError):
    """The alert settings or channels are missing or malformed; the message says which."""


class AlertDeliveryError(RuntimeError):
    """At least one channel failed to send; the ledger kept what the others delivered."""


@dataclass(frozen=True)
class AlertSettings:
    threshold: float = DEFAULT_THRESHOLD
    min_observations: int = DEFAULT_MIN_OBSERVATIONS
    max_rows: int = DEFAULT_MAX_ROWS
    # None: <lakehouse root>/_alerts/gold_anomaly_alerts.json
    ledger_uri: str | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, (int, float))
            or not 0 <= self.threshold < 1
        ):
            raise AlertConfigError(
                f"threshold must be a fraction in [0, 1) (0.1 means 10%), got {self.threshold!r}"
            )
        if (
            isinstance(self.min_observations, bool)
            or not isinstance(self.min_observations, int)
            or self.min_observations < 1
        ):
            raise AlertConfigError(f"min_observations must be an integer >= 1, got {self.min_observations!r}")
        if (
            isinstance(self.max_rows, bool)
            or not isinstance(self.max_rows, int)
            or not 1 <= self.max_rows <= MAX_ROWS_LIMIT
        ):
            raise AlertConfigError(
                f"max_rows must be an integer in [1, {MAX_ROWS_LIMIT}], got {self.max_rows!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get(THRESHOLD_ENV, "").strip():
            values["threshold"] = _number(env[THRESHOLD_ENV], THRESHOLD_ENV)
        if env.get(MIN_OBSERVATIONS_ENV, "").strip():
            values["min_observations"] = _integer(env[MIN_OBSERVATIONS_ENV], MIN_OBSERVATIONS_ENV)
        if env.get(MAX_ROWS_ENV, "").strip():
            values["max_rows"] = _integer(env[MAX_ROWS_ENV], MAX_ROWS_ENV)
        if env.get(LEDGER_ENV, "").strip():
            values["ledger_uri"] = env[LEDGER_ENV].strip()
        try:
            return cls(**values)
        except AlertConfigError as exc:
            raise AlertConfigError(
                f"{exc} (from the environment: {THRESHOLD_ENV}, {MIN_OBSERVATIONS_ENV}, {MAX_ROWS_ENV})"
            ) from None

    def with_params(self, params: Mapping[str, Any] | None) -> AlertSettings:
        """The DAG run's params (threshold, min_observations, max_rows) over these settings."""
        params = params or {}
        changes: dict[str, Any] = {}
        if params.get("threshold") is not None:
            changes["threshold"] = _number(params["threshold"], "param threshold")
        for name in ("min_observations", "max_rows"):
            if params.get(name) is not None:
                changes[name] = _integer(params[name], f"param {name}")
        return replace(self, **changes)

    def ledger_location(self, config: GoldConfig) -> str:
        return self.ledger_uri or config.paths.alerts(LEDGER_FILE)


def schedule_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(SCHEDULE_ENV, "").strip() or DEFAULT_SCHEDULE


def email_recipients(env: Mapping[str, str] | None = None) -> list[str]:
    """ALERT_EMAIL_TO, comma-separated; [] when unset."""
    env = os.environ if env is None else env
    recipients = [item.strip() for item in env.get(EMAIL_TO_ENV, "").split(",") if item.strip()]
    bad = [item for item in recipients if not re.fullmatch(r"[^@\s]+@[^@\s]+", item)]
    if bad:
        raise AlertConfigError(f"{EMAIL_TO_ENV} holds something that is not an email address: {bad[0]!r}")
    return recipients


def _number(raw: Any, name: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise AlertConfigError(f"{name} must be a number, got {raw!r}") from None


def _integer(raw: Any, name: str) -> int:
    try:
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        return int(str(raw).strip())
    except (TypeError, ValueError):
        raise AlertConfigError(f"{name} must be an integer, got {raw!r}") from None
