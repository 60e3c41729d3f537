"""Delta maintenance of the Gold tables: OPTIMIZE (compaction) then VACUUM. VACUUM runs beside the
Gold stream; OPTIMIZE is skipped (reported) when the stream runs, which compacts its tables itself.

    python jobs/maintenance.py --lakehouse-root DIR [--tables flight_phase_counts,anomaly_alerts]
        [--mode optimize|vacuum|both] [--retention-hours 168] [--allow-unsafe-retention]
    spark-submit --py-files flight_gold.zip jobs/maintenance.py --mode optimize

Prints one JSON line per table, then one JSON summary line, on stdout (and into --report-file as
one JSON document when given). Exit codes: 0 done (a missing table, or an OPTIMIZE left to the
running stream, is skipped and reported); 1 a table failed; 2 bad input or configuration;
99 every requested table is missing.
"""

from __future__ import annotations

import sys

from flight_gold.core.logs import configure_logging
from flight_gold.spark.maintenance import APP_NAME, parse_args, run_job


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    config, request, report_file = parse_args(argv, __doc__)

    from flight_gold.spark.session import MAINTENANCE, build_spark_session

    spark = build_spark_session(config, APP_NAME, MAINTENANCE)
    try:
        return run_job(spark, config, request, report_file)
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
