"""A validated suite as trials: one ``TrialSpec`` per workload x batch size x arm x grid point x seed, and
one ``SearchJob`` per workload x batch size x search arm x seed (its points are proposed while it runs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from autowu_bench import workloads
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.schema import AutoWUArm, BaselineArm, Search, Suite
from autowu_bench.platform.suite.trials import ArmRecipe


@dataclass(frozen=True)
class GridPoint:
    peak_lr: float
    warmup_epochs: float
    is_default: bool


def baseline_grid(arm: BaselineArm, arm_recipe: ArmRecipe, batch_size: int) -> list[GridPoint]:
    """The baseline arm's grid points at ``batch_size`` (``arm_recipe``: the workload's recipe with the
    arm's choices); the untuned default is flagged (and merged into the grid when it coincides with a
    grid point)."""
    if arm.peak_lrs is not None:
        peaks = list(arm.peak_lrs)
    elif arm.base_lrs is not None:
        peaks = [arm_recipe.peak_lr(batch_size, lr) for lr in arm.base_lrs]
    else:
        peaks = []
    points = [GridPoint(p, float(w), False) for p in peaks for w in arm.warmup_epochs]
    if arm.include_default:
        default = GridPoint(arm_recipe.peak_lr(batch_size), float(arm.default_warmup(arm_recipe.recipe)), True)
        same = [i for i, p in enumerate(points) if _close(p.peak_lr, default.peak_lr) and p.warmup_epochs == default.warmup_epochs]
        if same:
            points[same[0]] = GridPoint(points[same[0]].peak_lr, points[same[0]].warmup_epochs, True)
        else:
            points.append(default)
    return points


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def _lr_tag(lr: float) -> str:
    return f"{lr:.4g}"


def _arm_bases(suite: Suite):
    """(workload, batch size, arm, the arm's ``ArmRecipe``, the spec fields every trial of it shares
    besides those the recipe decides), in the order workload x batch size x arm."""
    res, train, data = suite.resources, suite.training, suite.data
    common = dict(
        suite=suite.name, data_root=data.root, train_subset=data.train_subset, val_size=data.val_size,
        num_workers=res.workers_per_trial, use_gpu=res.use_gpu, cpus_per_worker=res.cpus_per_worker,
        gpus_per_worker=res.gpus, micro_batch=train.micro_batch, amp=train.amp,
        channels_last=train.channels_last, compile=train.compile, max_failures=res.max_failures,
    )
    for workload in suite.workloads:
        recipe = workloads.get_workload(workload).recipe
        # An arm with another optimizer takes that optimizer's base LR and weight decay; only a
        # baseline arm scales its LRs by its own rule.
        arm_recipes = [ArmRecipe.of(recipe, optimizer=arm.optimizer, weight_decay=arm.weight_decay, epochs=suite.epochs,
                                    **({"scaling": arm.scaling, "base_batch": arm.base_batch}
                                       if isinstance(arm, BaselineArm) else {}))
                       for arm in suite.arms]
        for batch in suite.batch_sizes:
            for arm, arm_recipe in zip(suite.arms, arm_recipes):
                base = dict(common, arm=arm.name, workload=workload, batch_size=batch, decay=arm.decay,
                            # only a baseline decays polynomially (AutoWU's decays: cosine, const-cos)
                            decay_power=arm.decay_power if arm.decay == "polynomial" else None)
                yield workload, batch, arm, arm_recipe, base


def expand(suite: Suite) -> list[TrialSpec]:
    """One TrialSpec per workload x batch size x arm x grid point x seed, in that order (search arms:
    see :func:`search_jobs`).

    Trial ids are stable (a function of the suite's values) and unique; they name the trial folders and
    MLflow child runs: ``autowu-cos_fmnist-mlp_b4096_s0``, ``baseline_fmnist-mlp_b4096_lr0.003_w5_s0``.
    """
    trials: list[TrialSpec] = []
    for workload, batch, arm, arm_recipe, base in _arm_bases(suite):
        if arm.search is not None:
            continue
        if isinstance(arm, AutoWUArm):
            for seed in suite.seeds:
                trials.append(arm_recipe.autowu_trial(f"{arm.name}_{workload}_b{batch}_s{seed}", seed=seed,
                                                      autowu=arm.autowu.options(), **base))
            continue
        for point in baseline_grid(arm, arm_recipe, batch):
            for seed in suite.seeds:
                trials.append(arm_recipe.baseline_trial(
                    f"{arm.name}_{workload}_b{batch}_lr{_lr_tag(point.peak_lr)}_w{point.warmup_epochs:g}_s{seed}",
                    seed=seed, peak_lr=point.peak_lr, warmup_epochs=point.warmup_epochs,
                    is_default=point.is_default, **base,
                ))
    ids = [t.trial_id for t in trials]
    clashes = sorted({i for i in ids if ids.count(i) > 1})
    if clashes:
        raise SuiteError([f"arms: grid points that round to the same trial id {clashes}; "
                          "make the peak LRs differ in their first 4 significant digits"])
    return trials


def search_jobs(suite: Suite) -> list[SearchJob]:
    """One Tune search per workload x batch size x search arm x seed, in that order.

    With several seeds each seed gets its own search (same searcher seed, the trials' own seed): each
    picks its winner on validation accuracy, and the table averages the winners' test accuracies.
    """
    jobs = []
    for workload, batch, arm, arm_recipe, base in _arm_bases(suite):
        if arm.search is None:
            continue
        for seed in suite.seeds:
            name = f"{arm.name}_{workload}_b{batch}_s{seed}"
            if isinstance(arm, AutoWUArm):
                spec = arm_recipe.autowu_trial(name, seed=seed, autowu=arm.autowu.options(),
                                               search=arm.search.label, **base)
            else:
                # the peak LR is proposed (or scaled from a proposed base LR); the warmup is the recipe's
                # unless proposed
                spec = arm_recipe.baseline_trial(name, seed=seed, peak_lr=None, warmup_epochs=arm_recipe.warmup_epochs,
                                                 search=arm.search.label, **base)
            jobs.append(SearchJob(name, spec, arm.search, arm_recipe))
    return jobs


@dataclass(frozen=True)
class SearchJob:
    """One Tune search: ``base`` is every trial's spec but the searched values (its ``trial_id`` is the
    job's name); ``recipe`` (the arm's ``ArmRecipe``) turns a searched ``base_lr`` into the trial's peak LR."""

    name: str
    base: TrialSpec
    search: Search
    recipe: ArmRecipe

    def trial_id(self, n: int) -> str:
        return f"{self.name}_t{n:03d}"

    def owns(self, spec: TrialSpec) -> bool:
        """Whether ``spec`` is one of this job's trials (by its id, ``trial_id``'s form)."""
        return spec.trial_id.startswith(f"{self.name}_t")

    def planned(self) -> list[TrialSpec]:
        """The job's trials before Tune proposes their points (ids ``_t001`` ... as :func:`trial_name`
        numbers them; the base spec's values otherwise): what the progress line counts as pending."""
        return [replace(self.base, trial_id=self.trial_id(n)) for n in range(1, self.search.trials + 1)]

    def spec(self, config: dict[str, Any], trial_id: str) -> TrialSpec:
        """The trial of a proposed ``config`` (searched key -> value)."""
        values = {k: _plain(v) for k, v in config.items() if k in self.search.space}
        if self.base.kind is TrialKind.AUTOWU:
            return replace(self.base, trial_id=trial_id, autowu=self.base.autowu.merged(values))
        peak = values.get("peak_lr")
        if "base_lr" in values:
            peak = self.recipe.peak_lr(self.base.batch_size, float(values["base_lr"]))
        warmup = values.get("warmup_epochs", self.base.warmup_epochs)
        return replace(self.base, trial_id=trial_id, peak_lr=float(peak), warmup_epochs=float(warmup))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
