"""flight_gold.alerting without Airflow: breach selection, incremental reads of real Delta tables
(written with deltalake, one test with Spark), the ledger, and the messages.

Channels here are recording stand-ins; tests/airflow sends through the real providers to real
SMTP and HTTP servers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from flight_gold import alerting as alerts
from flight_gold.alerting import (
    AlertConfigError,
    AlertContext,
    AlertDeliveryError,
    AlertSettings,
    Breach,
    BreachKey,
    LedgerError,
    LedgerStore,
    format_email,
    format_slack,
    run_check,
    select_breaches,
    window_text,
)
from flight_gold.lake.schemas import GOLD_ARROW_SCHEMAS

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
SCHEMA = GOLD_ARROW_SCHEMAS["anomaly_alerts"]
DEFAULT = AlertSettings()


# -- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One Gold row: the window starting `minute` minutes after T0, 5 minutes long."""

    minute: int
    country: str
    total: int
    anomalous: int  # observations with at least one anomaly
    altitude: int = 0
    velocity: int = 0
    max_altitude: float | None = 11000.0
    max_velocity: float | None = 900.0

    @property
    def start(self) -> datetime:
        return T0 + timedelta(minutes=self.minute)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=5)

    @property
    def rate(self) -> float:
        # The same division Spark does: count / count, in double.
        return self.anomalous / self.total

    @property
    def key(self) -> BreachKey:
        return BreachKey(self.start, self.end, self.country)


def gold_table(specs) -> pa.Table:
    columns = {name: [] for name in SCHEMA.names}
    for s in specs:
        values = dict(
            window_start=s.start,
            window_end=s.end,
            origin_country=s.country,
            total_observations=s.total,
            altitude_anomalies=s.altitude,
            velocity_anomalies=s.velocity,
            anomaly_rate=s.rate,
            max_altitude=s.max_altitude,
            min_altitude=100.0,
            max_velocity=s.max_velocity,
            avg_altitude=5000.0,
            avg_velocity=600.0,
            stddev_altitude=10.0,
            stddev_velocity=5.0,
        )
        for name in SCHEMA.names:
            columns[name].append(values[name])
    return pa.table(columns, schema=SCHEMA)


def append(config, specs) -> None:
    write_deltalake(config.paths.anomaly_alerts, gold_table(specs), mode="append")


def expected_keys(specs, threshold=0.1, min_observations=1) -> set[BreachKey]:
    """Worked out from the specs with plain Python, not with the code under test."""
    return {s.key for s in specs if s.anomalous / s.total > threshold and s.total >= min_observations}


@dataclass
class Recorder:
    """A channel that keeps every message it is asked to send, and fails `failures` times first."""

    name: str
    failures: int = 0
    messages: list[list[Breach]] = field(default_factory=list)
    attempts: int = 0

    def send(self, breaches, context):
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"{self.name} is down")
        self.messages.append(list(breaches))

    def keys(self) -> list[BreachKey]:
        return [b.key for message in self.messages for b in message]


def ledger_doc(config) -> dict:
    with open(AlertSettings().ledger_location(config), encoding="utf-8") as handle:
        return json.load(handle)


# Two breaches, one at exactly 0.1 (no breach), one below, one above in a tiny window.
BASE = [
    Spec(
        0, "France", total=40, anomalous=12, altitude=8, velocity=5, max_altitude=13150.0, max_velocity=1104.4
    ),  # 0.30
    Spec(0, "Spain", total=10, anomalous=1, altitude=1),  # exactly 0.10: not a breach
    Spec(1, "Italy", total=50, anomalous=2, velocity=2),  # 0.04
    Spec(1, "Germany", total=8, anomalous=2, altitude=2),  # 0.25
    Spec(2, "Malta", total=2, anomalous=1, velocity=1),  # 0.50 in a 2-observation window
]


# -- selection ----------------------------------------------------------------------------------


def test_selection_is_strictly_above_the_threshold_sorted_by_rate():
    breaches = select_breaches(gold_table(BASE), DEFAULT)
    assert [(b.origin_country, b.anomaly_rate) for b in breaches] == [
        ("Malta", 0.5),
        ("France", 0.3),
        ("Germany", 0.25),
    ]
    assert {b.key for b in breaches} == expected_keys(BASE)
    france = breaches[1]
    assert (
        france.window_start,
        france.window_end,
        france.total_observations,
        france.altitude_anomalies,
        france.velocity_anomalies,
        france.max_altitude,
        france.max_velocity,
    ) == (T0, T0 + timedelta(minutes=5), 40, 8, 5, 13150.0, 1104.4)


