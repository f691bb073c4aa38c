"""The per-trial controller gives the LR trace of the standalone AutoWU fed the same losses."""

from __future__ import annotations

import math

import pytest
import torch

from autowu_bench.platform.controller import AutoWUController, connect, start_controller, stop_controller
from autowu_bench.platform.spec import TrialSpec
from autowu_bench.schedulers import AutoWU

S, E = 20, 20  # T = 400 steps, longest warmup W = 200
KWARGS = {"decay": "cosine", "test_interval": 10, "seed": 3}


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
    """The worker's protocol: LR from the plan every step; at test points before ``decide_at`` the losses
    are fed without waiting; at ``decide_at`` the caller waits for the new plan. Returns the LRs, the
    last plan and how many calls waited."""
    plan = plan if plan is not None else controller.setup(S, E)
    status = controller.status()
    lrs, pending, waits = [], [], 0
    for t in range(start, stop):
        lr = plan.lr(t)
        lrs.append(lr)
        pending.append(loss_at(lr, t))
        step = t + 1
        if status["phase"] != "warmup":
            continue
        if step >= status["decide_at"]:
            plan, status = controller.advance_with_status(pending)
            pending, waits = [], waits + 1
        elif step % status["test_interval"] == 0:
            controller.feed(pending)
            pending = []
    if pending and status["phase"] == "warmup":
        controller.feed(pending)
    return lrs, plan, waits


@pytest.fixture(scope="module")
def expected():
    lrs, sched = standalone_trace()
    assert sched.switch_reason == "test"  # the curve exercises a switch by the GP test
    return lrs, sched


def test_in_process_controller_matches_standalone(expected):
    lrs, sched = expected
    controller = AutoWUController(dict(KWARGS))
    got, _, waits = drive(controller)
    assert got == lrs
    # Only the tests that could complete the patience (and step 1) made the caller wait.
    assert waits < len(sched.tests) / 2
    status = controller.status()
    assert (status["switch_step"], status["switch_reason"]) == (sched.switch_step, sched.switch_reason)
    assert status["decay_start_lr"] == sched.decay_start_lr
    assert [r["step"] for r in controller.tests_since(0)] == [r["step"] for r in sched.tests]
    assert controller.tests_since(len(sched.tests) - 1)[0]["decision"] == "switch"


def test_state_round_trip_mid_warmup_continues_the_same_trace(expected):
    lrs, _ = expected
    first = AutoWUController(dict(KWARGS))
    head, plan, _ = drive(first, 0, 100)
    assert plan.phase == "warmup"
    second = AutoWUController(dict(KWARGS))
    second.load_state_dict(first.state_dict())
    tail, _, _ = drive(second, 100, S * E, plan=second.plan())
    assert head + tail == lrs


def test_setup_refuses_other_sizes():
    controller = AutoWUController(dict(KWARGS), S, E)
    controller.setup(S, E)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        controller.setup(S + 1, E)


def test_ray_actor_matches_standalone(expected):
    import ray
    lrs, sched = expected
    spec = TrialSpec(
        trial_id="controller-test", suite="t", arm="autowu-cos", kind="autowu", workload="fmnist-mlp",
        batch_size=8, epochs=E, seed=3, optimizer="sgd", weight_decay=0.0, decay="cosine",
        autowu={"test_interval": 10},
    )
    ray.init(address="local", num_cpus=1, object_store_memory=200 * 1024**2, include_dashboard=False,
             namespace="controller-test")
    try:
        handle = start_controller(spec)
        client = connect(spec.trial_id)  # by name, as rank 0 finds it
        got, _, _ = drive(client)
        assert got == lrs
        assert client.status()["switch_step"] == sched.switch_step
        state = client.state_dict()
        stop_controller(handle)
    finally:
        ray.shutdown()
    restored = AutoWUController(dict(KWARGS))
    restored.load_state_dict(state)
    assert restored.status()["decay_start_lr"] == sched.decay_start_lr
