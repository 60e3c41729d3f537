"""The Flight Gold page in a real browser: the project's Airflow started as `make airflow` starts
it (scripts/airflow_local.sh, on loopback), headless Debian Chromium driven by Playwright, a
person's path: sign in, open "Flight Gold" from the navigation, read the charts and the breach
table, wait for the page to refresh itself.

First the newcomer's first look, from a fresh lakehouse: the demo's replay of the recorded 2021
traffic (its first DEMO_MINUTES) and the Gold job available-now, as `make demo` runs them; the page
opens on its default range ("last hour"), which holds no 2021 window, and shows the newest hour
of data instead, saying so, with the counts of the independent computation. Then synthetic Gold
around now, with known breaches, for the other tests (the demo's Silver_ML moved aside, so that a
triggered gold_streaming run waits for it instead of streaming).

Needs `apt-get install -y chromium` and the pinned `playwright` Python package (its own browser
download is not used). Screenshots go to test-output/dashboard/.
"""

from __future__ import annotations

import json
import os
import shutil
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

import pandas as pd
import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.core.times import iso, utcnow
from flight_gold.feed.replay import replay_all_at_once
from support.airflow_live import LiveAirflow, airflow_env
from support.dashboard_data import append_by_window, background_records, minute_floor, write_demo_gold
from support.expected import expected_gold

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
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
# The first minutes of the recording: the demo's path, in less time than its 3 hours.
DEMO_MINUTES = 20


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """A fresh lakehouse fed the demo's way (replay + the Gold job available-now), and `make
    airflow`'s Airflow on it, started while the job runs."""
    home = tmp_path_factory.mktemp("airflow-standalone")
    config = GoldConfig.from_env({}, lakehouse_root=str(home / "lakehouse"))
    rows = replay_all_at_once(config, minutes=DEMO_MINUTES)
    job = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "jobs" / "streaming_gold.py"),
            "--lakehouse-root",
            config.lakehouse_root,
            "--trigger",
            "available-now",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(home / "job.log", "wb"),
    )
    env = airflow_env(home / "airflow", Path(config.lakehouse_root))
    (home / "airflow").mkdir()
    for name in ("GOLD_ALERTS_THRESHOLD", "GOLD_ALERTS_MIN_OBSERVATIONS", "GOLD_ALERTS_LEDGER"):
        env.pop(name, None)
    live = LiveAirflow(home / "airflow", env)
    try:
        live.start()
        assert job.wait(timeout=900) == 0, (home / "job.log").read_text()[-4000:]
        yield {
            "base": live.base,
            "password": live.password,
            "config": config,
            "live": live,
            "demo_rows": rows,
        }
    finally:
        if job.poll() is None:
            job.kill()
        live.stop()
        live.kill_everything()
        OUTPUT.mkdir(parents=True, exist_ok=True)
        standalone = home / "airflow" / "logs" / "standalone.log"
        if standalone.exists():
            shutil.copyfile(standalone, OUTPUT / "standalone.log")


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


def open_flight_gold(airflow, browser) -> Dashboard:
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
    return ui


@pytest.fixture(scope="module")
def demo_gold(airflow):
    """Synthetic Gold around now with the known breaches; the demo's Silver_ML moved aside."""
    config = airflow["config"]
    silver = Path(config.paths.silver_flights_ml)
    silver.rename(silver.with_name("flights_ml.demo"))
    now = minute_floor(utcnow())
    write_demo_gold(config, now)
    return {**airflow, "now": now}


@pytest.fixture(scope="module")
def dashboard_page(demo_gold, browser):
    ui = open_flight_gold(demo_gold, browser)
    yield ui
    ui.page.close()


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


