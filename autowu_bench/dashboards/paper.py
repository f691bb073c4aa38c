"""The paper's published accuracies (``paper_results.csv``, each row sourced: table and arXiv id), for the
report to show beside ours. Stored in percent as published; :func:`paper_cell` returns fractions, the
unit of our tables."""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import pandas as pd

# The paper's "Baseline" is the square-root rule from one base LR with 5 epochs of warmup, untuned per
# task: our "<baseline arm> default" row, not the grid's best.
BASELINE = "baseline"


@lru_cache(maxsize=1)
def paper_results() -> pd.DataFrame:
    with resources.files("autowu_bench.dashboards").joinpath("paper_results.csv").open() as f:
        return pd.read_csv(f, comment="#")


def paper_cell(workload: str, optimizer: str, schedule: str, batch_size: int) -> tuple[float, float, str] | None:
    """(mean, std, source) as fractions (std NaN for one run), or None where the paper has no number."""
    table = paper_results()
    hit = table[(table.workload == workload) & (table.optimizer == optimizer) & (table.schedule == schedule)
                & (table.batch_size == int(batch_size))]
    if hit.empty:
        return None
    row = hit.iloc[0]
    std = row["acc_std"] / 100 if not (isinstance(row["acc_std"], float) and math.isnan(row["acc_std"])) else math.nan
    return row["acc_mean"] / 100, std, str(row["source"])