def test_min_observations_silences_small_windows_and_threshold_is_a_setting():
    settings = AlertSettings(threshold=0.2, min_observations=5)
    breaches = select_breaches(gold_table(BASE), settings)
    assert {b.key for b in breaches} == expected_keys(BASE, 0.2, 5) == {BASE[0].key, BASE[3].key}
    lower = select_breaches(gold_table(BASE), AlertSettings(threshold=0.04))
    assert {b.key for b in lower} == expected_keys(BASE, 0.04)


def test_a_key_seen_twice_is_one_breach_the_last_row_wins():
    first = Spec(0, "France", total=10, anomalous=5)
    again = Spec(0, "France", total=10, anomalous=6)
    breaches = select_breaches(gold_table([first, again]), DEFAULT)
    assert [(b.key, b.anomaly_rate) for b in breaches] == [(first.key, 0.6)]


# -- incremental runs ---------------------------------------------------------------------------


def test_first_run_alerts_every_breach_once_then_only_new_ones(lakehouse):
    append(lakehouse, BASE)
    slack, email = Recorder("slack"), Recorder("email")

    result = run_check(lakehouse, DEFAULT, [slack, email], run_id="r1")
    assert result["breaches_found"] == 3
    assert result["breaches_sent"] == {"slack": 3, "email": 3}
    assert (result["gold_version_from"], result["gold_version_to"], result["read"]) == (None, 0, "snapshot")
    for channel in (slack, email):
        assert len(channel.messages) == 1
        assert sorted(channel.keys()) == sorted(expected_keys(BASE))
    doc = ledger_doc(lakehouse)
    assert doc["version"] == 0 and doc["sent_after_version"] == {}
    assert doc["max_window_end"] == "2024-05-01T10:07:00Z"

    # No new Gold rows: nothing read, nothing sent.
    result = run_check(lakehouse, DEFAULT, [slack, email], run_id="r2")
    assert (result["breaches_found"], result["read"]) == (0, "none")
    assert len(slack.messages) == len(email.messages) == 1

    # New rows without a breach: the marker moves, nothing is sent.
    append(lakehouse, [Spec(3, "France", total=20, anomalous=2)])  # exactly 0.1
    result = run_check(lakehouse, DEFAULT, [slack, email], run_id="r3")
    assert (result["breaches_found"], result["gold_version_to"], result["read"]) == (0, 1, "changes")
    assert len(slack.messages) == len(email.messages) == 1
    assert ledger_doc(lakehouse)["version"] == 1

    # One new breach: that one only.
    new = Spec(4, "Portugal", total=30, anomalous=4)
    append(lakehouse, [new, Spec(4, "Spain", total=30, anomalous=3)])
    result = run_check(lakehouse, DEFAULT, [slack, email], run_id="r4")
    assert result["breaches_sent"] == {"slack": 1, "email": 1}
    assert slack.messages[-1] == email.messages[-1]
    assert [b.key for b in slack.messages[-1]] == [new.key]
    assert ledger_doc(lakehouse)["version"] == 2


def test_optimize_rewrites_are_not_new_rows(lakehouse):
    append(lakehouse, BASE[:2])
    append(lakehouse, BASE[2:])
    slack = Recorder("slack")
    run_check(lakehouse, DEFAULT, [slack])
    DeltaTable(lakehouse.paths.anomaly_alerts).optimize.compact()
    new = Spec(5, "Norway", total=10, anomalous=3)
    append(lakehouse, [new])

    result = run_check(lakehouse, DEFAULT, [slack])
    assert result["read"] == "changes"
    assert (result["gold_version_from"], result["gold_version_to"]) == (1, 3)
    assert [b.key for b in slack.messages[-1]] == [new.key]
    assert len(slack.messages) == 2


