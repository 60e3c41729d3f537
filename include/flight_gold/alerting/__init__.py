"""Anomaly-rate alerts on the Gold table `anomaly_alerts`: find the windows whose anomaly_rate is
above a threshold and send each one, exactly once, to Slack and by email.

Nothing in this package imports Airflow: the Slack and email channels live in
flight_gold.airflow.channels, and the DAG `gold_anomaly_alerts` is the thin wiring around
`run_check`. Modules: settings, breaches (selection), changes (reading what is new), ledger,
messages, check.

How "each breach once" holds:

- The Gold table is append-only (Spark's append output mode writes a window once, when the
  watermark passes its end). The ledger keeps `version`: every breach in Gold commits up to that
  version has been delivered on every channel. A run reads only the rows added after it, with the
  Delta change feed of `deltalake` (`load_cdf`), which on a table without CDF enabled returns the
  rows of the files appended with dataChange=true: OPTIMIZE's rewritten files are not new rows and
  do not come back.
- A full refresh of the Gold stream (`--full-refresh`) deletes every row (one DELETE commit, seen
  as "delete" changes and ignored) and appends every window again. Inserted rows whose window
  ends at or before `max_window_end` are therefore not new: append mode writes windows in the
  order of their end, so in normal operation no new window ends that early, and after a refresh
  the windows already alerted are not alerted again.
- Delivery is tracked per channel. `sent_after_version` holds, for each channel, the breaches it
  already received from commits after `version`; it is written as soon as a channel succeeded.
  `version` moves forward (and `sent_after_version` empties) only once every configured channel
  has everything. A channel that failed makes the run fail, and the retry sends it what it still
  lacks while the other channel, already served, sends nothing again.
- When the commits after `version` cannot be read any more (VACUUM removed their files, the log
  was cleaned up, or the table was recreated), the run falls back to the current snapshot and
  keeps the windows ending after `max_window_end`, the latest window end seen so far: append mode
  writes windows in the order of their end, so those are the ones not yet seen.

The ledger is a small JSON file beside the lakehouse tables (`<root>/_alerts/...`, local or S3),
rewritten atomically; `cat` shows where alerting stands.
"""

from __future__ import annotations

from flight_gold.alerting.breaches import Breach, BreachKey, select_breaches, sort_breaches
from flight_gold.alerting.changes import NewRows, read_new_rows
from flight_gold.alerting.check import Channel, run_check
from flight_gold.alerting.ledger import Ledger, LedgerError, LedgerStore
from flight_gold.alerting.messages import (
    AlertContext,
    EmailContent,
    format_email,
    format_slack,
    percent,
    threshold_text,
    window_text,
)
from flight_gold.alerting.settings import (
    ALERT_COLUMNS,
    EMAIL,
    KEY_COLUMNS,
    LEDGER_ENV,
    MAX_ROWS_ENV,
    MAX_ROWS_LIMIT,
    MIN_OBSERVATIONS_ENV,
    SCHEDULE_ENV,
    SLACK,
    THRESHOLD_ENV,
    AlertConfigError,
    AlertDeliveryError,
    AlertSettings,
    email_recipients,
    schedule_from_env,
)

__all__ = [
    "ALERT_COLUMNS",
    "EMAIL",
    "KEY_COLUMNS",
    "LEDGER_ENV",
    "MAX_ROWS_ENV",
    "MAX_ROWS_LIMIT",
    "MIN_OBSERVATIONS_ENV",
    "SCHEDULE_ENV",
    "SLACK",
    "THRESHOLD_ENV",
    "AlertConfigError",
    "AlertContext",
    "AlertDeliveryError",
    "AlertSettings",
    "Breach",
    "BreachKey",
    "Channel",
    "EmailContent",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "NewRows",
    "email_recipients",
    "format_email",
    "format_slack",
    "percent",
    "read_new_rows",
    "run_check",
    "schedule_from_env",
    "select_breaches",
    "sort_breaches",
    "threshold_text",
    "window_text",
]
