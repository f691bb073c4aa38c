"""The per-trial controller gives the LR trace of the standalone AutoWU fed the same losses."""

from __future__ import annotations

import math

import pytest
import torch

from autowu_bench.platform.execution.controller import AutoWUController, ControllerClient, start_controller, stop_controller
from autowu_bench.schedulers import AutoWU, Phase, Schedule
from autowu_bench.schedulers.autowu import AutoWUOptions

S, E = 20, 20  # T = 400 steps, longest warmup W = 200
KWARGS = {"decay": "cosine", "test_interval": 10, "seed": 3}
# The same options as the controller takes them: AutoWU's options, the decay and the seed.
OPTIONS, CONTROLLER_ARGS = AutoWUOptions(test_interval=10), {"decay": "cosine", "seed": 3}


def loss_at(lr: float, step: int) -> float:
    """A loss with its minimum at LR 1e-2 (reached at t = 120 of the warmup) and a little seeded noise."""
    noise = torch.randn((), generator=torch.Generator().manual_seed(step)).item()
    return 1.0 + 0.2 * (math.log10(lr) + 2.0) ** 2 + 0.01 * noise


def standalone_trace() -> tuple[list[float], AutoWU]:
    param = torch.nn.Parameter(torch.zeros(1))
    sched = AutoWU(torch.optim.SGD([param], lr=1.0), S, E, **KWARGS)
    lrs = []
    for t in range(S * E):
        lr = sched.get_last_lr()[0]
        lrs.append(lr)
        sched.step(loss_at(lr, t))
    return lrs, sched


def drive(controller, start: int = 0, stop: int = S * E, plan=None):
    """The worker's protocol: LR from the plan every step; the losses handed over where the plan says;
    a new plan fetched (waiting) only at its ``next_switch``. Returns the LRs, the last plan and how
    many calls waited."""
    plan = plan if plan is not None else controller.configure(S, E)
    lrs, pending, waits = [], [], 0
    for t in range(start, stop):
        lr = plan.lr(t)
        lrs.append(lr)
        pending.append(loss_at(lr, t))
        step = t + 1
        if not plan.hands_over_after(step):
            continue
        controller.observe(pending)
        pending = []
        if step >= plan.next_switch:
            plan, waits = controller.plan(), waits + 1
    if pending and plan.phase is Phase.WARMUP:
        controller.observe(pending)
    return lrs, plan, waits


@pytest.fixture(scope="module")
def expected():
    lrs, sched = standalone_trace()
    assert sched.switch_reason == "test"  # the curve exercises a switch by the GP test
    return lrs, sched


def test_in_process_controller_matches_standalone(expected):
    lrs, sched = expected
    controller = AutoWUController(OPTIONS, **CONTROLLER_ARGS)
    got, _, waits = drive(controller)
    assert got == lrs
    # Only the tests that could complete the patience (and step 1) made the caller wait.
    assert waits < len(sched.tests) / 2
    plan = controller.plan()
    assert (plan.switch_step, plan.switch_reason) == (sched.switch_step, sched.switch_reason)
    assert plan.decay_start_lr == sched.decay_start_lr
    assert [r.step for r in controller.tests_since(0)] == [r.step for r in sched.tests]
    assert controller.tests_since(len(sched.tests) - 1)[0].decision == "switch"


def test_state_round_trip_mid_warmup_continues_the_same_trace(expected):
    lrs, _ = expected
    first = AutoWUController(OPTIONS, **CONTROLLER_ARGS)
    head, plan, _ = drive(first, 0, 100)
    assert plan.phase is Phase.WARMUP
    second = AutoWUController(OPTIONS, **CONTROLLER_ARGS)
    second.load_state_dict(first.state_dict())
    tail, _, _ = drive(second, 100, S * E, plan=second.plan())
    assert head + tail == lrs


def test_configure_refuses_other_sizes():
    controller = AutoWUController(OPTIONS, **CONTROLLER_ARGS, steps_per_epoch=S, total_epochs=E)
    controller.configure(S, E)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        controller.configure(S + 1, E)


def test_the_controller_and_its_client_are_schedules():
    assert isinstance(AutoWUController(OPTIONS, **CONTROLLER_ARGS), Schedule)
    assert isinstance(ControllerClient(handle=None), Schedule)


def test_ray_actor_matches_standalone(expected):
    import ray

    lrs, sched = expected
    ray.init(address="local", num_cpus=1, object_store_memory=200 * 1024**2, include_dashboard=False)
    try:
        handle = start_controller(OPTIONS, **CONTROLLER_ARGS)
        client = ControllerClient(handle)  # as rank 0 gets it: the handle from the driver
        got, _, _ = drive(client)
        assert got == lrs
        assert client.plan().switch_step == sched.switch_step
        state = client.state_dict()
        stop_controller(handle)
    finally:
        ray.shutdown()
    restored = AutoWUController(OPTIONS, **CONTROLLER_ARGS)
    restored.load_state_dict(state)
    assert restored.plan().decay_start_lr == sched.decay_start_lr
