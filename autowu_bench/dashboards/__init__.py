"""Dashboards of autowu-bench: the head-to-head table and the HTML report (``dashboards.report``, not
imported here: it loads matplotlib), built from the Parquet results alone, and what a suite's end writes
of them in the run folder (``dashboards.outputs``)."""

from autowu_bench.dashboards.outputs import RunOutputs, write_outputs
from autowu_bench.dashboards.table import best_grid_point, format_markdown, format_text, head_to_head

__all__ = ["RunOutputs", "best_grid_point", "format_markdown", "format_text", "head_to_head", "write_outputs"]
