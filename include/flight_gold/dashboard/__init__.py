"""The Flight Gold dashboard: a read model of the Gold tables (model), what the page shows
(queries), the FastAPI app the Airflow plugin mounts (app) and its page (static/). No JVM; only
app.py imports Airflow."""

from flight_gold.dashboard.model import (
    CACHE_SPAN,
    COLUMNS,
    GoldCache,
    GoldTables,
    TableState,
    TimeRange,
    open_table_state,
)
from flight_gold.dashboard.queries import (
    DEFAULT_RANGE,
    MAX_SPAN,
    RANGE_PRESETS,
    DashboardInputError,
    alert_settings,
    anomaly_rates,
    breaches,
    empty_state,
    expected_lag_seconds,
    freshness,
    last_alert,
    page,
    phase_counts,
    resolve_range,
)

__all__ = [
    "CACHE_SPAN",
    "COLUMNS",
    "DEFAULT_RANGE",
    "MAX_SPAN",
    "RANGE_PRESETS",
    "DashboardInputError",
    "GoldCache",
    "GoldTables",
    "TableState",
    "TimeRange",
    "alert_settings",
    "anomaly_rates",
    "breaches",
    "empty_state",
    "expected_lag_seconds",
    "freshness",
    "last_alert",
    "open_table_state",
    "page",
    "phase_counts",
    "resolve_range",
]
