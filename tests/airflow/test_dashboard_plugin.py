"""The "Flight Gold" plugin inside Airflow's real API app (airflow.api_fastapi.app.create_app, the
app `airflow api-server` serves), with the simple auth manager: tokens come from POST /auth/token,
and the plugin's routes must refuse anyone without one."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from flight_gold.core.times import iso, utcnow
from support.dashboard_data import minute_floor, write_known_gold

REPO = Path(__file__).resolve().parents[2]
PROBE_DAG_ID = "flight_gold_dashboard_probe"
PROBE_BUNDLE = "flight-gold-dashboard-test"

PLUGIN_PATHS = [
    "/flight-gold/",
    "/flight-gold/static/dashboard.js",
    "/flight-gold/static/vendor/echarts/echarts.min.js",
    "/flight-gold/api/dashboard",
    "/flight-gold/api/phase-counts",
    "/flight-gold/api/anomaly-rates",
    "/flight-gold/api/breaches",
    "/flight-gold/api/freshness",
    "/flight-gold/api/streaming-run",
    "/flight-gold/api/stream-health",
    "/flight-gold/api/stream-metrics",
]


@pytest.fixture(scope="module")
def api(airflow_db):
    """Airflow's API app with the repo's plugins folder, and an admin token."""
    from airflow import plugins_manager, settings
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from fastapi.testclient import TestClient

    caches = (
        plugins_manager._get_plugins,
        plugins_manager.get_fastapi_plugins,
        plugins_manager._get_ui_plugins,
        plugins_manager.get_flask_plugins,
    )
    saved_folder = settings.PLUGINS_FOLDER
    # Airflow read [core] plugins_folder when it was first imported; point it at the repo's.
    settings.PLUGINS_FOLDER = str(REPO / "plugins")
    for cached in caches:
        cached.cache_clear()
    api_app.purge_cached_app()
    try:
        client = TestClient(api_app.create_app(), base_url="http://127.0.0.1")
        password = SimpleAuthManager.get_passwords()["admin"]
        response = client.post("/auth/token", json={"username": "admin", "password": password})
        assert response.status_code == 201, response.text
        client.token = response.json()["access_token"]
        yield client
    finally:
        settings.PLUGINS_FOLDER = saved_folder
        for cached in caches:
            cached.cache_clear()
        api_app.purge_cached_app()


def auth(api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}"}


@pytest.fixture
def gold(lakehouse, monkeypatch):
    """Known Gold rows around the current minute; the API reads LAKEHOUSE_ROOT per request."""
    now = minute_floor(utcnow())
    write_known_gold(lakehouse, now)
    monkeypatch.setenv("LAKEHOUSE_ROOT", lakehouse.lakehouse_root)
    for name in ("GOLD_ALERTS_THRESHOLD", "GOLD_ALERTS_MIN_OBSERVATIONS", "GOLD_ALERTS_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("flight_gold.dashboard.app.STREAMING_DAG_ID", "flight_gold_dashboard_absent")
    return now


def at(base, minutes: int) -> str:
    return iso(base + timedelta(minutes=minutes))


# -- registration and authentication ------------------------------------------------------------


def test_the_plugin_is_registered_with_its_app_and_nav_view(api):
    response = api.get("/api/v2/plugins", headers=auth(api))
    assert response.status_code == 200
    plugin = next(p for p in response.json()["plugins"] if p["name"] == "Flight Gold")
    assert [(a["name"], a["url_prefix"]) for a in plugin["fastapi_apps"]] == [("Flight Gold", "/flight-gold")]
    view = plugin["external_views"][0]
    assert (view["name"], view["href"], view["url_route"], view["destination"], view["nav_top_level"]) == (
        "Flight Gold",
        "flight-gold/",
        "flight-gold",
        "nav",
        True,
    )


@pytest.mark.parametrize("path", PLUGIN_PATHS)
def test_anonymous_requests_are_refused(api, gold, path):
    response = api.get(path)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}


@pytest.mark.parametrize("path", ["/flight-gold/", "/flight-gold/api/dashboard"])
def test_a_forged_token_is_refused(api, gold, path):
    response = api.get(path, headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 403
    assert response.json() == {"detail": "Invalid JWT token"}


def test_the_ui_session_cookie_is_accepted(api, gold):
    """In the UI the page runs in an iframe of the same origin: the browser sends `_token`."""
    api.cookies.set("_token", api.token)
    try:
        response = api.get("/flight-gold/api/freshness")
    finally:
        api.cookies.clear()
    assert response.status_code == 200
    assert [t["table"] for t in response.json()["tables"]] == ["flight_phase_counts", "anomaly_alerts"]


# -- JSON endpoints -----------------------------------------------------------------------------


def test_dashboard_with_a_token_returns_the_known_rows(api, gold):
    t = gold
    response = api.get("/flight-gold/api/dashboard", params={"range": "1h"}, headers=auth(api))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["range"]["label"] == "1h" and body["threshold"] == 0.1
    assert body["phase_counts"]["minutes"] == [at(t, -12), at(t, -11), at(t, -10), at(t, -4)]
    assert {p["phase"]: p["flight_count"] for p in body["phase_counts"]["phases"]} == {
        "GROUND": [0, 3, 0, 0],
        "CLIMB": [4, 0, 0, 0],
        "CRUISE": [10, 12, 9, 11],
        "DESCENT": [0, 5, 0, 0],
    }
    assert body["anomaly_rates"]["countries"] == ["Portugal", "Germany", "France", "Spain"]
    assert [
        (r["window_start"], r["origin_country"], r["anomaly_rate"]) for r in body["breaches"]["rows"]
    ] == [(at(t, -10), "Portugal", 0.4), (at(t, -15), "France", 0.15), (at(t, -16), "Germany", 0.25)]
    fresh = {f["table"]: f for f in body["freshness"]["tables"]}
    assert (
        fresh["flight_phase_counts"]["newest_window_end"],
        fresh["anomaly_alerts"]["newest_window_end"],
    ) == (at(t, -3), at(t, -5))
    assert body["empty_state"] is None
    assert (body["last_alert"]["status"], body["last_alert"]["url"]) == ("none", None)
    assert body["streaming_run"]["status"] == "dag_not_found"


def test_each_endpoint_filters_by_the_absolute_range(api, gold):
    t = gold
    params = {"start": at(t, -70), "end": at(t, -10)}
    phases = api.get("/flight-gold/api/phase-counts", params=params, headers=auth(api)).json()
    assert phases["minutes"] == [at(t, -70), at(t, -12), at(t, -11)]
    assert phases["total_observations"] == 2 + 10 + 4 + 12 + 3 + 5
    assert phases["range"] == {"start": at(t, -70), "end": at(t, -10), "label": "custom"}
    rates = api.get("/flight-gold/api/anomaly-rates", params=params, headers=auth(api)).json()
    assert rates["windows"] == [at(t, -16), at(t, -15)]
    assert rates["cells"] == [
        [0, 0, 0.25, 8],
        [0, 1, 0.05, 20],
        [1, 0, 0.1, 10],
        [1, 1, 0.15, 20],
        [1, 2, 0.0, 5],
    ]
    breaches = api.get("/flight-gold/api/breaches", params=params, headers=auth(api)).json()
    assert [(r["origin_country"], r["anomaly_rate"]) for r in breaches["rows"]] == [
        ("France", 0.15),
        ("Germany", 0.25),
    ]
    wider = api.get("/flight-gold/api/breaches", params={"range": "3h"}, headers=auth(api)).json()
    assert wider["countries"] == ["France", "Germany", "Italy", "Portugal"]


def test_breaches_follow_the_alert_dags_settings(api, gold, monkeypatch):
    monkeypatch.setenv("GOLD_ALERTS_THRESHOLD", "0.3")
    body = api.get("/flight-gold/api/breaches", params={"range": "1h"}, headers=auth(api)).json()
    assert (body["threshold"], body["countries"]) == (0.3, ["Portugal"])
    monkeypatch.setenv("GOLD_ALERTS_THRESHOLD", "0.1")
    monkeypatch.setenv("GOLD_ALERTS_MIN_OBSERVATIONS", "6")
    body = api.get("/flight-gold/api/breaches", params={"range": "1h"}, headers=auth(api)).json()
    assert (body["min_observations"], body["countries"]) == (6, ["France", "Germany"])


def test_the_last_alert_links_to_its_alert_run(api, gold, lakehouse):
    from flight_gold import alerting as alerts

    run_id = "scheduled__2025-06-01T12:15:00+00:00"
    store = alerts.LedgerStore(alerts.AlertSettings().ledger_location(lakehouse), lakehouse)
    store.save(
        alerts.Ledger(
            version=4,
            updated_at=gold,
            last_alert={"at": iso(gold), "run_id": run_id, "breaches": 3, "gold_versions": [3, 4]},
        )
    )
    body = api.get("/flight-gold/api/dashboard", headers=auth(api)).json()["last_alert"]
    assert (body["status"], body["sent_at"], body["breaches"], body["url"]) == (
        "sent",
        iso(gold),
        3,
        f"/dags/gold_anomaly_alerts/runs/{quote(run_id, safe='')}",
    )


@pytest.mark.parametrize(
    "params, detail",
    [
        ({"range": "forever"}, "range must look like 15m, 1h or 2d"),
        ({"start": "2025-06-01T12:00:00Z", "end": "2025-06-01T11:00:00Z"}, "must be before end"),
        ({"range": "30d"}, "at most 7 days"),
    ],
)
def test_bad_ranges_get_a_400_that_says_why(api, gold, params, detail):
    response = api.get("/flight-gold/api/dashboard", params=params, headers=auth(api))
    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_missing_gold_tables_give_the_empty_state(api, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(tmp_path / "nothing-here"))
    monkeypatch.setattr("flight_gold.dashboard.app.STREAMING_DAG_ID", "flight_gold_dashboard_absent")
    response = api.get("/flight-gold/api/dashboard", headers=auth(api))
    assert response.status_code == 200
    body = response.json()
    assert body["empty_state"]["title"] == "No Gold tables yet"
    assert any("Trigger the DAG `gold_streaming`" in s for s in body["empty_state"]["steps"])
    assert [t["status"] for t in body["freshness"]["tables"]] == ["missing", "missing"]
    assert body["streaming_run"] == {
        "dag_id": "flight_gold_dashboard_absent",
        "dag_url": None,
        "run": None,
        "status": "dag_not_found",
        "message": "DAG flight_gold_dashboard_absent not found: is dags/ the DAG folder, and has the DAG "
        "processor parsed it (airflow dags reserialize)?",
    }


def test_an_unreadable_table_is_a_503_naming_the_lakehouse(api, lakehouse, monkeypatch):
    log_dir = Path(lakehouse.paths.flight_phase_counts) / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / "00000000000000000000.json").write_text("this is not a delta log\n")
    monkeypatch.setenv("LAKEHOUSE_ROOT", lakehouse.lakehouse_root)
    response = api.get("/flight-gold/api/freshness", headers=auth(api))
    assert response.status_code == 503
    assert response.json()["detail"].startswith(
        f"cannot read the Gold tables under {lakehouse.lakehouse_root}"
    )


def test_an_unreachable_object_store_is_a_503_naming_the_lakehouse(api, monkeypatch):
    """The Gold tables and the Silver_ML check of the empty state both ask the store."""
    monkeypatch.setenv("LAKEHOUSE_ROOT", "s3a://lake/prod")
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    response = api.get("/flight-gold/api/dashboard", headers=auth(api))
    assert response.status_code == 503
    assert response.json()["detail"].startswith("cannot read the Gold tables under s3a://lake/prod: ")


# -- the latest gold_streaming run ---------------------------------------------------------------


@pytest.fixture
def probe_dag(api, tmp_path, monkeypatch):
    """A DAG parsed into the metadata DB under its own bundle, standing in for gold_streaming."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    (tmp_path / "probe.py").write_text(
        textwrap.dedent(f"""
        from datetime import datetime
        from airflow.sdk import dag, task

        @dag(dag_id="{PROBE_DAG_ID}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
        def probe():
            @task
            def noop():
                return None
            noop()

        probe()
    """)
    )
    with create_session() as session:
        if session.get(DagBundleModel, PROBE_BUNDLE) is None:
            session.add(DagBundleModel(name=PROBE_BUNDLE))
    bag = DagBag(dag_folder=tmp_path, bundle_path=tmp_path, bundle_name=PROBE_BUNDLE)
    assert list(bag.dags) == [PROBE_DAG_ID], bag.import_errors
    sync_bag_to_db(bag, PROBE_BUNDLE, None)
    monkeypatch.setattr("flight_gold.dashboard.app.STREAMING_DAG_ID", PROBE_DAG_ID)
    return PROBE_DAG_ID


