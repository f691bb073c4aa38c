"""AutoWU with its real GP detector on synthetic warmup loss curves, and bit-for-bit resume."""

import math

import numpy as np
import pytest
import torch

from autowu_bench.schedulers import AutoWU, AutoWUCore

S, E = 10, 100  # T = 1000, W = 500: the LR grows x1.26 per epoch, the paper's test density


def loss_at(lr: float, lr_best: float, rng: np.random.Generator, noise: float = 0.02) -> float:
    """A warmup curve in log-LR: flat while the LR is tiny, a valley at lr_best, a steep rise after."""
    u = math.log10(lr) - math.log10(lr_best)
    base = 2.3 - 1.5 / (1.0 + math.exp(-3.0 * (u + 2.0)))  # learning starts about 2 decades below
    rise = 1.2 * max(u, 0.0) ** 2
    return base + rise + noise * rng.standard_normal()


def run(core: AutoWUCore, lr_best: float, seed: int = 0, max_steps: int | None = None) -> None:
    rng = np.random.default_rng(seed)
    while core.phase == "warmup" and (max_steps is None or core.t < max_steps):
        core.observe([loss_at(core.lr(), lr_best, rng)])


def epoch_of_lr(lr: float) -> float:
    """The (fractional) epoch at which the exponential warmup reaches ``lr``."""
    return math.log(lr / 1e-5) / math.log(1e5) * (0.5 * S * E) / S


@pytest.mark.parametrize("lr_best", [3e-3, 3e-2])
def test_a_clear_minimum_is_found_within_patience_plus_two_epochs(lr_best):
    core = AutoWUCore(S, E, decay="cosine", seed=1)
    run(core, lr_best)
    assert core.switch_reason == "test"
    switch_epoch = core.switch_step / S
    assert epoch_of_lr(lr_best) < switch_epoch <= epoch_of_lr(lr_best) + core.patience + 2
    assert lr_best / 2 <= core.decay_start_lr <= lr_best * 2
    switch = core.tests[-1]
    assert switch.decision == "switch" and len(switch.mu) == 500 and len(switch.x_star) == 5
    assert all(len(r.p) == 5 for r in core.tests)


def test_a_curve_that_never_turns_up_falls_back_at_the_longest_warmup():
    core = AutoWUCore(S, E, seed=2)
    run(core, lr_best=100.0)  # the minimum lies beyond lr_max
    assert (core.switch_reason, core.switch_step) == ("fallback", core.warmup_steps)
    assert core.decay_start_lr == pytest.approx(1e-5 * 1e5 ** ((core.warmup_steps - 1) / core.warmup_steps))


def test_an_epoch_of_mostly_non_finite_losses_switches_at_once():
    core = AutoWUCore(S, E, seed=3)
    rng = np.random.default_rng(0)
    core.observe([loss_at(core.lr(t), 3e-2, rng) for t in range(200)])
    assert core.phase == "warmup"
    core.observe([math.nan, 2.0, math.inf, math.nan, math.nan, 1.0, math.nan, math.nan, math.nan, math.nan])
    assert (core.switch_reason, core.switch_step, core.divergence_step) == ("divergence", 201, 201)
    assert core.decay_start_lr <= core.lr(200)


def _trace(sched: AutoWU, losses) -> list[float]:
    out = []
    for loss in losses:
        sched.step(loss)
        out.append(sched.get_last_lr()[0])
    return out


def _losses(n: int, lr_best: float, seed: int) -> list[float]:
    """Losses along the uninterrupted warmup path; fed blind, so they stay a fixed sequence."""
    rng = np.random.default_rng(seed)
    return [loss_at(1e-5 * 1e5 ** (t / 500), lr_best, rng) for t in range(n)]


@pytest.mark.parametrize("save_at", ["mid-warmup", "after-switch"])
def test_state_dict_resume_gives_the_same_lr_trace_exactly(save_at, tmp_path):
    losses = _losses(800, 3e-3, seed=4)
    opt = lambda: torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)  # noqa: E731
    whole = AutoWU(opt(), S, 80, seed=5, test_interval="auto")
    full_trace = _trace(whole, losses)
    switch = whole.switch_step
    assert whole.switch_reason == "test" and 50 < switch < 400

    cut = switch // 2 if save_at == "mid-warmup" else switch
    first = AutoWU(opt(), S, 80, seed=5, test_interval="auto")
    head = _trace(first, losses[:cut])
    torch.save(first.state_dict(), tmp_path / "autowu.pt")
    resumed = AutoWU(opt(), S, 80, seed=5, test_interval="auto")
    resumed.load_state_dict(torch.load(tmp_path / "autowu.pt", weights_only=True))
    assert resumed.get_last_lr() == first.get_last_lr()
    tail = _trace(resumed, losses[cut:])
    assert head + tail == full_trace
    assert resumed.switch_step == switch and resumed.decay_start_lr == whole.decay_start_lr
    assert len(resumed.tests) == len(whole.tests)
