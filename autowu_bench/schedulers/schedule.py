"""What every schedule offers a training loop: the ``Schedule`` protocol, and applying an LR.

Two schedules implement the protocol: AutoWU's per-trial controller
(``autowu_bench.platform.execution.controller``, in-process or as a Ray actor behind a client with the same
methods) and the baseline's ``FixedSchedule`` (``autowu_bench.schedulers.baseline``). The loop asks
for a plan once (``configure``), sets every step's LR from ``plan.lr(t)``, hands the step losses
over when the plan says so (``plan.hands_over_after``) and fetches a new plan only when the old one
may have changed (``plan.next_switch``, or a divergent loss). The order of the calls is the order of
the steps, so a schedule sees exactly the losses the standalone scheduler would.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from autowu_bench.schedulers.lr_plan import LRPlan
from autowu_bench.schedulers.switch_tests import SwitchTest


@runtime_checkable
class Schedule(Protocol):
    def configure(self, steps_per_epoch: int, total_epochs: int) -> LRPlan:
        """Size the schedule for the run and start it over; returns the first plan."""

    def observe(self, losses: Sequence[float]) -> None:
        """Take the step losses since the last call, in order. May return before they are processed."""

    def plan(self) -> LRPlan:
        """The plan after every loss observed so far (waits for them)."""

    def tests_since(self, index: int) -> list[SwitchTest]:
        """AutoWU's test records from ``index`` on (none for a fixed schedule)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group ``lr`` times its ``lr_scale`` (default 1.0), so groups keep their ratios."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
