"""Keeping the continuous Gold stream alive and watched, without Airflow or a JVM: the logic the
Airflow tasks of `gold_streaming`, `gold_streaming_stop` and `gold_freshness` wrap
(flight_gold.airflow), unit-tested on its own.

Modules:
    backoff      the restart delays after unplanned stops (doubling, capped, reset when stable)
    control      the stop request document (`_control/gold_streaming_stop.json`)
    health       the stream's health document (`_control/gold_streaming_health.json`)
    events       what the supervisor tells people: one message per event and channel, rate-limited
                 with a summary (state in `_control/gold_streaming_alerts.json`)
    freshness    how far each Gold table lags what Silver_ML's data closes (file statistics)
    staleness    the freshness alert: one message per incident, one when resolved
                 (ledger `_alerts/gold_freshness.json`)

Every document lives beside the lakehouse tables (local folder or S3, flight_gold.lake.documents)
so that it outlives a task, a worker or a scheduler restart.
"""
