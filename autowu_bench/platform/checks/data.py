"""Whether a validated suite's data is there: a step of its own, after validation. A dry run prints its
problems as warnings (the data may live on the cluster only); a launch stops on them before anything starts.
"""

from __future__ import annotations

from autowu_bench import workloads
from autowu_bench.platform.suite.schema import Suite


def data_problems(suite: Suite) -> list[str]:
    """Each data set of the suite's workloads that cannot be loaded from ``data.root``, one line each
    (``data.root: what is missing where; how to get it``), each once; empty when all load."""
    problems: list[str] = []
    for name in suite.workloads:
        for problem in workloads.get_workload(name).check_data(suite.data.root):
            line = f"data.root: {problem}"
            problems += [] if line in problems else [line]
    return problems
