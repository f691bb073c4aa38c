"""The baseline of the paper: linear warmup from 0 to a peak LR over w epochs, then cosine to 0.

``LinearWarmupCosine`` drives a torch optimizer (same step convention as ``AutoWU``);
``FixedSchedule`` is the same curve as a ``Schedule`` for the platform's training loop. Arms beyond
the paper change the decay after the warmup (``lr_functions.BASELINE_DECAYS``): LARS and CLARS decay
polynomially, Schedule-Free holds the peak; w = 0 is no warmup at all (CLARS, Prodigy).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from autowu_bench.schedulers.lr_functions import BASELINE_DECAYS
from autowu_bench.schedulers.lr_plan import FixedPlan
from autowu_bench.schedulers.schedule import set_lr
from autowu_bench.schedulers.switch_tests import SwitchTest


def fixed_plan(
    steps_per_epoch: int, total_epochs: int, *, peak_lr: float, warmup_epochs: float, decay: str = "cosine",
    decay_power: float = 2.0,
) -> FixedPlan:
    """The baseline's plan, after checking its arguments: W = round(warmup_epochs * steps_per_epoch),
    then ``decay`` ("cosine", "polynomial" with ``decay_power``, or "constant")."""
    for name, value in (("steps_per_epoch", steps_per_epoch), ("total_epochs", total_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if not peak_lr > 0:
        raise ValueError(f"peak_lr={peak_lr!r} must be > 0")
    if not 0 <= warmup_epochs <= total_epochs:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} must be in [0, total_epochs={total_epochs}]")
    if decay not in BASELINE_DECAYS:
        raise ValueError(f"decay={decay!r}; valid: {', '.join(BASELINE_DECAYS)}")
    if not decay_power > 0:
        raise ValueError(f"decay_power={decay_power!r} must be > 0")
    return FixedPlan(
        total_steps=steps_per_epoch * total_epochs,
        warmup_steps=round(warmup_epochs * steps_per_epoch),
        peak_lr=float(peak_lr),
        decay=decay,
        decay_power=float(decay_power),
    )


class LinearWarmupCosine:
    """Linear warmup then cosine decay, stepped once after every optimizer step.

    After ``t`` calls of ``step()`` the optimizer holds the LR of step ``t + 1``: ``peak_lr * t / W``
    for ``t < W`` (so the first step uses 0), then ``peak_lr * (1 + cos(pi * (t - W) / (T - W))) / 2``,
    reaching 0 at ``t = T``. Parameter groups keep their ``lr_scale``.

    Args:
        optimizer: the optimizer whose groups get the LR.
        steps_per_epoch: optimizer steps per epoch.
        total_epochs: epochs of the run; T = steps_per_epoch * total_epochs.
        peak_lr: the LR at the end of the warmup (see ``scaled_peak_lr`` for the scaling rules).
        warmup_epochs: w; W = round(w * steps_per_epoch) steps (fractions of an epoch allowed).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        total_epochs: int,
        *,
        peak_lr: float,
        warmup_epochs: float,
    ) -> None:
        self.optimizer = optimizer
        self.plan = fixed_plan(steps_per_epoch, total_epochs, peak_lr=peak_lr, warmup_epochs=warmup_epochs)
        self.t = 0
        self._apply()

    def step(self, loss: Any = None) -> None:
        """Advance one optimizer step; ``loss`` is accepted (and ignored) so it swaps in for AutoWU."""
        self.t += 1
        self._apply()

    def _apply(self) -> None:
        set_lr(self.optimizer, self.plan.lr(self.t))

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = state["t"]
        self._apply()


class FixedSchedule:
    """The baseline as a ``Schedule``: one plan that no loss changes (arguments as ``fixed_plan``'s)."""

    def __init__(self, *, peak_lr: float, warmup_epochs: float, decay: str = "cosine", decay_power: float = 2.0) -> None:
        self.peak_lr = peak_lr
        self.warmup_epochs = warmup_epochs
        self.decay = decay
        self.decay_power = decay_power
        self._plan: FixedPlan | None = None

    def configure(self, steps_per_epoch: int, total_epochs: int) -> FixedPlan:
        self._plan = fixed_plan(steps_per_epoch, total_epochs, peak_lr=self.peak_lr, warmup_epochs=self.warmup_epochs,
                                decay=self.decay, decay_power=self.decay_power)
        return self._plan

    def observe(self, losses: Sequence[float]) -> None:
        pass

    def plan(self) -> FixedPlan:
        if self._plan is None:
            raise RuntimeError("FixedSchedule.plan() before configure(steps_per_epoch, total_epochs)")
        return self._plan

    def tests_since(self, index: int) -> list[SwitchTest]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
