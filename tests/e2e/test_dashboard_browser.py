"""The Flight Gold page in a real browser: `airflow standalone` started by the test on loopback,
headless Debian Chromium driven by Playwright, a person's path: sign in, open "Flight Gold"
from the navigation, read the charts and the breach table, wait for the page to refresh itself.

Needs `apt-get install -y chromium` and the pinned `playwright` Python package (its own browser
download is not used). Screenshots go to test-output/dashboard/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.core.times import iso, utcnow
from support.dashboard_data import append_by_window, background_records, minute_floor, write_demo_gold

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
OUTPUT = REPO / "test-output" / "dashboard"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as response:
            return response.status == 200 and json.load(response)["metadatabase"]["status"] == "healthy"
    except (OSError, ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """`airflow standalone` in its own home and process group, with the repo's plugins and a
    lakehouse holding an hour of Gold data around the known breaches."""
    home = tmp_path_factory.mktemp("airflow-standalone")
    config = GoldConfig.from_env({}, lakehouse_root=str(home / "lakehouse"))
    now = minute_floor(utcnow())
    write_demo_gold(config, now)
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "LAKEHOUSE_ROOT": config.lakehouse_root,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("GOLD_ALERTS_THRESHOLD", "GOLD_ALERTS_MIN_OBSERVATIONS", "GOLD_ALERTS_LEDGER"):
        env.pop(name, None)
    log_path = home / "standalone.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        # A session of its own: standalone's ~40 children stop with one signal to the group.
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(
                    f"airflow standalone did not become healthy on {base} "
                    f"(exit code {proc.poll()}); log tail:\n{tail}"
                )
            time.sleep(1)
        passwords = home / "simple_auth_manager_passwords.json.generated"
        yield {
            "base": base,
            "password": json.loads(passwords.read_text())["admin"],
            "config": config,
            "now": now,
            "log": log_path,
        }
    finally:
        stop_group(proc)
        OUTPUT.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_path, OUTPUT / "standalone.log")


def stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the leader
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install playwright==1.65.2")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Dashboard:
    page: object
    frame: object = None
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def dashboard_page(airflow, browser):
    """Signed in as admin, on the Flight Gold page opened from the navigation, charts drawn."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    ui = Dashboard(page)
    page.on("pageerror", lambda error: ui.errors.append(str(error)))
    page.goto(airflow["base"] + "/")
    page.locator("input[name=username]").fill("admin")
    page.locator("input[type=password]").fill(airflow["password"])
    page.locator("button[type=submit]").click()
    page.wait_for_url(airflow["base"] + "/", timeout=60_000)

    page.get_by_role("link", name="Flight Gold").first.click()
    page.wait_for_url("**/plugin/flight-gold**", timeout=30_000)
    frame = page.frame_locator("iframe[title='Flight Gold']")
    frame.locator("#phase-chart[data-rendered='true']").wait_for(timeout=60_000)
    frame.locator("#anomaly-chart[data-rendered='true']").wait_for(timeout=60_000)
    ui.frame = frame
    yield ui
    page.close()


def breach_countries(frame) -> list[str]:
    return [row.get_attribute("data-country") for row in frame.locator("#breach-table tbody tr").all()]


def hover_chart(ui: Dashboard, chart_id: str, finder: str, value) -> None:
    """Moves the mouse over the chart pixel of `value` (ECharts' own coordinate conversion)."""
    chart = ui.frame.locator(f"#{chart_id}")
    x, y = chart.evaluate(f"(el, v) => echarts.getInstanceByDom(el).convertToPixel({finder}, v)", value)
    box = chart.bounding_box()
    ui.page.mouse.move(box["x"] + x, box["y"] + y)


def js_round(value: float) -> str:
    """toLocaleString('en-US', {maximumFractionDigits: 0}): half away from zero, with commas."""
    return f"{int(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP)):,}"


