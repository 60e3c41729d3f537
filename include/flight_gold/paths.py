"""Where every table and checkpoint lives under the lakehouse root.

The layout is the same on a local folder and on s3a://: `silver/flights_ml`,
`gold/streaming_aggregations/<table>`, and checkpoints under `_checkpoints/`, apart from the
tables so that VACUUM of a table can never touch a stream's state.
"""

from __future__ import annotations

from dataclasses import dataclass

SILVER_FLIGHTS_ML = "silver/flights_ml"
GOLD_AGGREGATIONS = "gold/streaming_aggregations"
CHECKPOINTS = "_checkpoints"
GOLD_TABLES = ("flight_phase_counts", "anomaly_alerts")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


@dataclass(frozen=True)
class LakehousePaths:
    root: str

    @property
    def silver_flights_ml(self) -> str:
        return join(self.root, SILVER_FLIGHTS_ML)

    def gold_table(self, name: str) -> str:
        if name not in GOLD_TABLES:
            raise ValueError(f"unknown Gold table {name!r}; known: {', '.join(GOLD_TABLES)}")
        return join(self.root, GOLD_AGGREGATIONS, name)

    def checkpoint(self, query: str) -> str:
        if query not in GOLD_TABLES:
            raise ValueError(f"unknown Gold query {query!r}; known: {', '.join(GOLD_TABLES)}")
        return join(self.root, CHECKPOINTS, GOLD_AGGREGATIONS, query)

    @property
    def flight_phase_counts(self) -> str:
        return self.gold_table("flight_phase_counts")

    @property
    def anomaly_alerts(self) -> str:
        return self.gold_table("anomaly_alerts")
