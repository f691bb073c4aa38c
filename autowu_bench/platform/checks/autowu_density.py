"""AutoWU's test density, checked before anything starts: each AutoWU trial's steps per epoch, and the
trials whose budget is too short for its test (AutoWU's own warnings, printed once at planning)."""

from __future__ import annotations

import warnings

from autowu_bench import workloads
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.schedulers.autowu import AutoWUCore
from autowu_bench.workloads.data.sharding import train_steps


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
        if spec.kind is not TrialKind.AUTOWU:
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
