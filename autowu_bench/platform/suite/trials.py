"""Building a ``TrialSpec``: the one place where a workload's recipe and an arm's choices become a trial's
optimizer, weight decay, epochs and peak LR (scaled from a base LR at the recipe's or the arm's base
batch). A suite's grid trials (``expansion.expand``), its searches' base specs and proposed points
(``expansion.search_jobs``, ``SearchJob.spec``) and the public trainable's configs
(``autowu_bench.tune.spec_from_config``) all build their trials here.

    arm = ArmRecipe.of("fmnist-mlp", optimizer="sgd")     # SGD's base LR and weight decay
    arm.peak_lr(1024)                                       # 0.1 * sqrt(1024 / 256) = 0.2
    arm.baseline_trial("t", peak_lr=arm.peak_lr(1024), warmup_epochs=arm.warmup_epochs,
                       suite="s", arm="baseline", workload="fmnist-mlp", batch_size=1024, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autowu_bench import workloads
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.schedulers.autowu import AutoWUOptions
from autowu_bench.schedulers.lr_functions import scaled_peak_lr

RECIPE_FIELDS = ("optimizer", "weight_decay", "epochs")  # the TrialSpec fields an ArmRecipe decides


@dataclass(frozen=True)
class ArmRecipe:
    """A workload's recipe with an arm's (or a config's) choices applied.

    Attributes:
        recipe: the workload's ``Recipe``, with the chosen optimizer (and so that optimizer's base LR).
        weight_decay: the chosen one, else the (chosen optimizer's) recipe's.
        epochs: the chosen ones (a suite's ``epochs``, a config's), else the recipe's.
        scaling / base_batch: the peak-LR scaling rule and the batch its base LR belongs to: a baseline
            arm's, else the recipe's.
    """

    recipe: workloads.Recipe
    weight_decay: float
    epochs: int
    scaling: str
    base_batch: int

    @classmethod
    def of(cls, workload: str | workloads.Recipe, *, optimizer: str | None = None, weight_decay: float | None = None,
           epochs: int | None = None, scaling: str | None = None, base_batch: int | None = None) -> ArmRecipe:
        """The recipe of ``workload`` (a registry name or a ``Recipe``) with these choices; None (or the
        recipe's own optimizer) keeps the recipe's. Another optimizer brings its own base LR and, unless
        ``weight_decay`` is given, its weight decay."""
        recipe = workloads.get_workload(workload).recipe if isinstance(workload, str) else workload
        if optimizer not in (None, recipe.optimizer):
            recipe = recipe.with_optimizer(optimizer)
        return cls(recipe=recipe,
                   weight_decay=float(weight_decay if weight_decay is not None else recipe.weight_decay),
                   epochs=int(epochs if epochs is not None else recipe.epochs),
                   scaling=scaling or recipe.scaling, base_batch=base_batch or recipe.base_batch)

    @property
    def optimizer(self) -> str:
        return self.recipe.optimizer

    @property
    def warmup_epochs(self) -> float:
        """The recipe's warmup epochs: a baseline's default."""
        return float(self.recipe.warmup_epochs)

    def peak_lr(self, batch_size: int, base_lr: float | None = None) -> float:
        """``base_lr`` (default: the recipe's, i.e. the optimizer's) scaled to ``batch_size`` by the rule."""
        return scaled_peak_lr(self.scaling, self.recipe.base_lr if base_lr is None else base_lr,
                              batch_size, self.base_batch)

    def autowu_trial(self, trial_id: str, *, autowu: AutoWUOptions, **fields: Any) -> TrialSpec:
        """An AutoWU trial with ``autowu`` (its ``AutoWUCore`` options set); ``fields``: the rest of the spec
        (suite, arm, workload, batch size, seed, decay, resources, ...)."""
        return self._trial(trial_id, TrialKind.AUTOWU, autowu=autowu, **fields)

    def baseline_trial(self, trial_id: str, *, peak_lr: float | None, warmup_epochs: float | None,
                       **fields: Any) -> TrialSpec:
        """A baseline trial at (``peak_lr``, ``warmup_epochs``): a grid point, a proposed point, the untuned
        default (:meth:`peak_lr`, :attr:`warmup_epochs`), or None where a search will propose it."""
        return self._trial(trial_id, TrialKind.BASELINE, peak_lr=None if peak_lr is None else float(peak_lr),
                           warmup_epochs=None if warmup_epochs is None else float(warmup_epochs), **fields)

    def _trial(self, trial_id: str, kind: TrialKind, **fields: Any) -> TrialSpec:
        return TrialSpec(trial_id=trial_id, kind=kind, **{k: getattr(self, k) for k in RECIPE_FIELDS}, **fields)