def test_a_newcomer_sees_the_demo_data_on_the_default_range(airflow, browser):
    """`make demo` then `make airflow`, open Flight Gold: the default range (last hour) holds no
    2021 window; the page shows the hour up to the newest window, says so, and its counts are the
    independent computation's."""
    from flight_gold.feed.replay import recording_silver

    expected = expected_gold(recording_silver(DEMO_MINUTES))
    phases, anomalies = expected["flight_phase_counts"], expected["anomaly_alerts"]
    newest = max(phases["window_end"].max(), anomalies["window_end"].max())
    start = newest - pd.Timedelta(hours=1)
    in_range = {
        name: t[(t["window_start"] >= start) & (t["window_start"] < newest)] for name, t in expected.items()
    }
    peaks = in_range["anomaly_alerts"].groupby("origin_country")["anomaly_rate"].max().reset_index()
    shown = peaks.sort_values(["anomaly_rate", "origin_country"], ascending=[False, True]).head(25)[
        "origin_country"
    ]
    breaches = in_range["anomaly_alerts"][in_range["anomaly_alerts"]["anomaly_rate"] > 0.1]

    ui = open_flight_gold(airflow, browser)
    frame = ui.frame
    assert frame.locator("#range").input_value() == "1h"
    assert frame.locator("#range-note").inner_text() == (
        "No Gold window in the last 1 hour: showing the 1 hour up to the newest window "
        f"({newest.strftime('%Y-%m-%d %H:%M')} UTC)."
    )
    total = frame.locator("#phase-chart").evaluate(
        "el => echarts.getInstanceByDom(el).getOption().series"
        ".reduce((sum, s) => sum + s.data.reduce((n, d) => n + d[1], 0), 0)"
    )
    # Every window the demo's available-now run closed is in that hour (the demo is 20 minutes);
    # the rows of the last two minutes stay behind the watermark, in no window yet.
    closed = phases["flight_count"].sum()
    assert total == in_range["flight_phase_counts"]["flight_count"].sum() == closed
    assert 0 < closed < airflow["demo_rows"]
    cells = frame.locator("#anomaly-chart").evaluate(
        "el => echarts.getInstanceByDom(el).getOption().series[0].data.length"
    )
    assert cells == in_range["anomaly_alerts"]["origin_country"].isin(shown).sum() > 0
    assert frame.locator("#breach-count").inner_text().startswith(f"{len(breaches)} breach")
    assert frame.locator("#empty-state").is_hidden() and frame.locator("#error").is_hidden()
    # Judged against Silver_ML, the 2021 data is up to date, not "1879.6 days behind now".
    card = frame.locator(".card[data-table='flight_phase_counts']")
    assert (card.locator(".big").inner_text(), card.locator(".badge").inner_text()) == (
        "up to date with Silver_ML",
        "ok",
    )
    ui.page.screenshot(path=str(OUTPUT / "flight-gold-demo.png"))
    assert ui.errors == []
    ui.page.close()


def test_the_page_from_the_navigation_shows_charts_and_breaches(demo_gold, dashboard_page):
    ui, frame = dashboard_page, dashboard_page.frame
    assert breach_countries(frame) == ["Portugal", "France", "Germany"]
    assert frame.locator("#breach-count").inner_text().startswith("3 breaches in this time range")
    assert frame.locator("#empty-state").is_hidden()
    assert frame.locator("#error").is_hidden()
    assert frame.locator(".card[data-table='flight_phase_counts'] .badge").inner_text() in ("ok", "stale")

    # Hover: the bar of one minute shows each phase's count with its average altitude and velocity.
    now = demo_gold["now"]
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


def test_the_page_refreshes_itself_with_new_breaches(demo_gold, dashboard_page):
    ui, frame = dashboard_page, dashboard_page.frame
    loaded = frame.locator("body").get_attribute("data-loaded")
    record = {
        # The newest window (Portugal's starts at -10), already over: the first row of the table.
        "window_start": demo_gold["now"] - timedelta(minutes=9),
        "window_end": demo_gold["now"] - timedelta(minutes=4),
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
    append_by_window(demo_gold["config"].paths.anomaly_alerts, "anomaly_alerts", [record])
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


def test_the_last_gold_streaming_run_links_to_it(demo_gold, dashboard_page):
    """The real gold_streaming DAG of dags/, triggered through the REST API: the card shows the run
    (its sensor waits for a Silver_ML that this lakehouse lacks) and its link opens it in the UI."""
    ui, frame = dashboard_page, dashboard_page.frame
    token = api_call(
        demo_gold, "POST", "/auth/token", {"username": "admin", "password": demo_gold["password"]}
    )["access_token"]
    deadline = time.monotonic() + 120
    while True:  # the DAG processor parses dags/ shortly after the start
        try:
            api_call(demo_gold, "GET", "/api/v2/dags/gold_streaming", token=token)
            break
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(2)
    api_call(demo_gold, "PATCH", "/api/v2/dags/gold_streaming", {"is_paused": False}, token)
    run = api_call(demo_gold, "POST", "/api/v2/dags/gold_streaming/dagRuns", {"logical_date": None}, token)

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