def test_latest_streaming_run_from_no_run_to_a_triggered_one(api, probe_dag):
    before = api.get("/flight-gold/api/streaming-run", headers=auth(api)).json()
    assert (before["status"], before["run"], before["dag_url"]) == ("no_runs", None, f"/dags/{probe_dag}")
    assert before["message"] == f"DAG {probe_dag} has never run: trigger it to start the stream"

    first = api.post(f"/api/v2/dags/{probe_dag}/dagRuns", json={"logical_date": None}, headers=auth(api))
    assert first.status_code == 200, first.text
    second = api.post(f"/api/v2/dags/{probe_dag}/dagRuns", json={"logical_date": None}, headers=auth(api))
    assert second.status_code == 200, second.text
    run_id = second.json()["dag_run_id"]

    after = api.get("/flight-gold/api/streaming-run", headers=auth(api)).json()
    assert after["status"] == "ok"
    assert (after["run"]["run_id"], after["run"]["state"], after["run"]["run_type"]) == (
        run_id,
        "queued",
        "manual",
    )
    assert after["run"]["url"] == f"/dags/{probe_dag}/runs/{quote(run_id, safe='')}"
    assert after["is_paused"] is bool(
        api.get(f"/api/v2/dags/{probe_dag}", headers=auth(api)).json()["is_paused"]
    )


# -- the page and its static files --------------------------------------------------------------


def test_the_page_and_the_vendored_chart_library_are_served(api, gold):
    page = api.get("/flight-gold/", headers=auth(api))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/vendor/echarts/echarts.min.js?v=6.1.0"' in page.text
    library = REPO / "include/flight_gold/dashboard/static/vendor/echarts/echarts.min.js"
    response = api.get(
        "/flight-gold/static/vendor/echarts/echarts.min.js", headers={**auth(api), "Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == library.read_bytes()  # httpx inflates it
    assert response.num_bytes_downloaded < library.stat().st_size / 2


@pytest.mark.parametrize(
    "path",
    [
        "/flight-gold/static/../dashboard_app.py",
        "/flight-gold/static/nope.js",
        "/flight-gold/static/%2e%2e/app.py",
    ],
)
def test_static_files_stay_inside_their_folder(api, path):
    assert api.get(path, headers=auth(api)).status_code == 404


def test_encoded_dots_reach_the_route_and_may_stay_inside(api):
    """The client sends %2e%2e as is, so the 404 above comes from the route's own check."""
    response = api.get("/flight-gold/static/vendor/%2e%2e/icon.svg", headers=auth(api))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
