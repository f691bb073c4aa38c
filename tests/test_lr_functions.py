"""Closed-form values of the pure LR functions, the baseline scheduler and the scaling rules."""

import math

import pytest
import torch

from autowu_bench.schedulers import LinearWarmupCosine, fixed_plan, scaled_peak_lr
from autowu_bench.schedulers.lr_functions import (
    const_cos_lr,
    const_cos_start,
    cosine_lr,
    exp_warmup_lr,
    linear_ramp_lr,
    lr_at_fraction,
)


def test_exp_warmup_goes_from_lr_min_to_lr_max_geometrically():
    assert exp_warmup_lr(0, 1e-5, 1.0, 1000) == pytest.approx(1e-5)
    assert exp_warmup_lr(1000, 1e-5, 1.0, 1000) == pytest.approx(1.0)
    assert exp_warmup_lr(500, 1e-5, 1.0, 1000) == pytest.approx(math.sqrt(1e-5))
    ratios = [exp_warmup_lr(t + 1, 1e-5, 1.0, 1000) / exp_warmup_lr(t, 1e-5, 1.0, 1000) for t in (0, 10, 900)]
    assert ratios == pytest.approx([1e5 ** (1 / 1000)] * 3)


def test_linear_ramp_and_eq5_mapping():
    assert linear_ramp_lr(25, 0.0, 2.0, 100) == pytest.approx(0.5)
    assert lr_at_fraction(0.0, 1e-5, 0.1, "exp") == pytest.approx(1e-5)
    assert lr_at_fraction(1.0, 1e-5, 0.1, "exp") == pytest.approx(0.1)
    assert lr_at_fraction(0.5, 1e-4, 1e-2, "exp") == pytest.approx(1e-3)
    assert lr_at_fraction(0.5, 0.0, 1.0, "linear") == pytest.approx(0.5)


def test_cosine_starts_at_switch_halves_midway_and_ends_at_zero():
    assert cosine_lr(200, 200, 1000, 0.4) == pytest.approx(0.4)
    assert cosine_lr(201, 200, 1000, 0.4) < 0.4  # the step after the switch already decays
    assert cosine_lr(600, 200, 1000, 0.4) == pytest.approx(0.2)
    assert cosine_lr(1000, 200, 1000, 0.4) == 0.0
    assert cosine_lr(1500, 200, 1000, 0.4) == 0.0
    assert cosine_lr(150, 200, 1000, 0.4) == pytest.approx(0.4)  # replayed steps before the switch hold


def test_const_cos_holds_through_ceil_of_const_fraction_then_cosine():
    # docs/autowu.md's example ("Decay"): T = 5000 holds through step 4000, cosine over 4001..5000.
    assert const_cos_start(5000, 0.8) == 4000
    assert const_cos_start(4999, 0.8) == 4000  # ceil(3999.2)
    assert const_cos_lr(1234, 1000, 5000, 0.3, 0.8) == pytest.approx(0.3)
    assert const_cos_lr(4000, 1000, 5000, 0.3, 0.8) == pytest.approx(0.3)
    assert const_cos_lr(4001, 1000, 5000, 0.3, 0.8) < 0.3
    assert const_cos_lr(4500, 1000, 5000, 0.3, 0.8) == pytest.approx(0.15)
    assert const_cos_lr(5000, 1000, 5000, 0.3, 0.8) == 0.0
    # A switch after t_c starts the cosine at the switch.
    assert const_cos_lr(4200, 4200, 5000, 0.3, 0.8) == pytest.approx(0.3)
    assert const_cos_lr(4600, 4200, 5000, 0.3, 0.8) == pytest.approx(0.15)


def test_fixed_plan_linear_from_zero_then_cosine_to_zero():
    plan = fixed_plan(10, 20, peak_lr=0.8, warmup_epochs=5)
    assert plan.warmup_steps == 50 and plan.total_steps == 200
    assert plan.lr(0) == 0.0
    assert plan.lr(25) == pytest.approx(0.4)
    assert plan.lr(50) == pytest.approx(0.8)
    assert plan.lr(125) == pytest.approx(0.4)
    assert plan.lr(200) == 0.0


def test_fixed_plan_polynomial_and_constant_decays_and_no_warmup():
    poly = fixed_plan(10, 20, peak_lr=0.8, warmup_epochs=0, decay="polynomial", decay_power=2.0)
    assert poly.warmup_steps == 0 and poly.lr(0) == pytest.approx(0.8)  # no warmup: the first step at the peak
    assert poly.lr(100) == pytest.approx(0.8 * 0.5**2)
    assert poly.lr(200) == 0.0
    assert fixed_plan(10, 20, peak_lr=0.8, warmup_epochs=0, decay="polynomial", decay_power=1.0).lr(150) == \
        pytest.approx(0.2)
    const = fixed_plan(10, 20, peak_lr=0.8, warmup_epochs=2, decay="constant")
    assert const.lr(10) == pytest.approx(0.4) and const.lr(20) == const.lr(199) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="decay='step'"):
        fixed_plan(10, 20, peak_lr=0.8, warmup_epochs=2, decay="step")


def test_baseline_scheduler_steps_per_optimizer_step_and_keeps_group_ratios():
    w = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w]}, {"params": [b], "lr_scale": 0.1}], lr=123.0)
    sched = LinearWarmupCosine(opt, 4, 10, peak_lr=1.0, warmup_epochs=1)
    assert sched.get_last_lr() == [0.0, 0.0]
    for _ in range(2):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.5, 0.05])
    state = sched.state_dict()
    other = LinearWarmupCosine(opt, 4, 10, peak_lr=1.0, warmup_epochs=1)
    other.load_state_dict(state)
    assert other.get_last_lr() == pytest.approx([0.5, 0.05])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"peak_lr": 0.0, "warmup_epochs": 1}, "peak_lr"),
        ({"peak_lr": 0.1, "warmup_epochs": 11}, "warmup_epochs"),
        ({"peak_lr": 0.1, "warmup_epochs": -1}, "warmup_epochs"),
    ],
)
def test_baseline_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        fixed_plan(4, 10, **kwargs)


def test_scaling_rules_sqrt_and_linear():
    assert scaled_peak_lr("sqrt", 1e-3, 4096, 256) == pytest.approx(4e-3)
    assert scaled_peak_lr("linear", 0.1, 1024, 256) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="rule 'cubic'"):
        scaled_peak_lr("cubic", 0.1, 1024, 256)
    with pytest.raises(ValueError, match="batch_size"):
        scaled_peak_lr("sqrt", 0.1, 0, 256)
