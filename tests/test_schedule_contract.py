"""The contract every schedule keeps, checked on each of them: AutoWU and the linear-warmup baseline, both
as optimizer-driving schedulers and as the ``Schedule`` the platform's training loop drives.

- Step convention: after construction the optimizer holds the LR of step 1 (``lr(0)``); after ``t``
  calls of ``step(loss)`` it holds the LR of step ``t + 1``, which is the plan's ``lr(t)``.
- Parameter groups keep their ``lr_scale``.
- A state round trip mid-run continues the same LR sequence.
- Driving the ``Schedule`` as the worker does (losses handed over where the plan says, a new plan only
  at its ``next_switch``) gives the standalone scheduler's LRs for the same losses.
"""

from __future__ import annotations

import math

import pytest
import torch

from autowu_bench.platform.execution.controller import AutoWUController
from autowu_bench.schedulers import AutoWU, Decision, FixedSchedule, LinearWarmupCosine, LRPlan, Phase, Schedule, SwitchReason
from autowu_bench.schedulers.autowu import AutoWUOptions

S, E = 10, 12  # T = 120 steps
AUTOWU = {"decay": "const-cos", "test_interval": 5, "seed": 1, "lr_max": 10.0}
BASELINE = {"peak_lr": 0.4, "warmup_epochs": 2}


def loss_at(lr: float, t: int) -> float:
    """A loss with its minimum at LR 0.1 and a little seeded noise, so AutoWU's GP test can switch."""
    noise = torch.randn((), generator=torch.Generator().manual_seed(t)).item()
    return 1.0 + 0.3 * (math.log10(max(lr, 1e-8)) + 1.0) ** 2 + 0.01 * noise  # the baseline starts at 0


def standalone(name: str, optimizer: torch.optim.Optimizer):
    if name == "autowu":
        return AutoWU(optimizer, S, E, **AUTOWU)
    return LinearWarmupCosine(optimizer, S, E, **BASELINE)


def protocol(name: str) -> Schedule:
    if name == "autowu":
        return AutoWUController(AutoWUOptions(test_interval=5, lr_max=10.0), decay="const-cos", seed=1)  # AUTOWU's
    return FixedSchedule(**BASELINE)


SCHEDULES = ["autowu", "baseline"]


def _optimizer(scales=(1.0,)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": s} for s in scales]
    return torch.optim.SGD(groups, lr=123.0)


def _run(scheduler, steps: int, start: int = 0) -> list[float]:
    """The LR of each step (what the optimizer holds before it), stepping with that step's loss."""
    lrs = []
    for t in range(start, start + steps):
        lr = scheduler.get_last_lr()[0]
        lrs.append(lr)
        scheduler.step(loss_at(lr, t))
    return lrs


@pytest.mark.parametrize("name", SCHEDULES)
def test_the_optimizer_holds_the_lr_of_the_next_step(name):
    optimizer = _optimizer()
    scheduler = standalone(name, optimizer)
    plan = protocol(name).configure(S, E)  # the same schedule before any loss
    first = optimizer.param_groups[0]["lr"]
    assert first == plan.lr(0) != 123.0
    lrs = _run(scheduler, 3)
    assert lrs == [plan.lr(t) for t in range(3)]  # no loss can change the first steps' LRs
    assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0] == plan.lr(3)


@pytest.mark.parametrize("name", SCHEDULES)
def test_groups_keep_their_lr_scale(name):
    optimizer = _optimizer(scales=(1.0, 0.25))
    scheduler = standalone(name, optimizer)
    _run(scheduler, 2 * S + 3)
    full, scaled = (g["lr"] for g in optimizer.param_groups)
    assert full > 0 and scaled == pytest.approx(0.25 * full, rel=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_a_state_round_trip_mid_run_continues_the_same_lrs(name):
    whole = standalone(name, _optimizer())
    expected = _run(whole, S * E)
    first = standalone(name, _optimizer())
    head = _run(first, S * E // 2)
    second = standalone(name, _optimizer())
    second.load_state_dict(first.state_dict())
    tail = _run(second, S * E - len(head), start=len(head))
    assert head + tail == expected


@pytest.mark.parametrize("name", SCHEDULES)
def test_the_protocol_gives_the_standalone_lrs(name):
    expected = _run(standalone(name, _optimizer()), S * E)
    schedule = protocol(name)
    assert isinstance(schedule, Schedule)
    plan = schedule.configure(S, E)
    lrs, pending, waits = [], [], 0
    for t in range(S * E):
        lr = plan.lr(t)
        lrs.append(lr)
        pending.append(loss_at(lr, t))
        if plan.hands_over_after(t + 1):
            schedule.observe(pending)
            pending = []
            if t + 1 >= plan.next_switch:
                plan, waits = schedule.plan(), waits + 1
    assert lrs == expected
    if name == "autowu":
        assert plan.phase is Phase.DECAY and plan.switch_reason == "test"  # the run exercised a switch
        assert 0 < waits < len(schedule.tests_since(0))  # only where the plan could change
    else:
        assert plan.phase is Phase.FIXED and waits == 0 and schedule.tests_since(0) == []


@pytest.mark.parametrize("name", SCHEDULES)
def test_the_protocol_state_round_trip_keeps_the_plan(name):
    schedule = protocol(name)
    plan = schedule.configure(S, E)
    losses = [loss_at(plan.lr(t), t) for t in range(S * 3)]
    schedule.observe(losses)
    restored = protocol(name)
    restored.configure(S, E)
    restored.load_state_dict(schedule.state_dict())
    assert restored.plan() == schedule.plan()
    more = [loss_at(0.05, t) for t in range(S * 3, S * 5)]
    schedule.observe(more)
    restored.observe(more)
    assert restored.plan() == schedule.plan()


@pytest.mark.parametrize("name", SCHEDULES)
def test_plans_and_states_are_plain_data_that_load_with_weights_only(name, tmp_path):
    """What a checkpoint holds of a schedule (its state, its plan) reads back with
    ``torch.load(weights_only=True)``, past AutoWU's switch too (its reason, its tests' decisions)."""
    schedule = protocol(name)
    plan = schedule.configure(S, E)
    schedule.observe([loss_at(plan.lr(t), t) for t in range(S * E)])
    plan = schedule.plan()
    torch.save({"state": schedule.state_dict(), "plan": plan.to_dict()}, tmp_path / "state.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "state.pt") == []
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert LRPlan.from_dict(loaded["plan"]) == plan
    restored = protocol(name)
    restored.configure(S, E)
    restored.load_state_dict(loaded["state"])
    assert restored.plan() == plan and restored.tests_since(0) == schedule.tests_since(0)
    if name == "autowu":
        assert plan.switch_reason is SwitchReason.TEST and restored.plan().switch_reason is SwitchReason.TEST
        assert {type(t.decision) for t in restored.tests_since(0)} == {Decision}
