"""The supervisor's logic without Airflow: restart delays, the stop request, the health document,
and the alert throttle with its summaries, on a real (local) lakehouse folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.supervision import events
from flight_gold.supervision.backoff import RestartBackoff
from flight_gold.supervision.control import StopRequests
from flight_gold.supervision.events import StreamNotifier
from flight_gold.supervision.health import HealthStore, StreamHealth
from support.receivers import Recorder

T0 = datetime(2024, 5, 1, 10, 32, tzinfo=UTC)
DAG, RUN = "gold_streaming", "manual__2024-05-01T10:00:00+00:00"


@pytest.fixture
def config(tmp_path) -> GoldConfig:
    return GoldConfig.from_env({}, lakehouse_root=str(tmp_path / "lakehouse"))


def stop_event(at: datetime, delay: float = 5) -> events.StreamEvent:
    return events.unplanned_stop(
        DAG, RUN, -9, "streaming_gold: query flight_phase_counts failed: boom", delay, at
    )


def test_backoff_doubles_up_to_the_cap_and_starts_over_after_a_stable_run():
    backoff = RestartBackoff(first=5, cap=60, stable_after=600)
    assert [backoff.delay(ran_for=3) for _ in range(6)] == [5, 10, 20, 40, 60, 60]
    assert backoff.delay(ran_for=600) == 5
    assert backoff.delay(ran_for=30) == 10


def test_stop_request_older_than_a_new_run_is_cleared_a_newer_one_is_pending(config):
    stops = StopRequests(config)
    assert stops.current() is None and stops.clear_older_than(T0) is None
    stops.request("manual__stop", now=T0)
    assert stops.uri == f"{config.lakehouse_root}/_control/gold_streaming_stop.json"
    assert json.loads(open(stops.uri).read()) == {
        "requested_at": "2024-05-01T10:32:00Z",
        "requested_by": "manual__stop",
    }
    # A run started before the request sees it; a run started after removes it.
    assert stops.pending_since(T0 - timedelta(hours=1)).requested_by == "manual__stop"
    assert stops.clear_older_than(T0 - timedelta(hours=1)) is None and stops.current() is not None
    assert stops.clear_older_than(T0 + timedelta(seconds=1)).requested_by == "manual__stop"
    assert stops.current() is None


def test_health_keeps_a_day_of_restarts_and_the_last_failure(config):
    store = HealthStore(config)
    health = StreamHealth()
    health.supervising(DAG, RUN, 1, "continuous", T0 - timedelta(hours=30))
    health.job_started(T0 - timedelta(hours=30))
    health.unplanned_stop("old failure", -9, 5, T0 - timedelta(hours=25))
    health.job_started(T0 - timedelta(hours=25))
    health.unplanned_stop("query failed: boom", 1, 10, T0)
    store.save(health, now=T0)
    doc = json.loads(open(store.uri).read())
    assert doc["state"] == "restarting" and doc["next_restart_at"] == "2024-05-01T10:32:10Z"
    assert doc["restarts"] == [
        {"at": "2024-05-01T10:32:00Z", "reason": "query failed: boom", "exit_code": 1, "delay_s": 10}
    ]
    assert doc["last_failure"] == {
        "at": "2024-05-01T10:32:00Z",
        "reason": "query failed: boom",
        "exit_code": 1,
    }
    loaded = store.load()
    loaded.job_started(T0 + timedelta(seconds=12))
    store.save(loaded, now=T0 + timedelta(seconds=12))
    doc = json.loads(open(store.uri).read())
    assert (doc["state"], doc["running_since"], len(doc["restarts"])) == (
        "running",
        "2024-05-01T10:32:12Z",
        1,
    )


def test_interval_zero_sends_every_event_to_every_channel(config):
    slack, email = Recorder("slack"), Recorder("email")
    notifier = StreamNotifier(config, [slack, email], interval_s=0)
    for k in range(4):
        at = T0 + timedelta(seconds=30 * k)
        assert notifier.notify(stop_event(at)) == {"slack": "sent", "email": "sent"}
        assert notifier.notify(events.restarted(DAG, RUN, k + 1, at + timedelta(seconds=5))) == {
            "slack": "sent",
            "email": "sent",
        }
    for channel in (slack, email):
        subjects = [n.subject for n in channel.notices]
        assert (
            subjects
            == [
                "[Flight Gold] gold_streaming: the stream stopped unexpectedly; restarting in 5 s",
                "[Flight Gold] gold_streaming: the stream was started again",
            ]
            * 4
        )
    first = slack.notices[0]
    assert first.slack == {"text": first.text}
    assert first.text.splitlines() == [
        "[Flight Gold] gold_streaming: the stream stopped unexpectedly; restarting in 5 s",
        f"gold_streaming · run {RUN} · 2024-05-01 10:32:00 UTC",
        "What happened: The Spark job was killed by SIGKILL (exit code -9) without being asked to stop. "
        "Last error: streaming_gold: query flight_phase_counts failed: boom",
        "Next: It starts again in 5 s and resumes from its checkpoints: no window is lost or written "
        "twice. Nothing to do unless this repeats; the Flight Gold page shows the restarts.",
    ]


def test_a_storm_is_summarised_into_the_next_message_and_flushed_when_due(config):
    slack, email = Recorder("slack"), Recorder("email")
    notifier = StreamNotifier(config, [slack, email], interval_s=300)
    assert notifier.notify(stop_event(T0)) == {"slack": "sent", "email": "sent"}
    # Six more events within the interval: held back, one count per kind.
    for k in range(3):
        at = T0 + timedelta(seconds=20 + 40 * k)
        assert notifier.notify(events.restarted(DAG, RUN, k + 1, at))["slack"] == "held"
        assert notifier.notify(stop_event(at + timedelta(seconds=20)))["email"] == "held"
    assert notifier.flush(T0 + timedelta(seconds=299)) == {}
    # A new notifier (the task was restarted) finds the held-back events in the document.
    notifier = StreamNotifier(config, [slack, email], interval_s=300)
    assert notifier.flush(T0 + timedelta(seconds=300)) == {"slack": "sent", "email": "sent"}
    for channel in (slack, email):
        assert len(channel.notices) == 2
        assert channel.notices[1].subject == (
            "[Flight Gold] gold_streaming: 6 events since 10:32 UTC (3 unplanned stops, 3 restarts)"
        )
    # The next event inside the new interval is held; the one after it carries the summary.
    notifier.notify(events.restarted(DAG, RUN, 4, T0 + timedelta(seconds=400)))
    notifier.notify(stop_event(T0 + timedelta(seconds=610)))
    last = slack.notices[-1].text.splitlines()
    assert last[0] == "[Flight Gold] gold_streaming: the stream stopped unexpectedly; restarting in 5 s"
    assert last[-1] == "And 1 more event since 10:38 UTC: 1 restart."
    assert notifier.pending() == {"slack": None, "email": None}


def test_a_failed_channel_holds_its_event_without_touching_the_other(config):
    slack, email = Recorder("slack", fail=1), Recorder("email")
    notifier = StreamNotifier(config, [slack, email], interval_s=0)
    assert notifier.notify(stop_event(T0)) == {"slack": "failed", "email": "sent"}
    assert notifier.pending()["slack"]["counts"] == {"unplanned_stop": 1}
    assert notifier.flush(T0 + timedelta(seconds=1)) == {"slack": "sent"}
    assert [len(slack.notices), len(email.notices)] == [1, 1]
    assert slack.notices[0].subject.endswith("1 event since 10:32 UTC (1 unplanned stop)")


def test_give_up_says_what_to_do():
    bad = events.gave_up(DAG, RUN, 2, "streaming_gold: error: Silver_ML lacks column flight_phase", T0)
    notice = events.compose(bad)
    assert notice.subject == "[Flight Gold] gold_streaming: the stream gave up and needs you"
    assert (
        "exit code 2: bad input or configuration. Last error: streaming_gold: error: Silver_ML" in notice.text
    )
    assert "Not restarted: a restart would fail the same way." in notice.text
    in_use = events.compose(events.gave_up(DAG, RUN, 3, None, T0))
    assert "another running instance holds the checkpoint." in in_use.text
    assert "stop the other first (DAG gold_streaming_stop)" in in_use.text
    assert "<p>What happened: The Spark job ended with exit code 2" in notice.html
