"""Airflow plugin "Flight Gold": a live dashboard of the Gold tables in the Airflow UI.

Airflow 3.1+ plugin interface: `fastapi_apps` mounts the dashboard app in the API server under
/flight-gold (routes, page and static files all require an Airflow login), and `external_views`
adds "Flight Gold" to the UI's navigation, which shows the page in an iframe at /plugin/flight-gold.
The app and the data logic live in include/flight_gold/dashboard/.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

ROUTE = "flight-gold"


class LazyDashboardApp:
    """ASGI app that builds the dashboard's FastAPI app on its first request.

    Every Airflow process loads every plugin file (task processes do, for macros); only the API
    server serves this app, so only it pays for the API server and data imports."""

    def __init__(self) -> None:
        self._app = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            from flight_gold.dashboard.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "flight_gold.dashboard.app:create_app()"


class FlightGoldDashboardPlugin(AirflowPlugin):
    name = "Flight Gold"
    fastapi_apps = [{"app": LazyDashboardApp(), "url_prefix": f"/{ROUTE}", "name": "Flight Gold"}]
    external_views = [
        {
            "name": "Flight Gold",
            # Relative to the UI's base URL, so that a non-root [api] base_url keeps working.
            "href": f"{ROUTE}/",
            "url_route": ROUTE,
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{ROUTE}/static/icon.svg",
        }
    ]
