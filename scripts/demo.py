"""Quick start: Silver_ML from the recorded Paris traffic -> the Gold job (available-now) -> the
two use cases of the seed: the latest Gold windows (live dashboard) and the countries whose
anomaly_rate is above the threshold (automatic alerts).

Idempotent: Silver_ML is built once; the job resumes from its checkpoints on a second run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from flight_gold.core.config import GoldConfig
from flight_gold.feed.replay import replay_all_at_once
from flight_gold.lake.tables import open_table

REPO_ROOT = Path(__file__).resolve().parents[1]
ALERT_THRESHOLD = 0.1


def main() -> int:
    config = GoldConfig.from_env(trigger="available-now")
    started = time.monotonic()
    silver = open_table(config.paths.silver_flights_ml, config)
    if silver is None:
        print(f"Building Silver_ML at {config.paths.silver_flights_ml} from the recorded Paris traffic ...")
        rows = replay_all_at_once(config)
        print(f"  {rows:,} observations written")
    else:
        print(
            f"Silver_ML already at {config.paths.silver_flights_ml} (version {silver.version()}); not rebuilt"
        )

    print("Running the Gold job (available-now) ...", flush=True)
    job = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "streaming_gold.py"),
            "--lakehouse-root",
            config.lakehouse_root,
            "--trigger",
            "available-now",
        ]
    )
    if job.returncode != 0:
        print(f"The Gold job failed with exit code {job.returncode}; see the log above.")
        return job.returncode

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    phases = open_table(config.paths.flight_phase_counts, config).to_pandas()
    anomalies = open_table(config.paths.anomaly_alerts, config).to_pandas()
    print(f"\nGold flight_phase_counts: {len(phases):,} rows. Latest windows:")
    latest = phases[phases["window_start"] == phases["window_start"].max()] if len(phases) else phases
    print(latest.sort_values("flight_phase").to_string(index=False))
    print(f"\nGold anomaly_alerts: {len(anomalies):,} rows. Latest windows:")
    latest = (
        anomalies[anomalies["window_start"] == anomalies["window_start"].max()]
        if len(anomalies)
        else anomalies
    )
    print(latest.sort_values("origin_country").to_string(index=False))
    breaches = anomalies[anomalies["anomaly_rate"] > ALERT_THRESHOLD]
    print(f"\nCountries with anomaly_rate > {ALERT_THRESHOLD}: {breaches['origin_country'].nunique()}")
    if len(breaches):
        summary = (
            breaches.groupby("origin_country")
            .agg(
                windows=("window_start", "count"),
                max_rate=("anomaly_rate", "max"),
                first_window=("window_start", "min"),
                last_window=("window_start", "max"),
            )
            .sort_values("max_rate", ascending=False)
        )
        print(summary.to_string())
    print(f"\nDone in {time.monotonic() - started:.0f} s. Lakehouse: {config.lakehouse_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
