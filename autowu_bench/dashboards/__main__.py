"""``python -m autowu_bench.dashboards report RUN_DIR``: rebuild a run's HTML report from its Parquet
tables (no Ray, no MLflow)."""

from __future__ import annotations

import argparse
import sys

from autowu_bench.dashboards.report import write_report
from autowu_bench.dashboards.report_data import ReportError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autowu_bench.dashboards")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="write RUN_DIR/report/index.html from RUN_DIR's Parquet tables")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--tracking-ui", help="the MLflow UI's address (e.g. http://127.0.0.1:5000), to link trials")
    report.add_argument("--experiment-id", help="the suite's MLflow experiment id, to link trials")
    args = parser.parse_args(argv)
    try:
        page = write_report(args.run_dir, tracking_ui=args.tracking_ui, experiment_id=args.experiment_id)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