def test_a_full_refresh_does_not_alert_again(lakehouse):
    """--full-refresh deletes every Gold row (one DELETE commit) and appends every window again:
    the breaches already alerted must not go out a second time; a window after them still does."""
    append(lakehouse, BASE[:3])
    append(lakehouse, BASE[3:])
    slack, email = Recorder("slack"), Recorder("email")
    run_check(lakehouse, DEFAULT, [slack, email])
    assert sorted(slack.keys()) == sorted(expected_keys(BASE))

    DeltaTable(lakehouse.paths.anomaly_alerts).delete()
    append(lakehouse, BASE[:2])  # rebuilt in other batches than the first time
    append(lakehouse, BASE[2:])
    result = run_check(lakehouse, DEFAULT, [slack, email])
    assert (result["read"], result["gold_version_from"], result["gold_version_to"]) == ("changes", 1, 4)
    assert result["breaches_found"] == 0
    assert len(slack.messages) == len(email.messages) == 1

    new = Spec(3, "Norway", total=10, anomalous=3)
    append(lakehouse, [new])
    run_check(lakehouse, DEFAULT, [slack, email])
    assert [b.key for b in slack.messages[-1]] == [b.key for b in email.messages[-1]] == [new.key]
    assert len(slack.messages) == 2


def test_vacuumed_commits_fall_back_to_windows_after_the_last_one_seen(lakehouse):
    append(lakehouse, BASE)
    slack = Recorder("slack")
    run_check(lakehouse, DEFAULT, [slack])
    new = Spec(6, "Norway", total=10, anomalous=3)
    append(lakehouse, [new])
    table = DeltaTable(lakehouse.paths.anomaly_alerts)
    table.optimize.compact()
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)

    result = run_check(lakehouse, DEFAULT, [slack])
    assert result["read"] == "fallback"
    assert [b.key for b in slack.messages[-1]] == [new.key]
    assert ledger_doc(lakehouse)["version"] == DeltaTable(lakehouse.paths.anomaly_alerts).version()


def test_a_recreated_table_behind_the_ledger_falls_back_too(lakehouse):
    append(lakehouse, BASE)
    append(lakehouse, [Spec(3, "Austria", total=10, anomalous=1)])
    slack = Recorder("slack")
    run_check(lakehouse, DEFAULT, [slack])
    assert ledger_doc(lakehouse)["version"] == 1
    new = Spec(7, "Norway", total=10, anomalous=3)
    write_deltalake(lakehouse.paths.anomaly_alerts, gold_table([*BASE, new]), mode="overwrite")
    # Recreate from scratch: version 0 again.
    import shutil

    shutil.rmtree(lakehouse.paths.anomaly_alerts)
    write_deltalake(lakehouse.paths.anomaly_alerts, gold_table([*BASE, new]))

    result = run_check(lakehouse, DEFAULT, [slack])
    assert (result["read"], result["gold_version_to"]) == ("fallback", 0)
    assert [b.key for b in slack.messages[-1]] == [new.key]


def test_no_gold_table_yet_is_not_an_error(lakehouse):
    slack = Recorder("slack")
    result = run_check(lakehouse, DEFAULT, [slack])
    assert (result["breaches_found"], result["read"], slack.attempts) == (0, "none", 0)
    assert not os.path.exists(DEFAULT.ledger_location(lakehouse))


# -- failures and retries -----------------------------------------------------------------------


def test_a_failed_channel_fails_the_run_and_keeps_the_marker(lakehouse):
    append(lakehouse, BASE)
    slack, email = Recorder("slack", failures=1), Recorder("email")

    with pytest.raises(AlertDeliveryError, match="slack: slack is down"):
        run_check(lakehouse, DEFAULT, [slack, email])
    # Email went out and is recorded; the marker did not move.
    assert len(email.messages) == 1
    doc = ledger_doc(lakehouse)
    assert doc["version"] is None
    assert doc["sent_after_version"].get("slack", []) == []
    assert {BreachKey.from_json(k) for k in doc["sent_after_version"]["email"]} == expected_keys(BASE)

    # A new breach lands before the retry: Slack gets all four, email only the new one.
    new = Spec(8, "Norway", total=10, anomalous=3)
    append(lakehouse, [new])
    result = run_check(lakehouse, DEFAULT, [slack, email])
    assert result["breaches_found"] == 4
    assert result["breaches_sent"] == {"slack": 4, "email": 1}
    assert len(slack.messages) == 1 and sorted(slack.keys()) == sorted(expected_keys([*BASE, new]))
    assert [len(m) for m in email.messages] == [3, 1] and email.keys()[-1] == new.key
    assert sorted(email.keys()) == sorted(slack.keys())
    doc = ledger_doc(lakehouse)
    assert (doc["version"], doc["sent_after_version"]) == (1, {})

    # And nothing again afterwards.
    run_check(lakehouse, DEFAULT, [slack, email])
    assert (len(slack.messages), len(email.messages)) == (1, 2)


