"""What is known about a validated suite before anything starts: whether its data is there, steps per
epoch, and the AutoWU trials whose budget is too short for its test.

The data check is a step of its own, after validation: a dry run prints its problems as warnings (the
data may live on the cluster only), a launch stops on them before anything starts.
"""

from __future__ import annotations

import sys
import warnings

from autowu_bench import workloads
from autowu_bench.platform.spec import TrialSpec
from autowu_bench.platform.suite_schema import Suite
from autowu_bench.schedulers.autowu import AutoWUCore
from autowu_bench.workloads.data.sharding import train_steps


def data_problems(suite: Suite) -> list[str]:
    """Each data set of the suite's workloads that cannot be loaded from ``data.root``, one line each
    (``data.root: what is missing where; how to get it``), each once; empty when all load."""
    problems: list[str] = []
    for name in suite.workloads:
        for problem in workloads.get_workload(name).check_data(suite.data.root):
            line = f"data.root: {problem}"
            problems += [] if line in problems else [line]
    return problems


def download_missing_data(suite: Suite) -> None:
    """Fetch each workload's data set into ``data.root`` when it is not there (only on request: nothing
    downloads at run time). What cannot be fetched is left to ``data_problems`` to report."""
    root = suite.data.root
    for name in suite.workloads:
        workload = workloads.get_workload(name)
        if root is None or not workload.check_data(root):
            continue  # the default location is an installed package, or the data is already there
        print(f"downloading the data of {name} into {root} ...", flush=True)
        try:
            workload.load(root, val_size=0, download=True)
        except workloads.DataError as exc:
            print(f"download of {name} failed: {exc}", file=sys.stderr, flush=True)


def planned_steps_per_epoch(spec: TrialSpec) -> int:
    """Optimizer steps per epoch as the worker's training loader will give them, for the data set's
    standard size (or ``train_subset``): each rank keeps whole batches of its share."""
    train = spec.train_subset or workloads.get_workload(spec.workload).train_images - spec.val_size
    return train_steps(train, batch_size=spec.per_worker_batch, world_size=spec.num_workers)


def schedule_warnings(trials: list[TrialSpec]) -> list[str]:
    """AutoWU's own warnings about the trials' schedules, each once with the arms and batch sizes it
    concerns (seeds share a schedule)."""
    concerns: dict[tuple[str, str], tuple[list[str], list[int]]] = {}
    for spec in trials:
        if spec.kind != "autowu":
            continue
        steps = planned_steps_per_epoch(spec)
        if steps < 1:  # no batch: the validation or the worker says so
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            AutoWUCore(steps, spec.epochs, **spec.autowu_kwargs())
        for w in caught:
            arms, batches = concerns.setdefault((spec.workload, str(w.message)), ([], []))
            arms += [] if spec.arm in arms else [spec.arm]
            batches += [] if spec.batch_size in batches else [spec.batch_size]
    return [
        f"{', '.join(arms)} on {workload} at batch {', '.join(map(str, batches))}: {message}"
        for (workload, message), (arms, batches) in concerns.items()
    ]
