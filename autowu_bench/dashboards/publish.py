"""The end of a suite: the Parquet tables collected, the head-to-head table written, all of it logged
to the suite's parent MLflow run. Rebuilt from the run folder alone when there is no tracking."""

from __future__ import annotations

from pathlib import Path

from autowu_bench.dashboards.table import format_markdown, format_text, head_to_head
from autowu_bench.platform import results
from autowu_bench.platform.files import write_atomic


def publish(run_dir: str | Path, *, title: str, tracking_uri: str | None = None, parent_run_id: str | None = None) -> str:
    """Collect ``run_dir``'s tables, write ``table.txt`` and ``table.md`` there and, with a tracking URI
    and parent run, log them and the Parquet tables as the run's artifacts; returns the text table."""
    run_dir = Path(run_dir)
    paths = results.collect(run_dir)
    table = head_to_head(results.load(run_dir, "trials"))
    text = format_text(table, title=title)
    write_atomic(run_dir / "table.txt", text)
    write_atomic(run_dir / "table.md", format_markdown(table))
    if tracking_uri is not None and parent_run_id is not None:
        from autowu_bench.platform import tracking

        tracking.log_artifacts(tracking_uri, parent_run_id, [run_dir / "table.txt", run_dir / "table.md"])
        tracking.log_artifacts(tracking_uri, parent_run_id, paths.values(), "results")
    return text