def test_every_channel_failing_sends_nothing_twice(lakehouse):
    append(lakehouse, BASE)
    slack, email = Recorder("slack", failures=2), Recorder("email", failures=1)
    for _ in range(2):
        with pytest.raises(AlertDeliveryError):
            run_check(lakehouse, DEFAULT, [slack, email])
    assert (slack.messages, len(email.messages)) == ([], 1)
    run_check(lakehouse, DEFAULT, [slack, email])
    assert (len(slack.messages), len(email.messages)) == (1, 1)
    assert (slack.attempts, email.attempts) == (3, 2)


def test_no_channel_is_a_configuration_error(lakehouse):
    with pytest.raises(AlertConfigError, match="no alert channel"):
        run_check(lakehouse, DEFAULT, [])


# -- the ledger ---------------------------------------------------------------------------------


def test_ledger_is_readable_json_and_round_trips(lakehouse):
    append(lakehouse, BASE)
    email = Recorder("email")
    with pytest.raises(AlertDeliveryError):
        run_check(
            lakehouse,
            DEFAULT,
            [Recorder("slack", failures=1), email],
            now=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        )
    path = DEFAULT.ledger_location(lakehouse)
    assert path == os.path.join(lakehouse.lakehouse_root, "_alerts", "gold_anomaly_alerts.json")
    doc = ledger_doc(lakehouse)
    assert doc == {
        "ledger": "gold_anomaly_alerts",
        "format": 1,
        "version": None,
        "max_window_end": None,
        "sent_after_version": {
            "email": [
                ["2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z", "France"],
                ["2024-05-01T10:01:00Z", "2024-05-01T10:06:00Z", "Germany"],
                ["2024-05-01T10:02:00Z", "2024-05-01T10:07:00Z", "Malta"],
            ],
            "slack": [],
        },
        "updated_at": "2024-05-01T12:00:00Z",
        "last_alert": None,
    }
    ledger = LedgerStore(path, lakehouse).load()
    assert ledger.to_json() == open(path, encoding="utf-8").read()
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")]


def test_an_unreadable_ledger_stops_the_check_with_a_clear_error(lakehouse):
    append(lakehouse, BASE)
    path = DEFAULT.ledger_location(lakehouse)
    os.makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    slack = Recorder("slack")
    with pytest.raises(LedgerError, match="gold_anomaly_alerts.json is unreadable"):
        run_check(lakehouse, DEFAULT, [slack])
    assert slack.attempts == 0


def test_ledger_on_s3(monkeypatch):
    from flight_gold.core.config import GoldConfig
    from support.s3_server import running_s3_server

    with running_s3_server() as server:
        server.create_bucket("lake")
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        config = GoldConfig.from_env({}, lakehouse_root="s3a://lake/prod", s3_endpoint=server.endpoint)
        store = LedgerStore(AlertSettings().ledger_location(config), config)
        assert store.uri == "s3a://lake/prod/_alerts/gold_anomaly_alerts.json"
        assert store.load().version is None
        ledger = store.load()
        ledger.version = 12
        ledger.sent("email").add(Spec(0, "France", 10, 5).key)
        store.save(ledger)
        assert server.keys("lake") == ["prod/_alerts/gold_anomaly_alerts.json"]
        again = store.load()
        assert (again.version, again.sent("email")) == (12, {Spec(0, "France", 10, 5).key})


# -- a table written by Spark -------------------------------------------------------------------


def test_changes_of_a_spark_written_table_skip_spark_optimize(spark, lakehouse):
    from flight_gold.spark.schemas import GOLD_SCHEMAS

    anomaly_alerts_schema = GOLD_SCHEMAS["anomaly_alerts"]

    path = lakehouse.paths.anomaly_alerts

    def spark_append(specs):
        spark.createDataFrame(gold_table(specs).to_pylist(), anomaly_alerts_schema).write.format(
            "delta"
        ).mode("append").save(path)

    spark_append(BASE[:3])
    spark_append(BASE[3:])
    slack = Recorder("slack")
    first = run_check(lakehouse, DEFAULT, [slack])
    assert (first["read"], first["gold_version_to"]) == ("snapshot", 1)
    assert sorted(slack.keys()) == sorted(expected_keys(BASE))
    spark.sql(f"OPTIMIZE delta.`{path}`").collect()
    new = Spec(9, "Norway", total=10, anomalous=3, max_altitude=None)
    spark_append([new, Spec(9, "Spain", total=10, anomalous=1)])

    result = run_check(lakehouse, DEFAULT, [slack])
    assert (result["read"], result["gold_version_from"], result["gold_version_to"]) == ("changes", 1, 3)
    assert [b.key for b in slack.messages[-1]] == [new.key]
    assert slack.messages[-1][0].max_altitude is None