def test_the_page_from_the_navigation_shows_charts_and_breaches(airflow, dashboard_page):
    ui, frame = dashboard_page, dashboard_page.frame
    assert breach_countries(frame) == ["Portugal", "France", "Germany"]
    assert frame.locator("#breach-count").inner_text().startswith("3 breaches in this time range")
    assert frame.locator("#empty-state").is_hidden()
    assert frame.locator("#error").is_hidden()
    assert frame.locator(".card[data-table='flight_phase_counts'] .badge").inner_text() in ("ok", "stale")

    # Hover: the bar of one minute shows each phase's count with its average altitude and velocity.
    now = airflow["now"]
    phases, _ = background_records(now)
    minute = now - timedelta(minutes=12)
    cruise = next(r for r in phases if r["window_start"] == minute and r["flight_phase"] == "CRUISE")
    hover_chart(ui, "phase-chart", "{xAxisIndex: 0, yAxisIndex: 0}", [iso(minute), 50])
    row = frame.locator("#phase-chart .tt-row[data-phase='CRUISE']")
    row.wait_for(timeout=10_000)
    assert row.inner_text() == (
        f"CRUISE: {cruise['flight_count']} obs · avg {js_round(cruise['avg_altitude'])} m"
        f" · {js_round(cruise['avg_velocity'])} km/h"
    )

    # Hover: the heat-map cell of the newest breach (top row, last window) is marked as such.
    windows = frame.locator("#anomaly-chart").evaluate(
        "el => echarts.getInstanceByDom(el).getOption().xAxis[0].data.length"
    )
    hover_chart(ui, "anomaly-chart", "{seriesIndex: 0}", [windows - 1, 0])
    cell = frame.locator("#anomaly-chart .tt-cell[data-country='Portugal']")
    cell.wait_for(timeout=10_000)
    assert "anomaly_rate 40.0 % of 5 observations" in cell.inner_text()
    assert cell.inner_text().endswith("above the threshold 0.1")

    ui.page.mouse.move(5, 5)  # no tooltip in the picture
    ui.page.wait_for_timeout(300)
    ui.page.screenshot(path=str(OUTPUT / "flight-gold.png"))
    assert ui.errors == []


def test_the_page_refreshes_itself_with_new_breaches(airflow, dashboard_page):
    ui, frame = dashboard_page, dashboard_page.frame
    loaded = frame.locator("body").get_attribute("data-loaded")
    record = {
        # The newest window (Portugal's starts at -10), already over: the first row of the table.
        "window_start": airflow["now"] - timedelta(minutes=9),
        "window_end": airflow["now"] - timedelta(minutes=4),
        "origin_country": "Norway",
        "total_observations": 10,
        "altitude_anomalies": 3,
        "velocity_anomalies": 0,
        "anomaly_rate": 0.3,
        "max_altitude": 12500.0,
        "min_altitude": 100.0,
        "max_velocity": 900.0,
        "avg_altitude": 9000.0,
        "avg_velocity": 800.0,
        "stddev_altitude": 10.0,
        "stddev_velocity": 5.0,
    }
    append_by_window(airflow["config"].paths.anomaly_alerts, "anomaly_alerts", [record])
    # No click: the page's own 30-second refresh must bring the new row.
    frame.locator("#breach-table tbody tr[data-country='Norway']").wait_for(timeout=75_000)
    assert breach_countries(frame) == ["Norway", "Portugal", "France", "Germany"]
    assert frame.locator("body").get_attribute("data-loaded") != loaded
    ui.page.screenshot(path=str(OUTPUT / "flight-gold-refreshed.png"))
    assert ui.errors == []


def api_call(airflow, method: str, path: str, body: dict | None = None, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        airflow["base"] + path,
        method=method,
        headers=headers,
        data=json.dumps(body).encode() if body is not None else None,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_the_last_gold_streaming_run_links_to_it(airflow, dashboard_page):
    """The real gold_streaming DAG of dags/, triggered through the REST API: the card shows the run
    (its sensor waits for a Silver_ML that this lakehouse lacks) and its link opens it in the UI."""
    ui, frame = dashboard_page, dashboard_page.frame
    token = api_call(airflow, "POST", "/auth/token", {"username": "admin", "password": airflow["password"]})[
        "access_token"
    ]
    deadline = time.monotonic() + 120
    while True:  # the DAG processor parses dags/ shortly after the start
        try:
            api_call(airflow, "GET", "/api/v2/dags/gold_streaming", token=token)
            break
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(2)
    api_call(airflow, "PATCH", "/api/v2/dags/gold_streaming", {"is_paused": False}, token)
    run = api_call(airflow, "POST", "/api/v2/dags/gold_streaming/dagRuns", {"logical_date": None}, token)

    frame.locator("#refresh").click()
    link = frame.locator(".card[data-table='streaming-run'] a", has_text=run["dag_run_id"])
    link.wait_for(timeout=30_000)
    assert link.get_attribute("href") == f"/dags/gold_streaming/runs/{quote(run['dag_run_id'], safe='')}"
    state = frame.locator(".card[data-table='streaming-run'] .badge").inner_text()
    assert state in ("queued", "running"), state
    ui.page.screenshot(path=str(OUTPUT / "flight-gold-with-run.png"))
    link.click()
    # The Airflow UI itself moves to the run's page (no nested UI inside the frame).
    ui.page.wait_for_url(
        lambda url: unquote(urlsplit(url).path) == f"/dags/gold_streaming/runs/{run['dag_run_id']}",
        timeout=30_000,
    )
    ui.page.get_by_text(run["dag_run_id"]).first.wait_for(timeout=30_000)
    assert ui.page.locator("iframe[title='Flight Gold']").count() == 0
    assert ui.errors == []
