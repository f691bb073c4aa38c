"""Dashboards of autowu-bench: the head-to-head table and the HTML report (``dashboards.report``, not
imported here: it loads matplotlib), built from the Parquet results alone, and the end of a suite that
writes and logs them."""

from autowu_bench.dashboards.publish import publish
from autowu_bench.dashboards.table import best_grid_point, format_markdown, format_text, head_to_head

__all__ = ["best_grid_point", "format_markdown", "format_text", "head_to_head", "publish"]