# -- settings -----------------------------------------------------------------------------------


def test_settings_from_the_environment_and_params():
    settings = AlertSettings.from_env(
        {
            "GOLD_ALERTS_THRESHOLD": "0.25",
            "GOLD_ALERTS_MIN_OBSERVATIONS": "5",
            "GOLD_ALERTS_MAX_ROWS": "3",
            "GOLD_ALERTS_LEDGER": "/x/l.json",
        }
    )
    assert settings == AlertSettings(threshold=0.25, min_observations=5, max_rows=3, ledger_uri="/x/l.json")
    assert AlertSettings.from_env({}) == AlertSettings(0.1, 1, 20, None)
    assert settings.with_params({"threshold": 0.3, "min_observations": 2, "max_rows": None}) == AlertSettings(
        threshold=0.3, min_observations=2, max_rows=3, ledger_uri="/x/l.json"
    )
    assert alerts.schedule_from_env({}) == "*/5 * * * *"
    assert alerts.schedule_from_env({"GOLD_ALERTS_SCHEDULE": "*/1 * * * *"}) == "*/1 * * * *"
    assert alerts.email_recipients({"ALERT_EMAIL_TO": " ops@example.com, ,dev@example.com "}) == [
        "ops@example.com",
        "dev@example.com",
    ]
    assert alerts.email_recipients({}) == []


@pytest.mark.parametrize(
    "env, message",
    [
        ({"GOLD_ALERTS_THRESHOLD": "ten"}, "GOLD_ALERTS_THRESHOLD must be a number, got 'ten'"),
        ({"GOLD_ALERTS_THRESHOLD": "10"}, r"threshold must be a fraction in \[0, 1\)"),
        ({"GOLD_ALERTS_THRESHOLD": "-0.1"}, r"threshold must be a fraction in \[0, 1\)"),
        ({"GOLD_ALERTS_MIN_OBSERVATIONS": "0"}, "min_observations must be an integer >= 1"),
        ({"GOLD_ALERTS_MIN_OBSERVATIONS": "2.5"}, "GOLD_ALERTS_MIN_OBSERVATIONS must be an integer"),
        ({"GOLD_ALERTS_MAX_ROWS": "1000"}, r"max_rows must be an integer in \[1, 100\]"),
    ],
)
def test_bad_settings_are_named(env, message):
    with pytest.raises(AlertConfigError, match=message):
        AlertSettings.from_env(env)


def test_bad_recipients_are_named():
    with pytest.raises(AlertConfigError, match="ALERT_EMAIL_TO .* 'ops.example.com'"):
        alerts.email_recipients({"ALERT_EMAIL_TO": "dev@example.com,ops.example.com"})


# -- messages -----------------------------------------------------------------------------------

CONTEXT = AlertContext(
    threshold=0.1,
    min_observations=1,
    max_rows=20,
    gold_table="/lake/gold/anomaly_alerts",
    versions="versions 3–7",
    run_id="scheduled__2024-05-01T10:10:00+00:00",
)


def breaches_of(specs) -> list[Breach]:
    return select_breaches(gold_table(specs), DEFAULT)


def test_slack_message_lists_every_breach_by_rate():
    payload = format_slack(breaches_of(BASE), CONTEXT)
    assert payload == {
        "text": "\n".join(
            [
                ":rotating_light: *Flight anomaly alert*: 3 windows with anomaly_rate above 10%",
                "• *Malta* 2024-05-01 10:02–10:07 UTC: *50.0%* of 2 observations (altitude anomalies 0, "
                "velocity anomalies 1; max altitude 11,000 m, max velocity 900.0 km/h)",
                "• *France* 2024-05-01 10:00–10:05 UTC: *30.0%* of 40 observations (altitude anomalies 8, "
                "velocity anomalies 5; max altitude 13,150 m, max velocity 1,104.4 km/h)",
                "• *Germany* 2024-05-01 10:01–10:06 UTC: *25.0%* of 8 observations (altitude anomalies 2, "
                "velocity anomalies 0; max altitude 11,000 m, max velocity 900.0 km/h)",
                "_Gold table /lake/gold/anomaly_alerts, versions 3–7; gold_anomaly_alerts run "
                "scheduled__2024-05-01T10:10:00+00:00_",
            ]
        )
    }


