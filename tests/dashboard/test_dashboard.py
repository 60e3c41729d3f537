"""The dashboard's data functions on a temporary lakehouse with known Gold rows (see
tests/dashboard_data.py for the rows and the reasoning behind every expected value)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from flight_gold import alerting as alerts
from flight_gold import dashboard as d
from flight_gold.alerting import AlertConfigError, AlertSettings
from flight_gold.core.times import iso
from flight_gold.lake.tables import open_table
from support.dashboard_data import (
    REFERENCE_NOW,
    create_empty_gold,
    create_empty_silver,
    phase_records,
    write_known_gold,
)

NOW = REFERENCE_NOW  # 2025-06-01T12:10:00Z
DEFAULT = AlertSettings()  # threshold 0.1, at least 1 observation


def at(hhmm: str) -> str:
    return f"2025-06-01T{hhmm}:00Z"


@pytest.fixture
def gold(lakehouse):
    write_known_gold(lakehouse)
    return lakehouse


def tables(config):
    return d.GoldTables.open(config)


# -- time range ---------------------------------------------------------------------------------


def test_default_range_is_the_last_hour():
    r = d.resolve_range(now=NOW)
    assert r.as_dict() == {"start": at("11:10"), "end": at("12:10"), "label": "1h"}


@pytest.mark.parametrize(
    "text, start",
    [
        ("15m", at("11:55")),
        ("3h", at("09:10")),
        ("24h", "2025-05-31T12:10:00Z"),
        ("2d", "2025-05-30T12:10:00Z"),
    ],
)
def test_relative_ranges(text, start):
    assert d.resolve_range(text, now=NOW).as_dict() == {"start": start, "end": at("12:10"), "label": text}


def test_absolute_range_without_end_ends_now():
    assert d.resolve_range(start="2025-06-01T11:30:00Z", now=NOW).as_dict() == {
        "start": at("11:30"),
        "end": at("12:10"),
        "label": "custom",
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"range_": "1 week"}, "range must look like 15m, 1h or 2d"),
        ({"range_": "0h"}, "range must look like"),
        ({"range_": "8d"}, "at most 7 days"),
        ({"start": "yesterday"}, "start must be an ISO 8601 date-time"),
        ({"start": at("12:00"), "end": at("11:00")}, "must be before end"),
        ({"end": at("11:00")}, "end was given without start"),
        ({"range_": "1h", "start": at("11:00")}, "either range or start/end"),
    ],
)
def test_bad_ranges_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(d.DashboardInputError, match=message):
        d.resolve_range(now=NOW, **kwargs)


def test_absolute_range_converts_offsets_to_utc():
    r = d.resolve_range(start="2025-06-01T13:00:00+02:00", end="2025-06-01T12:00:00", now=NOW)
    assert r.as_dict() == {"start": at("11:00"), "end": at("12:00"), "label": "custom"}


def test_the_settings_are_the_alert_dags():
    assert d.alert_settings({}) == AlertSettings(threshold=0.1, min_observations=1)
    settings = d.alert_settings({"GOLD_ALERTS_THRESHOLD": "0.25", "GOLD_ALERTS_MIN_OBSERVATIONS": "6"})
    assert (settings.threshold, settings.min_observations) == (0.25, 6)
    with pytest.raises(AlertConfigError, match="GOLD_ALERTS_THRESHOLD must be a number"):
        d.alert_settings({"GOLD_ALERTS_THRESHOLD": "high"})


# -- flight_phase_counts ------------------------------------------------------------------------


def test_phase_counts_of_the_last_hour(gold):
    result = d.phase_counts(tables(gold), d.resolve_range("1h", now=NOW))
    assert result["status"] == "ok"
    assert result["minutes"] == [at("11:58"), at("11:59"), at("12:00"), at("12:06")]
    assert result["phases"] == [
        {
            "phase": "GROUND",
            "flight_count": [0, 3, 0, 0],
            "avg_altitude": [None, 0.0, None, None],
            "avg_velocity": [None, 10.0, None, None],
        },
        {
            "phase": "CLIMB",
            "flight_count": [4, 0, 0, 0],
            "avg_altitude": [3000.0, None, None, None],
            "avg_velocity": [500.0, None, None, None],
        },
        {
            "phase": "CRUISE",
            "flight_count": [10, 12, 9, 11],
            "avg_altitude": [10000.0, 10100.0, 10200.0, 10300.0],
            "avg_velocity": [850.0, 860.0, 870.0, 880.0],
        },
        {
            "phase": "DESCENT",
            "flight_count": [0, 5, 0, 0],
            "avg_altitude": [None, None, None, None],
            "avg_velocity": [None, 400.0, None, None],
        },
    ]
    assert result["total_observations"] == 4 + 10 + 12 + 3 + 5 + 9 + 11
    assert result["duplicate_rows"] == 0


def test_phase_counts_range_start_inclusive_end_exclusive(gold):
    result = d.phase_counts(tables(gold), d.resolve_range(start=at("11:00"), end=at("12:00"), now=NOW))
    assert result["minutes"] == [at("11:00"), at("11:58"), at("11:59")]
    by_phase = {p["phase"]: p["flight_count"] for p in result["phases"]}
    assert by_phase == {
        "TAKEOFF": [2, 0, 0],
        "GROUND": [0, 0, 3],
        "CLIMB": [0, 4, 0],
        "CRUISE": [0, 10, 12],
        "DESCENT": [0, 0, 5],
    }
    assert result["total_observations"] == 2 + 4 + 10 + 12 + 3 + 5


def test_phase_counts_of_a_range_with_no_window(gold):
    result = d.phase_counts(tables(gold), d.resolve_range(start=at("08:00"), end=at("09:00"), now=NOW))
    assert (result["status"], result["minutes"], result["phases"], result["total_observations"]) == (
        "ok",
        [],
        [],
        0,
    )


def test_phase_counts_reports_a_window_written_twice(gold):
    from support.dashboard_data import append_by_window

    again = [r for r in phase_records(NOW) if r["flight_phase"] == "CRUISE" and r["window_start"].minute == 6]
    append_by_window(gold.paths.flight_phase_counts, "flight_phase_counts", again)
    result = d.phase_counts(tables(gold), d.resolve_range("15m", now=NOW))
    assert result["duplicate_rows"] == 1
    assert {p["phase"]: p["flight_count"] for p in result["phases"]}["CRUISE"] == [10, 12, 9, 22]


# -- anomaly_alerts -----------------------------------------------------------------------------


def test_anomaly_rates_heat_map_of_the_last_hour(gold):
    result = d.anomaly_rates(tables(gold), d.resolve_range("1h", now=NOW), threshold=0.1)
    assert result["status"] == "ok"
    # Every slide from the first window to the last: 11:56 to 11:59 have no row and stay empty.
    assert result["windows"] == [
        at("11:54"),
        at("11:55"),
        at("11:56"),
        at("11:57"),
        at("11:58"),
        at("11:59"),
        at("12:00"),
    ]
    assert result["countries"] == ["Portugal", "Germany", "France", "Spain"]
    assert result["cells"] == [
        [0, 1, 0.25, 8],
        [0, 2, 0.05, 20],
        [1, 1, 0.1, 10],
        [1, 2, 0.15, 20],
        [1, 3, 0.0, 5],
        [6, 0, 0.4, 5],
    ]
    assert (
        result["countries_total"],
        result["countries_hidden"],
        result["max_rate"],
        result["threshold"],
        result["window_seconds"],
    ) == (4, 0, 0.4, 0.1, 300.0)


def test_anomaly_rates_keeps_the_countries_with_the_highest_rates(gold):
    result = d.anomaly_rates(tables(gold), d.resolve_range("1h", now=NOW), threshold=0.1, max_countries=2)
    assert result["countries"] == ["Portugal", "Germany"]
    assert result["cells"] == [[0, 1, 0.25, 8], [1, 1, 0.1, 10], [6, 0, 0.4, 5]]
    assert (result["countries_total"], result["countries_hidden"]) == (4, 2)


def test_anomaly_rates_over_three_hours_reach_italy(gold):
    result = d.anomaly_rates(tables(gold), d.resolve_range("3h", now=NOW), threshold=0.1)
    assert (len(result["windows"]), result["windows"][0], result["windows"][-1]) == (
        81,
        at("10:40"),
        at("12:00"),
    )
    assert result["countries"] == ["Italy", "Portugal", "Germany", "France", "Spain"]
    assert result["cells"][0] == [0, 0, 0.5, 4]
    assert result["cells"][-1] == [80, 1, 0.4, 5]


# -- breaches -----------------------------------------------------------------------------------


def breach_keys(result):
    return [(r["window_start"], r["origin_country"], r["anomaly_rate"]) for r in result["rows"]]


def test_breaches_of_the_last_hour_newest_first(gold):
    result = d.breaches(tables(gold), d.resolve_range("1h", now=NOW), DEFAULT)
    assert result["rows"] == [
        {
            "window_start": at("12:00"),
            "window_end": at("12:05"),
            "origin_country": "Portugal",
            "total_observations": 5,
            "altitude_anomalies": 2,
            "velocity_anomalies": 0,
            "anomaly_rate": 0.4,
        },
        {
            "window_start": at("11:55"),
            "window_end": at("12:00"),
            "origin_country": "France",
            "total_observations": 20,
            "altitude_anomalies": 2,
            "velocity_anomalies": 1,
            "anomaly_rate": 0.15,
        },
        {
            "window_start": at("11:54"),
            "window_end": at("11:59"),
            "origin_country": "Germany",
            "total_observations": 8,
            "altitude_anomalies": 2,
            "velocity_anomalies": 0,
            "anomaly_rate": 0.25,
        },
    ]
    assert result["countries"] == ["France", "Germany", "Portugal"]
    assert (result["total"], result["truncated"], result["status"]) == (3, False, "ok")


def test_a_rate_equal_to_the_threshold_is_no_breach(gold):
    keys = breach_keys(d.breaches(tables(gold), d.resolve_range("1h", now=NOW), DEFAULT))
    assert (at("11:55"), "Germany", 0.1) not in keys


def test_breaches_follow_the_time_range_and_the_threshold(gold):
    assert breach_keys(
        d.breaches(tables(gold), d.resolve_range(start=at("11:00"), end=at("12:00"), now=NOW), DEFAULT)
    ) == [(at("11:55"), "France", 0.15), (at("11:54"), "Germany", 0.25)]
    assert breach_keys(d.breaches(tables(gold), d.resolve_range("3h", now=NOW), DEFAULT))[-1] == (
        at("10:40"),
        "Italy",
        0.5,
    )
    assert breach_keys(
        d.breaches(tables(gold), d.resolve_range("1h", now=NOW), AlertSettings(threshold=0.2))
    ) == [(at("12:00"), "Portugal", 0.4), (at("11:54"), "Germany", 0.25)]


def test_breaches_need_the_alerts_minimum_of_observations(gold):
    result = d.breaches(tables(gold), d.resolve_range("1h", now=NOW), AlertSettings(min_observations=6))
    assert breach_keys(result) == [(at("11:55"), "France", 0.15), (at("11:54"), "Germany", 0.25)]
    assert (result["threshold"], result["min_observations"]) == (0.1, 6)


def test_the_page_lists_exactly_what_the_alert_dag_would_send(gold):
    """The same Gold table through the alerts' own reading and selection (a first run reads the
    whole snapshot) gives the same breaches as the page over a range covering every window."""
    table = open_table(gold.paths.anomaly_alerts, gold)
    for settings in (DEFAULT, AlertSettings(threshold=0.2), AlertSettings(min_observations=6)):
        sent = alerts.select_breaches(alerts.read_new_rows(table, None, None, settings).rows, settings)
        shown = d.breaches(tables(gold), d.resolve_range("7d", now=NOW), settings)
        assert sorted(breach_keys(shown)) == sorted(
            (iso(b.window_start), b.origin_country, b.anomaly_rate) for b in sent
        )
        assert shown["total"] == len(sent) > 0


def test_breaches_are_capped_and_say_so(gold):
    result = d.breaches(tables(gold), d.resolve_range("3h", now=NOW), DEFAULT, limit=2)
    assert breach_keys(result) == [(at("12:00"), "Portugal", 0.4), (at("11:55"), "France", 0.15)]
    assert (result["total"], result["truncated"]) == (4, True)
    assert result["countries"] == ["France", "Germany", "Italy", "Portugal"]


# -- freshness ----------------------------------------------------------------------------------


def test_freshness_of_each_table(gold):
    result = d.freshness(tables(gold), NOW)
    by_table = {t["table"]: t for t in result["tables"]}
    phases, anomalies = by_table["flight_phase_counts"], by_table["anomaly_alerts"]
    assert (
        phases["status"],
        phases["rows"],
        phases["newest_window_start"],
        phases["newest_window_end"],
        phases["lag_seconds"],
        phases["expected_lag_seconds"],
        phases["stale"],
        phases["version"],
    ) == ("ok", 9, at("12:06"), at("12:07"), 180.0, 120 + 60 + 10 + 60, False, 5)
    assert (
        anomalies["status"],
        anomalies["rows"],
        anomalies["newest_window_start"],
        anomalies["newest_window_end"],
        anomalies["lag_seconds"],
        anomalies["expected_lag_seconds"],
        anomalies["stale"],
        anomalies["version"],
    ) == ("ok", 7, at("12:00"), at("12:05"), 300.0, 360 + 60 + 10 + 60, False, 3)
    assert phases["path"] == gold.paths.flight_phase_counts
    assert phases["last_commit"].endswith("Z")


def test_freshness_marks_a_stream_that_fell_behind(gold):
    later = NOW + timedelta(minutes=20)
    by_table = {t["table"]: t for t in d.freshness(tables(gold), later)["tables"]}
    assert (by_table["flight_phase_counts"]["lag_seconds"], by_table["flight_phase_counts"]["stale"]) == (
        1380.0,
        True,
    )
    assert (by_table["anomaly_alerts"]["lag_seconds"], by_table["anomaly_alerts"]["stale"]) == (1500.0, True)


# -- empty and missing tables -------------------------------------------------------------------


def test_missing_tables_give_an_empty_state_that_says_what_to_start(lakehouse):
    snap = d.page(lakehouse, d.resolve_range(now=NOW), NOW, DEFAULT)
    assert [t["status"] for t in snap["freshness"]["tables"]] == ["missing", "missing"]
    assert (snap["phase_counts"]["status"], snap["anomaly_rates"]["status"], snap["breaches"]["status"]) == (
        "missing",
        "missing",
        "missing",
    )
    assert snap["breaches"]["rows"] == [] and snap["phase_counts"]["minutes"] == []
    state = snap["empty_state"]
    assert state["title"] == "No Gold tables yet"
    assert state["tables"] == ["flight_phase_counts", "anomaly_alerts"]
    assert state["steps"][0].startswith(
        f"Feed Silver_ML: no Delta table at {lakehouse.paths.silver_flights_ml}"
    )
    assert "Trigger the DAG `gold_streaming`" in state["steps"][1]


def test_empty_tables_with_silver_present_ask_only_for_the_stream(lakehouse):
    create_empty_silver(lakehouse)
    create_empty_gold(lakehouse, "flight_phase_counts")
    create_empty_gold(lakehouse, "anomaly_alerts")
    snap = d.page(lakehouse, d.resolve_range(now=NOW), NOW, DEFAULT)
    assert [(t["status"], t["rows"], t["lag_seconds"]) for t in snap["freshness"]["tables"]] == [
        ("empty", 0, None),
        ("empty", 0, None),
    ]
    assert (snap["phase_counts"]["status"], snap["anomaly_rates"]["status"]) == ("empty", "empty")
    state = snap["empty_state"]
    assert state["title"] == (
        "Waiting for Gold data: flight_phase_counts (no window yet), anomaly_alerts (no window yet)"
    )
    assert state["steps"][0].startswith("Trigger the DAG `gold_streaming` in Airflow")
    assert not any(step.startswith("Feed Silver_ML") for step in state["steps"])


def test_one_table_missing_only(lakehouse):
    from support.dashboard_data import anomaly_records, append_by_window

    append_by_window(lakehouse.paths.anomaly_alerts, "anomaly_alerts", anomaly_records(NOW))
    snap = d.page(lakehouse, d.resolve_range(now=NOW), NOW, DEFAULT)
    assert snap["empty_state"]["title"] == "Waiting for Gold data: flight_phase_counts (not created yet)"
    assert [r["origin_country"] for r in snap["breaches"]["rows"]] == ["Portugal", "France", "Germany"]


def test_snapshot_is_strict_json_and_carries_every_panel(gold):
    snap = d.page(gold, d.resolve_range(now=NOW), NOW, DEFAULT)
    text = json.dumps(snap, allow_nan=False)
    assert json.loads(text) == snap
    assert set(snap) == {
        "generated_at",
        "range",
        "threshold",
        "phase_counts",
        "anomaly_rates",
        "breaches",
        "freshness",
        "last_alert",
        "empty_state",
    }
    assert snap["empty_state"] is None
    assert (snap["generated_at"], snap["range"]["label"], snap["threshold"]) == (at("12:10"), "1h", 0.1)
    assert snap["breaches"]["countries"] == ["France", "Germany", "Portugal"]


# -- the API server's cache --------------------------------------------------------------------

RANGES = [("1h", None, None), ("3h", None, None), (None, at("11:00"), at("12:00"))]


def panels(tables, now=NOW):
    out = {}
    for range_, start, end in RANGES:
        r = d.resolve_range(range_, start, end, now=now)
        out[r.label + (start or "")] = (
            d.phase_counts(tables, r),
            d.anomaly_rates(tables, r, 0.1),
            d.breaches(tables, r, DEFAULT),
        )
    return out, d.freshness(tables, now)


def test_the_cache_gives_what_a_direct_read_gives(gold):
    cache = d.GoldCache()
    assert panels(d.GoldTables.open(gold, cache, NOW)) == panels(tables(gold))
    assert panels(d.GoldTables.open(gold, cache, NOW)) == panels(tables(gold))
    entry = cache.entry(gold, "anomaly_alerts")
    assert (entry.full_loads, entry.incremental_loads, entry.version) == (1, 0, 3)


def test_the_cache_reads_only_the_commits_added_since(gold):
    from support.dashboard_data import anomaly_records, append_by_window

    cache = d.GoldCache()
    d.GoldTables.open(gold, cache, NOW)
    newer = [
        dict(
            r,
            window_start=r["window_start"] + timedelta(minutes=12),
            window_end=r["window_end"] + timedelta(minutes=12),
            origin_country="Norway",
        )
        for r in anomaly_records(NOW)
        if r["origin_country"] == "Portugal"
    ]
    append_by_window(gold.paths.anomaly_alerts, "anomaly_alerts", newer)
    later = NOW + timedelta(minutes=5)
    cached = d.GoldTables.open(gold, cache, later)
    entry = cache.entry(gold, "anomaly_alerts")
    assert (entry.full_loads, entry.incremental_loads, entry.version) == (1, 1, 4)
    assert panels(cached, later) == panels(tables(gold), later)
    assert breach_keys(d.breaches(cached, d.resolve_range("1h", now=later), DEFAULT))[0] == (
        at("12:12"),
        "Norway",
        0.4,
    )


def test_compaction_between_refreshes_adds_no_row(gold):
    from deltalake import DeltaTable

    cache = d.GoldCache()
    d.GoldTables.open(gold, cache, NOW)
    for path in (gold.paths.flight_phase_counts, gold.paths.anomaly_alerts):
        DeltaTable(path).optimize.compact()
    cached = d.GoldTables.open(gold, cache, NOW)
    assert [cache.entry(gold, n).incremental_loads for n in ("flight_phase_counts", "anomaly_alerts")] == [
        1,
        1,
    ]
    assert cached.state("anomaly_alerts").rows.num_rows == 7
    assert cached.state("flight_phase_counts").rows.num_rows == 9
    assert panels(cached) == panels(tables(gold))


def test_a_table_written_anew_is_read_anew(gold):
    import shutil

    from support.dashboard_data import anomaly_records, append_by_window

    cache = d.GoldCache()
    d.GoldTables.open(gold, cache, NOW)
    shutil.rmtree(gold.paths.anomaly_alerts)
    # More commits than before, so that only the table's identity tells the two apart.
    only_spain = [r for r in anomaly_records(NOW) if r["origin_country"] == "Spain"] * 1
    for minute in range(6):
        append_by_window(
            gold.paths.anomaly_alerts,
            "anomaly_alerts",
            [
                dict(
                    r,
                    window_start=r["window_start"] + timedelta(minutes=minute),
                    window_end=r["window_end"] + timedelta(minutes=minute),
                )
                for r in only_spain
            ],
        )
    cached = d.GoldTables.open(gold, cache, NOW)
    assert cache.entry(gold, "anomaly_alerts").full_loads == 2
    assert d.anomaly_rates(cached, d.resolve_range("1h", now=NOW), 0.1)["countries"] == ["Spain"]
    assert panels(cached) == panels(tables(gold))


def test_ranges_older_than_the_cache_are_read_from_the_table(gold):
    cache = d.GoldCache(span=timedelta(minutes=30))
    cached = d.GoldTables.open(gold, cache, NOW)
    assert cached.state("anomaly_alerts").horizon == NOW - timedelta(minutes=30)
    assert sorted(set(cached.state("anomaly_alerts").rows["origin_country"].to_pylist())) == [
        "France",
        "Germany",
        "Portugal",
        "Spain",
    ]
    assert panels(cached) == panels(tables(gold))
    later = d.GoldTables.open(gold, cache, NOW + timedelta(minutes=15))
    # 11:54 fell out of the cache; 11:55 and 12:00 stay.
    assert sorted(set(later.state("anomaly_alerts").rows["window_start"].to_pylist())) == [
        NOW - timedelta(minutes=15),
        NOW - timedelta(minutes=10),
    ]
    assert panels(later, NOW + timedelta(minutes=15)) == panels(tables(gold), NOW + timedelta(minutes=15))


def test_a_request_that_saw_an_older_version_keeps_the_cache(gold, monkeypatch):
    """Two requests at once: the one that opened the table before the other's refresh must not
    throw the newer cache away."""
    from deltalake import DeltaTable

    cache = d.GoldCache()
    d.GoldTables.open(gold, cache, NOW)
    monkeypatch.setattr(
        "flight_gold.dashboard.model.open_table", lambda path, config: DeltaTable(path, version=1)
    )
    older = d.GoldTables.open(gold, cache, NOW)
    entry = cache.entry(gold, "anomaly_alerts")
    assert (entry.full_loads, entry.incremental_loads, entry.version) == (1, 0, 3)
    assert older.state("anomaly_alerts").rows.num_rows == 7


def test_a_table_that_disappears_is_missing_again(gold):
    import shutil

    cache = d.GoldCache()
    d.GoldTables.open(gold, cache, NOW)
    shutil.rmtree(gold.paths.flight_phase_counts)
    cached = d.GoldTables.open(gold, cache, NOW)
    assert cached.status("flight_phase_counts") == "missing"
    assert d.phase_counts(cached, d.resolve_range("1h", now=NOW))["status"] == "missing"


# -- the last alert, from the alert DAG's ledger ------------------------------------------------


def test_no_ledger_yet_means_no_alert_sent(lakehouse):
    result = d.last_alert(lakehouse, DEFAULT)
    assert result == {
        "dag_id": "gold_anomaly_alerts",
        "ledger": f"{lakehouse.lakehouse_root}/_alerts/gold_anomaly_alerts.json",
        "sent_at": None,
        "run_id": None,
        "breaches": None,
        "last_check": None,
        "status": "none",
        "message": "no alert sent yet: the DAG gold_anomaly_alerts has not checked the Gold table so far",
    }


def test_the_last_alert_sent_comes_from_the_ledger(lakehouse):
    store = alerts.LedgerStore(DEFAULT.ledger_location(lakehouse), lakehouse)
    checked = NOW + timedelta(minutes=5)
    store.save(alerts.Ledger(version=3, updated_at=checked))
    assert (
        d.last_alert(lakehouse, DEFAULT)["status"],
        d.last_alert(lakehouse, DEFAULT)["message"],
        d.last_alert(lakehouse, DEFAULT)["last_check"],
    ) == ("none", "no alert sent yet", at("12:15"))
    store.save(
        alerts.Ledger(
            version=4,
            updated_at=checked,
            last_alert={
                "at": "2025-06-01T12:15:00Z",
                "run_id": "scheduled__2025-06-01T12:15:00+00:00",
                "breaches": 3,
                "gold_versions": [3, 4],
            },
        )
    )
    result = d.last_alert(lakehouse, DEFAULT)
    assert (
        result["status"],
        result["sent_at"],
        result["run_id"],
        result["breaches"],
        result["last_check"],
    ) == ("sent", at("12:15"), "scheduled__2025-06-01T12:15:00+00:00", 3, at("12:15"))


def test_an_unreadable_ledger_is_reported_not_raised(lakehouse):
    where = Path(DEFAULT.ledger_location(lakehouse))
    where.parent.mkdir(parents=True)
    where.write_text("{not json")
    result = d.last_alert(lakehouse, DEFAULT)
    assert result["status"] == "error"
    assert result["message"].startswith(f"alert ledger {where} is unreadable")


# -- a table written by Spark -------------------------------------------------------------------


def test_reads_a_gold_table_written_by_spark(spark, lakehouse):
    """delta-rs must read what the streaming job writes (Spark's Delta writer, its protocol and
    statistics), not only what the tests write with delta-rs."""
    from flight_gold.spark.schemas import GOLD_SCHEMAS

    flight_phase_counts_schema = GOLD_SCHEMAS["flight_phase_counts"]

    rows = [tuple(r[c] for c in flight_phase_counts_schema.fieldNames()) for r in phase_records(NOW)]
    for minute in sorted({r[0] for r in rows}):
        batch = [r for r in rows if r[0] == minute]
        spark.createDataFrame(batch, flight_phase_counts_schema).write.format("delta").mode("append").save(
            lakehouse.paths.flight_phase_counts
        )
    t = tables(lakehouse)
    result = d.phase_counts(t, d.resolve_range("1h", now=NOW))
    assert result["minutes"] == [at("11:58"), at("11:59"), at("12:00"), at("12:06")]
    assert {p["phase"]: p["flight_count"] for p in result["phases"]}["CRUISE"] == [10, 12, 9, 11]
    fresh = {f["table"]: f for f in d.freshness(t, NOW)["tables"]}["flight_phase_counts"]
    assert (fresh["rows"], fresh["newest_window_end"], fresh["lag_seconds"]) == (9, at("12:07"), 180.0)


def test_naive_datetimes_are_utc_whatever_the_machine_zone(monkeypatch):
    """Gold and Airflow timestamps are UTC; a naive one must not be read in the local zone."""
    import time
    from datetime import datetime, timezone

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert iso(datetime(2024, 5, 1, 10, 0)) == "2024-05-01T10:00:00Z"
        assert iso(datetime(2024, 5, 1, 10, 0, 0, 250000)) == "2024-05-01T10:00:00.250000Z"
        assert iso(datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))) == "2024-05-01T10:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()
