"""flight_gold.spark.queries.start_queries with the tests' Spark session: a stop asked for while the
queries start (a supervisor's SIGTERM, followed by its SIGKILL seconds later) starts no further
query, so that the job has fewer first batches to cut before it exits."""

from __future__ import annotations

import threading

from flight_gold.spark import queries as q
from support.jobs import START, append_silver, silver_frame


def test_a_stop_while_the_queries_start_starts_no_further_query(spark, lakehouse, monkeypatch):
    append_silver(lakehouse, silver_frame(20, START, 60, seed=1))
    stop = threading.Event()
    ensured = []
    ensure = q.ensure_gold_table

    def ensure_then_stop(spark, config, name):
        # The stop lands while the first query is being set up.
        ensure(spark, config, name)
        ensured.append(name)
        stop.set()

    monkeypatch.setattr(q, "ensure_gold_table", ensure_then_stop)
    started = q.start_queries(spark, lakehouse.replace(trigger="available-now"), stop=stop)
    try:
        assert [s.name for s in started] == ensured == [lakehouse.queries[0]]
    finally:
        for query in started:
            query.stop()
    assert not q.start_queries(spark, lakehouse, stop=stop)
    assert not [s for s in spark.streams.active if s.name in lakehouse.queries]