def test_long_lists_are_cut_with_and_n_more():
    specs = [Spec(i, f"Country{i:02d}", total=100, anomalous=20 + i) for i in range(7)]
    context = AlertContext(0.1, 1, 3, "/g", "version 0")
    lines = format_slack(breaches_of(specs), context)["text"].splitlines()
    assert lines[0].endswith("7 windows with anomaly_rate above 10%")
    assert [line.split("*")[1] for line in lines[1:4]] == ["Country06", "Country05", "Country04"]
    assert lines[4:] == ["_and 4 more_", "_Gold table /g, version 0_"]
    content = format_email(breaches_of(specs), context)
    assert content.html.count("<tr>") == 1 + 3
    assert "<p>and 4 more</p>" in content.html
    assert "\nand 4 more\n" in content.text
    assert content.subject == (
        "[Flight Gold] Anomaly alert: 7 windows with anomaly_rate above 10% "
        "(Country06, Country05, Country04 and 4 more)"
    )


def test_email_has_a_plain_table_and_an_html_table():
    content = format_email(breaches_of(BASE), CONTEXT)
    assert content.subject == (
        "[Flight Gold] Anomaly alert: 3 windows with anomaly_rate above 10% (Malta, France, Germany)"
    )
    assert content.text.splitlines()[:5] == [
        "Flight anomaly alert: 3 windows with anomaly_rate above 10%.",
        "",
        "Country  Window (UTC)            Anomaly rate  Observations  Altitude anomalies  "
        "Velocity anomalies  Max altitude  Max velocity",
        "Malta    2024-05-01 10:02–10:07         50.0%             2                   0  "
        "                 1      11,000 m    900.0 km/h",
        "France   2024-05-01 10:00–10:05         30.0%            40                   8  "
        "                 5      13,150 m  1,104.4 km/h",
    ]
    assert (
        '<tr><td style="text-align:left">France</td><td style="text-align:left">'
        '2024-05-01 10:00–10:05</td><td style="text-align:right">30.0%</td>'
        '<td style="text-align:right">40</td><td style="text-align:right">8</td>'
        '<td style="text-align:right">5</td><td style="text-align:right">13,150 m</td>'
        '<td style="text-align:right">1,104.4 km/h</td></tr>'
    ) in content.html
    assert "and " not in content.text.split("Max velocity")[1].split("Gold table")[0]


def test_names_are_escaped_and_missing_maxima_shown_as_na():
    odd = Spec(0, "A&B <C>", total=10, anomalous=5, max_altitude=None, max_velocity=None)
    slack = format_slack(breaches_of([odd]), CONTEXT)["text"]
    assert "*A&amp;B &lt;C&gt;*" in slack and "max altitude n/a, max velocity n/a" in slack
    content = format_email(breaches_of([odd]), CONTEXT)
    assert ">A&amp;B &lt;C&gt;</td>" in content.html and "<C>" not in content.html
    assert "A&B <C>" in content.text
    assert content.subject.startswith("[Flight Gold] Anomaly alert: 1 window with")


def test_min_observations_and_odd_thresholds_are_stated():
    context = AlertContext(0.125, 5, 20, "/g", "version 0")
    assert (
        format_slack(breaches_of([Spec(0, "France", 10, 5)]), context)["text"].splitlines()[0]
        == ":rotating_light: *Flight anomaly alert*: 1 window with anomaly_rate above 12.5%"
        " (at least 5 observations)"
    )


def test_window_text():
    assert window_text(T0, T0 + timedelta(minutes=5)) == "2024-05-01 10:00–10:05"
    late = datetime(2024, 5, 1, 23, 58, tzinfo=UTC)
    assert window_text(late, late + timedelta(minutes=5)) == "2024-05-01 23:58–2024-05-02 00:03"
    assert window_text(T0, T0 + timedelta(seconds=90)) == "2024-05-01 10:00:00–10:01:30"
    naive = datetime(2024, 5, 1, 10, 0)
    assert window_text(naive, naive + timedelta(minutes=1)) == "2024-05-01 10:00–10:01"
