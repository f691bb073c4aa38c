"""Schedule plans: small frozen values that give the LR of any step as a pure function.

A plan is what crosses process boundaries in the platform: the per-trial controller hands one to the
training workers at each decision point, and every rank computes ``plan.lr(t)`` locally, so nothing is
sent per step. ``plan.lr(t)`` is exact for every ``t < plan.next_decision``; after the step that makes
``t == plan.next_decision`` the caller must feed the losses since the last plan and fetch a new one.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from autowu_bench.schedulers.lr_functions import (
    const_cos_lr,
    cosine_lr,
    linear_warmup_cosine_lr,
    warmup_lr,
)

NEVER = sys.maxsize  # next_decision of a plan that no loss can change any more


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group ``lr`` times its ``lr_scale`` (default 1.0), as AUTOWU.md says."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


@dataclass(frozen=True)
class SchedulePlan:
    """AutoWU's schedule as known after some number of steps.

    In the warmup phase ``lr(t)`` is the warmup curve (eq. 1); once ``switch_step`` is set it is the decay
    (cosine or const-cos) from ``decay_start_lr``. ``divergence_threshold``, once known, is the finite loss
    above which a step counts as divergent (AutoWU's explosion rule), so callers can check every step
    locally and report at once.
    """

    total_steps: int
    warmup_steps: int
    lr_min: float
    lr_max: float
    warmup: str
    decay: str
    const_fraction: float
    next_decision: int
    switch_step: int | None = None
    decay_start_lr: float | None = None
    divergence_threshold: float | None = None

    @property
    def phase(self) -> str:
        return "warmup" if self.switch_step is None else "decay"

    def lr(self, t: int) -> float:
        """The scheduled LR after ``t`` optimizer steps (the LR of step ``t + 1``)."""
        if self.switch_step is None:
            return warmup_lr(t, self.lr_min, self.lr_max, self.warmup_steps, self.warmup)
        if self.decay == "cosine":
            return cosine_lr(t, self.switch_step, self.total_steps, self.decay_start_lr)
        return const_cos_lr(
            t, self.switch_step, self.total_steps, self.decay_start_lr, self.const_fraction
        )

    def is_divergent(self, loss: float) -> bool:
        """True for a non-finite loss, or a finite one above the explosion threshold."""
        if not math.isfinite(loss):
            return True
        return self.divergence_threshold is not None and loss > self.divergence_threshold


@dataclass(frozen=True)
class BaselinePlan:
    """The linear-warmup baseline: linear from 0 to ``peak_lr`` over ``warmup_steps``, cosine to 0 at T.

    It never changes, so ``next_decision`` is ``NEVER``; it has the same shape as ``SchedulePlan`` so one
    training loop serves both arms.
    """

    total_steps: int
    warmup_steps: int
    peak_lr: float
    next_decision: int = NEVER
    divergence_threshold: float | None = None

    phase = "fixed"

    def lr(self, t: int) -> float:
        return linear_warmup_cosine_lr(t, self.peak_lr, self.warmup_steps, self.total_steps)

    def is_divergent(self, loss: float) -> bool:
        return not math.isfinite(loss)
