"""One trial of a suite, as plain values: what the suite expands into and what a Tune trial runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from autowu_bench.schedulers.autowu import AutoWUOptions


class TrialKind(StrEnum):
    """A trial's schedule: AutoWU's (the controller decides the warmup) or a baseline's (a fixed grid point).
    A ``str``: it is written, compared and stored as its plain value."""

    AUTOWU = "autowu"
    BASELINE = "baseline"


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs, serialisable to a flat dict (Tune config, MLflow params, Parquet row).

    Attributes:
        trial_id: unique within a suite and safe as a file name, e.g. ``autowu-cos_fmnist-mlp_b4096_s0``.
        arm: the suite's arm name (``autowu-cos``, ``autowu-const-cos``, ``autowu-auto``, ``baseline``...).
        kind: :class:`TrialKind` (a plain string in ``to_dict``; a string given is turned into it).
        batch_size: the global batch (all workers, all accumulation steps together).
        decay: the decay after the warmup: AutoWU's ("cosine" or "const-cos") or the baseline's
            ("cosine", "polynomial" or "constant"; None: "cosine").
        decay_power: the baseline's polynomial decay power (None for other decays).
        autowu: for AutoWU trials, the :class:`~autowu_bench.schedulers.autowu.AutoWUOptions` set
            (lr_min, lr_max, max_warmup_fraction, warmup, test_interval, patience, confidence, ...; the
            unset ones keep AutoWU's defaults); empty for baseline trials. In ``to_dict`` a plain dict of
            the options set; a mapping given is turned into the options (unknown keys: ValueError).
        peak_lr / warmup_epochs: for baseline trials, the grid point (warmup_epochs 0: no warmup).
        is_default: the baseline grid point that the scaling rule gives untuned (the paper's default).
        micro_batch: per-worker micro-batch for gradient accumulation; None means no accumulation.
        max_failures: Ray Train worker-group restarts (each from the last checkpoint) before the trial fails.
        search: for a trial proposed by an arm's Tune search, the search (``"tpe"``, ``"random+asha"``,
            ...; ``platform/execution/search.py``); None for a trial of a fixed grid or an AutoWU arm's one run.
    """

    trial_id: str
    suite: str
    arm: str
    kind: TrialKind
    workload: str
    batch_size: int
    epochs: int
    seed: int
    optimizer: str
    weight_decay: float
    decay: str | None = None
    decay_power: float | None = None
    autowu: AutoWUOptions = field(default_factory=AutoWUOptions)
    peak_lr: float | None = None
    warmup_epochs: float | None = None
    is_default: bool = False
    data_root: str | None = None
    train_subset: int | None = None
    val_size: int = 5000
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    micro_batch: int | None = None
    amp: str | None = None
    channels_last: bool = False
    compile: bool = False
    max_failures: int = 3
    search: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TrialKind(self.kind))
        if isinstance(self.autowu, Mapping):
            object.__setattr__(self, "autowu", AutoWUOptions.from_dict(self.autowu))
        elif not isinstance(self.autowu, AutoWUOptions):
            raise ValueError(f"autowu={self.autowu!r} must be AutoWUOptions (or a dict of them)")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain values (``kind`` its string, ``autowu`` a dict of the options set), as
        trial_specs.json, MLflow and Parquet take it."""
        values = dataclasses.asdict(self)
        values["kind"] = self.kind.value
        values["autowu"] = self.autowu.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialSpec":
        """The spec of ``to_dict``'s form (``autowu`` a dict of options: every run folder's form)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrialSpec fields {unknown}; known: {sorted(names)}")
        return cls(**values)

    def autowu_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``AutoWUCore`` other than the step counts: the options set, the trial's
        decay and its seed (the detector's)."""
        kwargs = self.autowu.kwargs()
        if self.decay is not None:
            kwargs["decay"] = self.decay
        kwargs["seed"] = self.seed
        return kwargs

    @property
    def test_interval(self) -> str | int:
        """An AutoWU trial's test interval: the arm's, else AutoWU's default."""
        return self.autowu.value("test_interval")

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.num_workers
