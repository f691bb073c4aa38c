"""Learning rates as pure functions of the step.

Convention (shared by every schedule in this package): ``t`` counts optimizer steps already taken,
and ``lr(t)`` is the learning rate of step ``t + 1``. So ``lr(0)`` is the LR of the first step and
``lr(T)`` is the value after the last of ``T`` steps.
"""

from __future__ import annotations

import math

WARMUPS = ("exp", "linear")  # AutoWU's warmup curves: the paper's exponential one, the linear ablation


def exp_warmup_lr(t: float, lr_min: float, lr_max: float, warmup_steps: int) -> float:
    """AutoWU eq. 1: ``lr_min * (lr_max / lr_min) ** (t / W)``; grows by a fixed factor per step."""
    return lr_min * (lr_max / lr_min) ** (t / warmup_steps)


def linear_ramp_lr(t: float, lr_start: float, lr_end: float, warmup_steps: int) -> float:
    """``lr_start + (lr_end - lr_start) * t / W``: AutoWU's linear ablation and the baseline's warmup."""
    return lr_start + (lr_end - lr_start) * t / warmup_steps


def warmup_lr(t: float, lr_min: float, lr_max: float, warmup_steps: int, kind: str) -> float:
    """AutoWU's warmup of ``kind`` "exp" (the paper's) or "linear" (ablation, appendix C.2)."""
    if kind == "exp":
        return exp_warmup_lr(t, lr_min, lr_max, warmup_steps)
    return linear_ramp_lr(t, lr_min, lr_max, warmup_steps)


def lr_at_fraction(x: float, lr_min: float, lr_now: float, kind: str) -> float:
    """AutoWU eq. 5: the warmup LR at position ``x`` in [0, 1] of the history, where 1 is ``lr_now``."""
    if kind == "exp":
        return lr_min * (lr_now / lr_min) ** x
    return lr_min + (lr_now - lr_min) * x


def cosine_lr(t: float, t_start: int, total_steps: int, lr_start: float) -> float:
    """Half cosine from ``lr_start`` at ``t_start`` to 0 at ``total_steps``.

    Steps before ``t_start`` hold ``lr_start`` (the rollback of a diverged trial replays them under
    the decay); steps past the end hold 0.
    """
    if total_steps <= t_start:
        return 0.0 if t >= total_steps else lr_start
    progress = min(max((t - t_start) / (total_steps - t_start), 0.0), 1.0)
    return lr_start * 0.5 * (1.0 + math.cos(math.pi * progress))


def const_cos_start(total_steps: int, const_fraction: float) -> int:
    """Last step held constant by const-cos: ``t_c = ceil(const_fraction * T)`` (docs/autowu.md, "Decay")."""
    # round() first so that 0.8 * 5000 = 4000.000000000001 does not become 4001.
    return math.ceil(round(const_fraction * total_steps, 9))


def const_cos_lr(
    t: float, t_switch: int, total_steps: int, lr_start: float, const_fraction: float
) -> float:
    """Hold ``lr_start`` through ``t_c = ceil(const_fraction * T)``, then a half cosine to 0 at T.

    A switch later than ``t_c`` starts the cosine at the switch.
    """
    t_c = max(const_cos_start(total_steps, const_fraction), t_switch)
    return cosine_lr(t, t_c, total_steps, lr_start)


def polynomial_lr(t: float, t_start: int, total_steps: int, lr_start: float, power: float) -> float:
    """``lr_start * (1 - progress) ** power`` from ``t_start`` to 0 at ``total_steps`` (LARS's decay,
    power 2); steps before ``t_start`` hold ``lr_start``, steps past the end 0."""
    if total_steps <= t_start:
        return 0.0 if t >= total_steps else lr_start
    progress = min(max((t - t_start) / (total_steps - t_start), 0.0), 1.0)
    return lr_start * (1.0 - progress) ** power


# The baseline's decays after its linear warmup: the paper's cosine, LARS's polynomial (power 2 by
# default) and none (Schedule-Free, whose averaging replaces the decay).
BASELINE_DECAYS = ("cosine", "polynomial", "constant")


def linear_warmup_decay_lr(
    t: float, peak_lr: float, warmup_steps: int, total_steps: int, decay: str = "cosine", power: float = 2.0
) -> float:
    """The baseline: linear from 0 at t = 0 to ``peak_lr`` at ``warmup_steps``, then ``decay`` ("cosine"
    or "polynomial" to 0 at T, or "constant") from ``peak_lr``. ``warmup_steps`` 0: no warmup."""
    if t < warmup_steps:
        return linear_ramp_lr(t, 0.0, peak_lr, warmup_steps)
    if decay == "cosine":
        return cosine_lr(t, warmup_steps, total_steps, peak_lr)
    if decay == "polynomial":
        return polynomial_lr(t, warmup_steps, total_steps, peak_lr, power)
    if decay == "constant":
        return peak_lr
    raise ValueError(f"decay={decay!r}; valid: {', '.join(BASELINE_DECAYS)}")


def linear_warmup_cosine_lr(t: float, peak_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The paper's baseline: linear from 0 at t = 0 to ``peak_lr`` at ``warmup_steps``, then cosine to 0 at T."""
    return linear_warmup_decay_lr(t, peak_lr, warmup_steps, total_steps, "cosine")


def sqrt_scaled_lr(base_lr: float, batch_size: int, base_batch_size: int) -> float:
    """Square-root scaling (the paper's baseline rule): ``base_lr * sqrt(B / B_base)``."""
    return base_lr * math.sqrt(batch_size / base_batch_size)


def linear_scaled_lr(base_lr: float, batch_size: int, base_batch_size: int) -> float:
    """Linear scaling (Goyal et al. 2017): ``base_lr * B / B_base``."""
    return base_lr * batch_size / base_batch_size


SCALING_RULES = {"sqrt": sqrt_scaled_lr, "linear": linear_scaled_lr}


def scaled_peak_lr(rule: str, base_lr: float, batch_size: int, base_batch_size: int) -> float:
    """Peak LR for ``batch_size`` by ``rule`` ("sqrt" or "linear") from ``base_lr`` at ``base_batch_size``."""
    if rule not in SCALING_RULES:
        raise ValueError(f"scaling rule {rule!r} is unknown; use one of {sorted(SCALING_RULES)}")
    for name, value in (("base_lr", base_lr), ("batch_size", batch_size), ("base_batch_size", base_batch_size)):
        if not value > 0:
            raise ValueError(f"{name}={value!r} must be > 0")
    return SCALING_RULES[rule](base_lr, batch_size, base_batch_size)
