"""The end of a suite: the Parquet tables collected, the head-to-head table and the HTML report
written, all of it logged to the suite's parent MLflow run. Rebuilt from the run folder alone when
there is no tracking (``python -m autowu_bench.dashboards report RUN_DIR`` for the report)."""

from __future__ import annotations

import sys
from pathlib import Path

from autowu_bench.dashboards.table import format_markdown, format_text, head_to_head
from autowu_bench.platform.records import tables
from autowu_bench.platform.records.files import write_atomic


def publish(run_dir: str | Path, *, title: str, tracking_uri: str | None = None, parent_run_id: str | None = None,
            tracking_ui: str | None = None) -> str:
    """Collect ``run_dir``'s tables, write ``table.txt``, ``table.md`` and ``report/`` there and, with a
    tracking URI and parent run, log them and the Parquet tables as the run's artifacts (the report's
    files under "report/"); returns the text table. The report links each trial to its run in the
    MLflow UI at ``tracking_ui`` (default: the tracking URI, when it is a web address).

    Everything is written to the run folder before MLflow is asked for anything, and MLflow never fails
    this: the uploads go through the run's spool (``tracking.lifecycle.spool_artifacts``) and one sending pass;
    while MLflow is away they stay spooled (``run_suite.py --sync`` sends them) and the report has no
    links to the runs. A report that fails to build is reported on stderr and does not fail the suite:
    the table and the tables are already written, and the report can be rebuilt from them."""
    run_dir = Path(run_dir)
    paths = tables.collect(run_dir)
    table = head_to_head(tables.load(run_dir, "trials"))
    text = format_text(table, title=title)
    write_atomic(run_dir / "table.txt", text)
    write_atomic(run_dir / "table.md", format_markdown(table))
    tracked = tracking_uri is not None and parent_run_id is not None
    report = _write_report(run_dir, tracking_uri if tracked else None, parent_run_id if tracked else None,
                           tracking_ui)
    if tracked:
        from autowu_bench.platform.tracking.lifecycle import spool_artifacts
        from autowu_bench.platform.tracking.sync import send_spools

        spool_artifacts(run_dir, parent_run_id, [run_dir / "table.txt", run_dir / "table.md"])
        spool_artifacts(run_dir, parent_run_id, paths.values(), "results")
        if report is not None:
            spool_artifacts(run_dir, parent_run_id, sorted(report.parent.iterdir()), "report")
        sent = send_spools(run_dir, tracking_uri)
        if not sent.complete:
            print(f"publish: MLflow did not take everything ({sent.describe()}); it stays spooled in {run_dir}",
                  file=sys.stderr)
    return text


def _write_report(run_dir: Path, tracking_uri: str | None, parent_run_id: str | None,
                  tracking_ui: str | None) -> Path | None:
    from autowu_bench.dashboards.report import write_report

    ui = experiment = None
    if tracking_uri is not None and tracking_uri.startswith(("http://", "https://")):
        from autowu_bench.platform.tracking.client import run_experiment_id

        try:
            ui, experiment = tracking_ui or tracking_uri, run_experiment_id(tracking_uri, parent_run_id)
        except Exception as exc:  # noqa: BLE001 - MLflow away: the report, without links to the runs
            ui = None
            print(f"publish: MLflow did not answer ({type(exc).__name__}); the report has no links to the runs",
                  file=sys.stderr)
    try:
        return write_report(run_dir, tracking_ui=ui, experiment_id=experiment)
    except Exception as exc:  # noqa: BLE001 - the suite's results stand without the report
        print(f"publish: the report of {run_dir} failed ({type(exc).__name__}: {exc}); rebuild it with "
              f"python -m autowu_bench.dashboards report {run_dir}", file=sys.stderr)
        return None
