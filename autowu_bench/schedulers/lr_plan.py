"""LR plans: frozen values that give a schedule's LR as a pure function of the step until its next sync.

A plan is what a schedule hands the training loop (and what crosses processes in the platform): the
per-trial AutoWU controller hands one to the workers at a sync point, and every rank computes
``plan.lr(t)`` locally, so nothing is sent per step. A plan says when it must be refreshed:

- ``next_test``: the next step whose loss the schedule must see (a GP test, the fallback at the longest
  warmup W, or step 1, whose loss sets the explosion threshold); after it the losses are handed over;
- ``next_switch``: the first step after which ``lr`` may differ from this plan's (patience-aware:
  a test can only switch when the tests before it leave the run of positives one short of the
  patience). ``plan.lr(t)`` is exact for every ``t < next_switch``; a caller that hands losses over
  at earlier test points does not need to wait for a new plan there;
- ``test_interval``: the steps between tests, so a caller knows the later test points too.

A divergent loss (``is_divergent``) can switch AutoWU at any step; the caller hands it over at once.
The algorithm and its conventions are in docs/autowu.md.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from autowu_bench.schedulers.lr_functions import (
    const_cos_lr,
    cosine_lr,
    linear_warmup_decay_lr,
    warmup_lr,
)

NEVER = sys.maxsize  # next_test / next_switch of a plan that no loss can change any more


class Phase(StrEnum):
    """Where a schedule is: AutoWU's warmup (the controller still decides) or decay, or a fixed schedule."""

    WARMUP = "warmup"
    DECAY = "decay"
    FIXED = "fixed"


class SwitchReason(StrEnum):
    """Why AutoWU's warmup ended (docs/autowu.md)."""

    TEST = "test"  # the GP test found the loss minimum behind the current LR, `patience` times running
    FALLBACK = "fallback"  # the longest warmup W was reached first
    DIVERGENCE = "divergence"  # a non-finite or exploding loss


@dataclass(frozen=True, kw_only=True)
class LRPlan(ABC):
    """What every plan carries; see the module docstring for the refresh rule."""

    total_steps: int
    warmup_steps: int
    next_test: int = NEVER
    next_switch: int = NEVER
    test_interval: int | None = None
    switch_step: int | None = None
    switch_reason: SwitchReason | None = None
    decay_start_lr: float | None = None
    divergence_step: int | None = None
    divergence_threshold: float | None = None

    @abstractmethod
    def lr(self, t: int) -> float:
        """The scheduled LR after ``t`` optimizer steps (the LR of step ``t + 1``)."""

    @property
    @abstractmethod
    def phase(self) -> Phase: ...

    def phase_at(self, t: int) -> Phase:
        """The phase that step ``t`` belongs to, for reporting (a fixed schedule: warmup, then decay)."""
        return self.phase

    def hands_over_after(self, t: int) -> bool:
        """True when the losses up to step ``t`` go to the schedule after step ``t``: a test point,
        ``next_test`` or ``next_switch``, while the schedule still decides (AutoWU's warmup)."""
        if self.phase is not Phase.WARMUP:
            return False
        if t in (self.next_test, self.next_switch):
            return True
        return self.test_interval is not None and t % self.test_interval == 0

    def is_divergent(self, loss: float) -> bool:
        """True for a non-finite loss, or a finite one above the explosion threshold (once known)."""
        if not math.isfinite(loss):
            return True
        return self.divergence_threshold is not None and loss > self.divergence_threshold

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data (numbers, strings, None) with its ``kind``: what a checkpoint holds,
        so that ``torch.load(weights_only=True)`` reads it back. :meth:`from_dict` is the inverse."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.switch_reason is not None:
            values["switch_reason"] = str(self.switch_reason)
        return {"kind": type(self).__name__, **values}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> LRPlan:
        """The plan that :meth:`to_dict` gave ``values``."""
        kinds = {cls.__name__: cls for cls in (AutoWUPlan, FixedPlan)}
        fields = {k: v for k, v in values.items() if k != "kind"}
        if fields.get("switch_reason") is not None:
            fields["switch_reason"] = SwitchReason(fields["switch_reason"])
        return kinds[values["kind"]](**fields)


@dataclass(frozen=True, kw_only=True)
class AutoWUPlan(LRPlan):
    """AutoWU's schedule as known after some number of steps.

    In the warmup ``lr(t)`` is the warmup curve (exponential, or the linear ablation); once
    ``switch_step`` is set it is the decay (cosine or const-cos) from ``decay_start_lr``.
    """

    lr_min: float
    lr_max: float
    warmup: str
    decay: str
    const_fraction: float

    @property
    def phase(self) -> Phase:
        return Phase.WARMUP if self.switch_step is None else Phase.DECAY

    def lr(self, t: int) -> float:
        if self.switch_step is None:
            return warmup_lr(t, self.lr_min, self.lr_max, self.warmup_steps, self.warmup)
        if self.decay == "cosine":
            return cosine_lr(t, self.switch_step, self.total_steps, self.decay_start_lr)
        return const_cos_lr(t, self.switch_step, self.total_steps, self.decay_start_lr, self.const_fraction)


@dataclass(frozen=True, kw_only=True)
class FixedPlan(LRPlan):
    """The linear-warmup baseline: linear from 0 to ``peak_lr`` over ``warmup_steps`` (0: none), then
    ``decay``: cosine to 0 at T (the paper's), polynomial of ``decay_power`` to 0 at T, or constant.
    No loss changes it; only non-finite losses count as divergent."""

    peak_lr: float
    decay: str = "cosine"
    decay_power: float = 2.0

    @property
    def phase(self) -> Phase:
        return Phase.FIXED

    def phase_at(self, t: int) -> Phase:
        return Phase.WARMUP if t < self.warmup_steps else Phase.DECAY

    def lr(self, t: int) -> float:
        return linear_warmup_decay_lr(t, self.peak_lr, self.warmup_steps, self.total_steps, self.decay,
                                      self.decay_power)
