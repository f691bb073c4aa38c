"""What a suite will cost, before it runs (printed by ``--dry-run``): device-hours and wall time from each
trial's planned training images and a measured throughput per workload. An estimate, and said to be one:
training steps at the measured pace plus a fixed start-up per trial; evaluation, checkpoints and a
search's early stops are not counted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from autowu_bench.platform.checks.autowu_density import planned_steps_per_epoch
from autowu_bench.platform.execution.progress import format_duration
from autowu_bench.platform.execution.ray_cluster import autoscaler_max_resources, concurrency_for
from autowu_bench.platform.records.outcome import device_hours
from autowu_bench.platform.records.spec import TrialSpec

# A trial's start-up under Ray (its driver, the Train controller and workers, the data in memory):
# 30-40 s on the 2-core development VM (README, "Quick start").
STARTUP_SECONDS = 35.0
# The repository's cluster launcher file: what a GPU suite's cluster can grow to, when this machine is
# not a cluster's head (whose own launcher config ray_cluster.autoscaler_max_resources reads first).
CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@dataclass(frozen=True)
class Throughput:
    """Measured training images per second per device (a GPU, or a CPU core) at per-device batch sizes;
    between two measured batches the pace is interpolated on a log scale, above them the largest holds.
    Below the smallest, a GPU step takes as long as it did there (a small batch is bound by the kernel
    launches, ``host ms/step`` in the GPU results), so the pace falls with the batch; a CPU keeps its pace."""

    device: str  # "GPU" or "CPU core"
    by_batch: dict[int, float]
    source: str

    def at(self, per_device_batch: float) -> float:
        points = sorted(self.by_batch.items())
        if per_device_batch <= points[0][0]:
            smallest, pace = points[0]
            return pace * per_device_batch / smallest if self.device == "GPU" else pace
        for (b0, v0), (b1, v1) in zip(points, points[1:]):
            if per_device_batch <= b1:
                return v0 + (v1 - v0) * math.log(per_device_batch / b0) / math.log(b1 / b0)
        return points[-1][1]


THROUGHPUT: dict[str, Throughput] = {
    "fmnist-mlp": Throughput(
        "CPU core", {512: 19_915.0},
        "results/cpu-2026-12-01/train_throughput.txt: 39,830 images/s with 2 gloo workers on 2 cores "
        "(global batch 1024) on the development VM"),
    "cifar10-resnet18": Throughput(
        "GPU", {512: 29_043.0, 4096: 90_337.0},
        "results/gpu-h200-2026-12-04/gpu_throughput.txt: the platform's step with the augmenting loader on "
        "an NVIDIA H200 (an H100 is slower), bf16, channels_last, compiled"),
}


def cost_lines(trials: list[TrialSpec], *, max_concurrent: int | None) -> list[str]:
    """The estimate as the lines ``--dry-run`` prints (``trials``: the fixed ones and every trial a search
    may run); a workload with no measured throughput is named, not guessed."""
    known = [t for t in trials if t.workload in THROUGHPUT]
    unknown = sorted({t.workload for t in trials} - set(THROUGHPUT))
    lines = []
    if known:
        seconds = [trial_seconds(t) for t in known]
        units = {_unit(t) for t in known}
        hours = sum(device_hours(t, s) for s, t in zip(seconds, known))
        concurrency, where = _concurrency(known, max_concurrent)
        wall = sum(s + STARTUP_SECONDS for s in seconds) / concurrency
        images = sum(_images(t) for t in known)
        lines.append(f"estimate, not a measurement: {len(known)} trials, {_count(images)} training images, "
                     f"{hours:,.1f} {'/'.join(sorted(units))}-hours, about {format_duration(wall)} wall time "
                     f"at {concurrency} trial(s) at once ({where}), {STARTUP_SECONDS:g} s of start-up per trial")
        for workload in sorted({t.workload for t in known}):
            pace = THROUGHPUT[workload]
            rates = ", ".join(f"{v:,.0f} at {b}" for b, v in sorted(pace.by_batch.items()))
            lines.append(f"  {workload}: images/s per {pace.device} by batch per device {rates} ({pace.source})")
        lines.append("  training steps only: evaluation, checkpoints and a search's early stops are not counted")
    if unknown:
        lines.append(f"estimate: no measured throughput for {', '.join(unknown)}; their cost is not estimated "
                     "(launch.estimate.THROUGHPUT holds the measured ones)")
    return lines


def trial_seconds(spec: TrialSpec) -> float:
    """Seconds of training steps of one trial at its workload's measured pace, all its workers at once."""
    pace = THROUGHPUT[spec.workload]
    per_device = spec.batch_size / spec.num_workers
    share = spec.cpus_per_worker if pace.device == "CPU core" else (spec.gpus_per_worker or 1.0)
    return _images(spec) / (pace.at(per_device) * share * spec.num_workers)


def _count(n: float) -> str:
    for size, word in ((1e9, "billion"), (1e6, "million")):
        if n >= size:
            return f"{n / size:.3g} {word}"
    return f"{n:,.0f}"


def _images(spec: TrialSpec) -> int:
    """The training images a trial's loader gives over its epochs (whole batches)."""
    return planned_steps_per_epoch(spec) * spec.batch_size * spec.epochs


def _unit(spec: TrialSpec) -> str:
    return "GPU" if spec.use_gpu else "CPU"


def _concurrency(trials: list[TrialSpec], max_concurrent: int | None) -> tuple[int, str]:
    """Trials at once and where that number comes from: a GPU suite on the cluster it would run on (this
    head's launcher config, else the repository's cluster.yaml, at its autoscaler's limits), a CPU suite
    on this machine's cores; never more than the suite's ``max_concurrent_trials``."""
    if any(t.use_gpu for t in trials):
        resources = autoscaler_max_resources() or autoscaler_max_resources(str(CLUSTER_YAML))
        where = (f"{resources.get('GPU', 0):g} GPUs, the cluster launcher file's limit" if resources
                 else "no cluster launcher file found: one GPU")
        resources = resources or {"GPU": 1.0, "CPU": float(os.cpu_count() or 1)}
    else:
        resources = {"CPU": float(os.cpu_count() or 1)}
        where = f"this machine's {os.cpu_count()} CPUs"
    fits = concurrency_for(trials, resources)
    if max_concurrent is not None and max_concurrent < fits:
        return max_concurrent, f"the suite's max_concurrent_trials; {where}"
    return fits, where
