"""The freshness alert on real Delta tables (deltalake): Silver_ML from the synthetic feed, Gold as a
healthy stream would have written it (the independent computation's closed windows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.supervision.freshness import measure
from flight_gold.supervision.staleness import run_freshness_check
from support.receivers import Recorder
from support.stream_data import catch_up, feed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # later than every row: no future-skew cap
TABLES = ("flight_phase_counts", "anomaly_alerts")


@pytest.fixture
def config(tmp_path) -> GoldConfig:
    return GoldConfig.from_env({}, lakehouse_root=str(tmp_path / "lakehouse"))


def test_measure_reads_the_lag_from_file_statistics(config):
    silver = feed(config, 0, 10)  # 10:00-10:10
    catch_up(config, silver)
    fresh = measure(config, 600, NOW)
    newest = silver["event_timestamp"].max()
    assert fresh.silver_newest_event == newest.to_pydatetime()
    by_table = {t.table: t for t in fresh.tables}
    # 10:09:59.9 - 2 min -> windows up to 10:07 closed; - 6 min -> up to 10:03.
    assert by_table["flight_phase_counts"].expected_window_end == datetime(2024, 5, 1, 10, 7, tzinfo=UTC)
    assert by_table["anomaly_alerts"].expected_window_end == datetime(2024, 5, 1, 10, 3, tzinfo=UTC)
    for t in fresh.tables:
        assert (t.newest_window_end, t.behind_s, t.stale) == (t.expected_window_end, 0.0, False)

    silver = pd.concat([silver, feed(config, 10, 20)])  # 20 more minutes, Gold not updated
    fresh = measure(config, 600, NOW)
    by_table = {t.table: t for t in fresh.tables}
    assert by_table["flight_phase_counts"].behind_s == 20 * 60 and by_table["flight_phase_counts"].stale
    assert by_table["anomaly_alerts"].behind_s == 20 * 60
    assert measure(config, 1200, NOW).stale_tables == []


def test_a_stopped_stream_alerts_once_and_a_restart_resolves_once(config):
    slack, email = Recorder("slack"), Recorder("email")
    channels = [slack, email]
    silver = feed(config, 0, 10)
    catch_up(config, silver)
    first = run_freshness_check(config, channels, stream_running=True, now=NOW)
    assert (first["stale"], first["sent"]) == (False, {})

    # The stream stops; Silver_ML keeps growing, a minute per check: alerted once, at the first.
    outcomes = []
    for k in range(4):
        silver = pd.concat([silver, feed(config, 10 + k, 1)])
        outcomes.append(
            run_freshness_check(config, channels, stream_running=False, now=NOW + timedelta(minutes=5 * k))
        )
    assert [o["sent"] for o in outcomes] == [{"slack": "alert", "email": "alert"}, {}, {}, {}]
    assert all(o["stale"] and o["incident_open"] for o in outcomes)
    assert outcomes[0]["reasons"] == [
        "no gold_streaming stream is running while Silver_ML grew (version 0 -> 1 since the last check)"
    ]
    for channel in channels:
        assert [n.subject for n in channel.notices] == ["[Flight Gold] Gold is falling behind Silver_ML"]
    assert "Since 2024-05-01 12:00 UTC:" in slack.notices[0].text

    # Restarted: the stream runs and catches up; one "resolved", then nothing.
    catch_up(config, silver)
    after = [
        run_freshness_check(config, channels, stream_running=True, now=NOW + timedelta(minutes=30 + 5 * k))
        for k in range(2)
    ]
    assert [o["sent"] for o in after] == [{"slack": "resolved", "email": "resolved"}, {}]
    assert [o["incident_open"] for o in after] == [False, False]
    for channel in channels:
        assert [n.subject for n in channel.notices] == [
            "[Flight Gold] Gold is falling behind Silver_ML",
            "[Flight Gold] Gold is fresh again",
        ]
    assert "after 30 min behind (since 12:00 UTC)" in slack.notices[1].text


def test_a_running_stream_that_falls_behind_alerts_with_the_lag(config):
    slack = Recorder("slack")
    silver = feed(config, 0, 10)
    catch_up(config, silver)
    run_freshness_check(config, [slack], stream_running=True, now=NOW)
    feed(config, 10, 15)
    result = run_freshness_check(config, [slack], stream_running=True, now=NOW)
    assert result["reasons"] == [
        "flight_phase_counts: newest window ends 2024-05-01 10:07 UTC, Silver_ML's data closes windows "
        "up to 2024-05-01 10:22 UTC: 15 min behind (threshold 10 min)",
        "anomaly_alerts: newest window ends 2024-05-01 10:03 UTC, Silver_ML's data closes windows "
        "up to 2024-05-01 10:18 UTC: 15 min behind (threshold 10 min)",
    ]
    assert result["sent"] == {"slack": "alert"}
