"""What a suite's end writes in its run folder: the Parquet tables collected, the head-to-head table
(``table.txt``, ``table.md``) and the HTML report. Files only: the suite run logs them to MLflow
(``launch.suite_run``); ``python -m autowu_bench.dashboards report RUN_DIR`` rebuilds the report alone."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from autowu_bench.dashboards.table import format_markdown, format_text, head_to_head
from autowu_bench.platform.records import tables
from autowu_bench.platform.records.files import write_atomic


@dataclass(frozen=True)
class RunOutputs:
    """``text``: the head-to-head table as printed; ``files``: what was written, by the artifact folder
    it belongs in ("" the run's root: the two tables; "results": the Parquet tables; "report": the
    report's page and figures, absent when the report failed)."""

    text: str
    files: dict[str, list[Path]]


def write_outputs(run_dir: str | Path, *, title: str, tracking_ui: str | None = None,
                  experiment_id: str | None = None) -> RunOutputs:
    """Collect ``run_dir``'s tables and write ``table.txt``, ``table.md`` and ``report/`` there. The report
    links each trial to its run in the MLflow UI at ``tracking_ui`` in experiment ``experiment_id`` (no
    links without them). A report that fails to build is reported on stderr and does not fail this: the
    table and the tables are written, and the report can be rebuilt from them."""
    run_dir = Path(run_dir)
    paths = tables.collect(run_dir)
    table = head_to_head(tables.load(run_dir, "trials"))
    text = format_text(table, title=title)
    write_atomic(run_dir / "table.txt", text)
    write_atomic(run_dir / "table.md", format_markdown(table))
    files = {"": [run_dir / "table.txt", run_dir / "table.md"], "results": list(paths.values())}
    report = _write_report(run_dir, tracking_ui, experiment_id)
    if report is not None:
        files["report"] = sorted(report.parent.iterdir())
    return RunOutputs(text, files)


def _write_report(run_dir: Path, tracking_ui: str | None, experiment_id: str | None) -> Path | None:
    from autowu_bench.dashboards.report import write_report

    try:
        return write_report(run_dir, tracking_ui=tracking_ui, experiment_id=experiment_id)
    except Exception as exc:  # noqa: BLE001 - the suite's results stand without the report
        print(f"report: the report of {run_dir} failed ({type(exc).__name__}: {exc}); rebuild it with "
              f"python -m autowu_bench.dashboards report {run_dir}", file=sys.stderr)
        return None
