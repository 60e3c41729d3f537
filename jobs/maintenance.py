"""Delta maintenance of the Gold tables: OPTIMIZE (compaction) then VACUUM, safe while the Gold
stream appends.

    python jobs/maintenance.py --lakehouse-root DIR [--tables flight_phase_counts,anomaly_alerts]
        [--mode optimize|vacuum|both] [--retention-hours 168] [--allow-unsafe-retention]
    spark-submit --py-files flight_gold.zip jobs/maintenance.py --mode optimize

Prints one JSON line per table, then one JSON summary line, on stdout (and into --report-file as
one JSON document when given). Exit codes: 0 done (a missing table is skipped and reported);
1 a table failed; 2 bad input or configuration; 99 every requested table is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile

from flight_gold.config import ConfigError, GoldConfig
from flight_gold.logs import configure_logging
from flight_gold.maintenance import (
    DEFAULT_RETENTION_HOURS,
    EXIT_BAD_INPUT,
    MODES,
    MaintenanceInputError,
    MaintenanceRequest,
    parse_tables,
    summary,
)

log = logging.getLogger("flight_gold.jobs.maintenance")


def parse_args(argv: list[str] | None = None) -> tuple[GoldConfig, MaintenanceRequest, str | None]:
    parser = argparse.ArgumentParser(prog="maintenance", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--lakehouse-root", metavar="URI", default=None,
                        help="storage root: a local folder or s3a://bucket/prefix (env LAKEHOUSE_ROOT)")
    parser.add_argument("--master", dest="spark_master", default=None,
                        help="Spark master URL when not run by spark-submit (env SPARK_MASTER)")
    parser.add_argument("--s3-endpoint", default=None, help="S3A endpoint (env S3_ENDPOINT)")
    parser.add_argument("--tables", default="both",
                        help="comma-separated Gold tables: flight_phase_counts, anomaly_alerts, or both")
    parser.add_argument("--mode", choices=MODES, default="both",
                        help="optimize (compaction), vacuum, or both (OPTIMIZE then VACUUM)")
    parser.add_argument("--retention-hours", type=int, default=DEFAULT_RETENTION_HOURS,
                        help="VACUUM keeps files younger than this many hours")
    parser.add_argument("--allow-unsafe-retention", action="store_true",
                        help="allow a retention below the table's delta.deletedFileRetentionDuration "
                             "(7 days by default): only when no writer runs and time travel may be lost")
    parser.add_argument("--report-file", default=None,
                        help="also write the report as one JSON document to this local file")
    args = parser.parse_args(argv)
    try:
        config = GoldConfig.from_env(lakehouse_root=args.lakehouse_root, spark_master=args.spark_master,
                                     s3_endpoint=args.s3_endpoint)
        request = MaintenanceRequest(tables=parse_tables(args.tables), mode=args.mode,
                                     retention_hours=args.retention_hours,
                                     allow_unsafe_retention=args.allow_unsafe_retention)
    except ConfigError as exc:
        parser.exit(EXIT_BAD_INPUT, f"maintenance: error: {exc}\n")
    return config, request, args.report_file


def write_report(path: str, document: dict) -> None:
    """Atomic, so that a reader never sees half a report."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report-")
    with os.fdopen(fd, "w") as out:
        json.dump(document, out)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    config, request, report_file = parse_args(argv)

    from flight_gold.maintenance import run_maintenance
    from flight_gold.spark import build_spark_session

    spark = build_spark_session(config, "flight-gold-maintenance")
    try:
        try:
            report = run_maintenance(spark, config, request)
        except MaintenanceInputError as exc:
            print(f"maintenance: error: {exc}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
    finally:
        spark.stop()
    total = summary(report)
    for row in report:
        print(json.dumps(row), flush=True)
    print(json.dumps(total), flush=True)
    if report_file:
        write_report(report_file, {"tables": report, "summary": total})
    return total["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
