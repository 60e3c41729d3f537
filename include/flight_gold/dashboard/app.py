"""The Flight Gold dashboard as a FastAPI app, mounted by the Airflow plugin
(plugins/flight_gold_dashboard.py) in the Airflow API server under /flight-gold.

Every route, the page and its static files included, requires an authenticated Airflow user
through Airflow's own dependency (`requires_authenticated`): the UI's session cookie or a
`Authorization: Bearer` token from POST /auth/token. FastAPI plugin apps are not protected by
default, hence the app-wide dependency.

JSON endpoints (query: `range`=15m|1h|...|7d, or `start`/`end` in ISO 8601):
    GET api/dashboard        everything the page shows, from one opening of each table
    GET api/phase-counts     observations per flight phase per minute
    GET api/anomaly-rates    anomaly_rate per country and window (heat-map cells)
    GET api/breaches         the windows the alert DAG sends (select_breaches), last alert
    GET api/freshness        newest window and lag of each Gold table (no range)
    GET api/streaming-run    the latest run of the gold_streaming DAG (no range)
    GET api/stream-health    the stream's state, restarts in 24 h, last failure, lag behind Silver_ML
    GET api/stream-metrics   per-batch metrics of the job (rows/s, batch duration, state, late rows),
                             by batch time (wall clock) in the range
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_authenticated
from fastapi import Depends, FastAPI, Query, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse

from flight_gold import dashboard
from flight_gold.airflow.defaults import STREAMING_DAG_ID
from flight_gold.core.config import ConfigError, GoldConfig
from flight_gold.core.times import iso, utcnow
from flight_gold.dashboard import stream

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# One per API server process: the page refreshes every 30 s, and each refresh then reads only the
# Gold commits added since the previous one.
CACHE = dashboard.GoldCache()

RangeParam = Annotated[
    str | None, Query(alias="range", description="15m, 1h (default), 3h, 6h, 12h, 24h, 2d...")
]
StartParam = Annotated[str | None, Query(description="ISO 8601 start (inclusive), instead of range")]
EndParam = Annotated[str | None, Query(description="ISO 8601 end (exclusive); default now")]


class GoldUnavailableError(RuntimeError):
    """The lakehouse could not be read (storage down, corrupt log...)."""


def _config() -> GoldConfig:
    return GoldConfig.from_env()


def _time_range(range_: str | None, start: str | None, end: str | None) -> dashboard.TimeRange:
    return dashboard.resolve_range(range_, start, end, now=utcnow())


def _tables(config: GoldConfig, now=None) -> dashboard.GoldTables:
    return dashboard.GoldTables.open(config, CACHE, now or utcnow())


@contextmanager
def _reading(config: GoldConfig):
    """Storage errors (S3 down, a corrupt log) become a 503 naming the lakehouse."""
    from deltalake.exceptions import DeltaError

    from flight_gold.lake.checks import LakehouseCheckError

    try:
        yield
    except (DeltaError, OSError, LakehouseCheckError) as exc:
        log.exception("cannot read the Gold tables under %s", config.lakehouse_root)
        raise GoldUnavailableError(
            f"cannot read the Gold tables under {config.lakehouse_root}: {exc}"
        ) from exc


def _with_run_url(last_alert: dict[str, Any]) -> dict[str, Any]:
    from airflow.api_fastapi.app import API_ROOT_PATH

    run_id = last_alert.get("run_id")
    url = (
        f"{API_ROOT_PATH}dags/{quote(last_alert['dag_id'], safe='')}/runs/{quote(run_id, safe='')}"
        if run_id
        else None
    )
    return {**last_alert, "url": url}


def streaming_run(session, user) -> dict[str, Any]:
    """The latest run of the streaming DAG, as the Airflow metadata DB knows it."""
    from airflow.api_fastapi.app import API_ROOT_PATH, get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    dag_id = STREAMING_DAG_ID
    result: dict[str, Any] = {
        "dag_id": dag_id,
        "dag_url": f"{API_ROOT_PATH}dags/{quote(dag_id, safe='')}",
        "run": None,
    }
    if not get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    ):
        return {
            **result,
            "status": "forbidden",
            "dag_url": None,
            "message": f"you may not read the runs of the DAG {dag_id}",
        }
    dag = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
    if dag is None:
        return {
            **result,
            "status": "dag_not_found",
            "dag_url": None,
            "message": f"DAG {dag_id} not found: is dags/ the DAG folder, and has the DAG "
            "processor parsed it (airflow dags reserialize)?",
        }
    result.update(is_paused=bool(dag.is_paused), is_stale=bool(dag.is_stale))
    run = session.scalar(
        select(DagRun)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())
        .limit(1)
    )
    if run is None:
        return {
            **result,
            "status": "no_runs",
            "message": f"DAG {dag_id} has never run: trigger it to start the stream",
        }
    result["status"] = "ok"
    result["run"] = {
        "run_id": run.run_id,
        "state": str(run.state.value if hasattr(run.state, "value") else run.state),
        "run_type": str(run.run_type.value if hasattr(run.run_type, "value") else run.run_type),
        "run_after": iso(run.run_after),
        "start_date": iso(run.start_date),
        "end_date": iso(run.end_date),
        "url": f"{API_ROOT_PATH}dags/{quote(dag_id, safe='')}/runs/{quote(run.run_id, safe='')}",
    }
    return result


def create_app() -> FastAPI:
    app = FastAPI(
        title="Flight Gold dashboard",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # echarts.min.js is 1.1 MB and a day of heat-map cells about as much: both shrink ~4x.
    # The endpoints return JSONResponse themselves: their dicts hold JSON types only, and
    # FastAPI's generic encoder would triple the time of a day's payload.
    app.add_middleware(GZipMiddleware, minimum_size=2048)

    @app.exception_handler(dashboard.DashboardInputError)
    async def bad_input(request: Request, exc: dashboard.DashboardInputError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(ConfigError)
    async def bad_config(request: Request, exc: ConfigError):
        return JSONResponse(status_code=500, content={"detail": f"configuration error: {exc}"})

    @app.exception_handler(GoldUnavailableError)
    async def unavailable(request: Request, exc: GoldUnavailableError):
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name:path}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        target = (STATIC_DIR / name).resolve()
        if not target.is_relative_to(STATIC_DIR) or not target.is_file():
            return JSONResponse(status_code=404, content={"detail": "Not Found"})
        # The page asks for ?v=<version>, so a day of caching cannot serve a stale library.
        return FileResponse(target, headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/dashboard")
    def all_panels(
        session: SessionDep,
        user: GetUserDep,
        range_: RangeParam = None,
        start: StartParam = None,
        end: EndParam = None,
    ) -> JSONResponse:
        now = utcnow()
        time_range = dashboard.resolve_range(range_, start, end, now=now)
        config, settings = _config(), dashboard.alert_settings()
        with _reading(config):
            view = dashboard.page(config, time_range, now, settings, _tables(config, now))
            health = stream.stream_health(config, now)
            # The metrics follow the wall clock: the requested range, even when the Gold panels
            # moved to older data.
            metrics = stream.stream_metrics(config, time_range)
        return JSONResponse(
            {
                **view,
                "last_alert": _with_run_url(view["last_alert"]),
                "streaming_run": streaming_run(session, user),
                "stream_health": health,
                "stream_metrics": metrics,
            }
        )

    @app.get("/api/phase-counts")
    def phase_counts(range_: RangeParam = None, start: StartParam = None, end: EndParam = None):
        time_range, config = _time_range(range_, start, end), _config()
        with _reading(config):
            return JSONResponse(
                {"range": time_range.as_dict(), **dashboard.phase_counts(_tables(config), time_range)}
            )

    @app.get("/api/anomaly-rates")
    def anomaly_rates(range_: RangeParam = None, start: StartParam = None, end: EndParam = None):
        time_range, config = _time_range(range_, start, end), _config()
        threshold = dashboard.alert_settings().threshold
        with _reading(config):
            return JSONResponse(
                {
                    "range": time_range.as_dict(),
                    **dashboard.anomaly_rates(_tables(config), time_range, threshold),
                }
            )

    @app.get("/api/breaches")
    def breaches(range_: RangeParam = None, start: StartParam = None, end: EndParam = None):
        time_range, config = _time_range(range_, start, end), _config()
        settings = dashboard.alert_settings()
        with _reading(config):
            return JSONResponse(
                {
                    "range": time_range.as_dict(),
                    **dashboard.breaches(_tables(config), time_range, settings),
                    "last_alert": _with_run_url(dashboard.last_alert(config, settings)),
                }
            )

    @app.get("/api/freshness")
    def freshness():
        config = _config()
        with _reading(config):
            return JSONResponse(dashboard.freshness(_tables(config), utcnow()))

    @app.get("/api/stream-health")
    def health():
        config = _config()
        with _reading(config):
            return JSONResponse(stream.stream_health(config, utcnow()))

    @app.get("/api/stream-metrics")
    def metrics(range_: RangeParam = None, start: StartParam = None, end: EndParam = None):
        time_range, config = _time_range(range_, start, end), _config()
        with _reading(config):
            return JSONResponse({"range": time_range.as_dict(), **stream.stream_metrics(config, time_range)})

    @app.get("/api/streaming-run")
    def latest_streaming_run(session: SessionDep, user: GetUserDep):
        return JSONResponse(streaming_run(session, user))

    return app
