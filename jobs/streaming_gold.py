"""Gold streaming job: Silver_ML -> flight_phase_counts (1-min tumbling) and anomaly_alerts
(5-min sliding) Delta tables.

    python jobs/streaming_gold.py --trigger available-now
    spark-submit --py-files flight_gold.zip jobs/streaming_gold.py --trigger processing-time
    python jobs/streaming_gold.py --trigger available-now-loop --trigger-interval "10 seconds"

    python jobs/streaming_gold.py --full-refresh --queries anomaly_alerts   # rebuild from Silver_ML

Exit codes: 0 done or stopped by SIGTERM/SIGINT; 1 a query failed (retry: it resumes from its
checkpoint), or a maintenance job's OPTIMIZE held a checkpoint for over 2 minutes; 2 bad input or
configuration (Silver_ML missing, unreadable or of the wrong schema, a checkpoint written for
another Silver_ML table, a new checkpoint beside a Gold table with rows, a setting baked into the
stream's state changed, an unfinished --full-refresh): nothing was written, a retry fails the
same way until it is fixed; 3 another running Gold stream holds the checkpoint.
"""

from __future__ import annotations

import sys

from flight_gold.core.config import GoldConfig
from flight_gold.core.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    config, _ = GoldConfig.parse_job_args("streaming_gold", __doc__, argv)

    from flight_gold.spark.runner import APP_NAME, run_gold_streams, stop_on_signals
    from flight_gold.spark.session import build_spark_session

    stop = stop_on_signals()
    spark = build_spark_session(config, APP_NAME, metrics=True)
    try:
        return run_gold_streams(spark, config, stop)
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
