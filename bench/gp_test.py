"""Seconds per test of the GP minimum detector at the paper's sizes, fast path next to the reference.

Sizes: fit on <= 100 points for 100 Adam iterations, 5 votes on <= 500 points, 500-point grid.
Histories: about 300 points (every vote sees all of them: one vote computed) and about 2000 points
(5 different vote subsets). Each detector runs consecutive tests on a growing, noisy U-shaped
warmup loss curve, as in a real warmup, so that the fit is warm-started as it would be.

Run: ``.venv/bin/python bench/gp_test.py`` (well under 2 minutes). Timings depend on what else runs
on the machine; the load average is printed with them.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch

from autowu_bench.schedulers.detector import GPMinimumDetector
from autowu_bench.schedulers.reference_detector import ReferenceGPMinimumDetector

TESTS_PER_WARMUP = 20
FAST_REPEATS = 5
LR_MIN, LR_MAX = 1e-5, 1.0


def warmup_losses(n: int, seed: int) -> np.ndarray:
    """A noisy warmup loss curve of ``n`` steps on an exponential LR ramp: a plateau at ln(10),
    a fall, a minimum near 60% of the ramp, then the loss climbs as the LR grows too large."""
    x = np.arange(n) / n
    rng = np.random.default_rng(seed)
    clean = 0.45 + 1.85 / (1.0 + np.exp((x - 0.35) / 0.07)) + 6.0 * np.maximum(x - 0.6, 0.0) ** 2
    return clean * (1.0 + 0.05 * rng.standard_normal(n))


def run_warmup(detector, losses: np.ndarray) -> tuple[list[float], list[bool]]:
    """Consecutive tests at the last TESTS_PER_WARMUP 'epoch ends' of the history."""
    n = len(losses)
    step = max(1, n // (2 * TESTS_PER_WARMUP))
    ends = [n - step * (TESTS_PER_WARMUP - 1 - k) for k in range(TESTS_PER_WARMUP)]
    seconds, decisions = [], []
    for end in ends:
        lr_now = LR_MIN * (LR_MAX / LR_MIN) ** (0.5 * (end - 1) / n)
        start = time.perf_counter()
        result = detector.test(losses[:end], lr_min=LR_MIN, lr_now=lr_now)
        seconds.append(time.perf_counter() - start)
        decisions.append(result.positive)
    return seconds, decisions


def main() -> None:
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, caller's torch threads {torch.get_num_threads()}, "
          f"threads during a test 1; load average at start {os.getloadavg()[0]:.2f}")
    for cls in (GPMinimumDetector, ReferenceGPMinimumDetector):  # one-off costs (imports, JIT) off the clock
        cls().test(warmup_losses(200, seed=99), lr_min=LR_MIN, lr_now=0.01)
    print(f"{'history':>8} {'detector':>10} {'tests':>6} {'median s':>9} {'max s':>8}")
    for n in (300, 2000):
        losses = warmup_losses(n, seed=n)
        fast_seconds: list[float] = []
        for repeat in range(FAST_REPEATS):
            seconds, fast_decisions = run_warmup(GPMinimumDetector(seed=repeat), losses)
            fast_seconds += seconds
            if repeat == 0:
                first_decisions = fast_decisions
        ref_seconds, ref_decisions = run_warmup(ReferenceGPMinimumDetector(seed=0), losses)
        for name, seconds in (("fast", fast_seconds), ("reference", ref_seconds)):
            print(f"{n:>8} {name:>10} {len(seconds):>6} {statistics.median(seconds):>9.4f} {max(seconds):>8.4f}")
        ratio = statistics.median(ref_seconds) / statistics.median(fast_seconds)
        agree = sum(a == b for a, b in zip(first_decisions, ref_decisions))
        print(f"{n:>8} reference/fast median ratio {ratio:.0f}x; same decision in {agree}/{len(ref_decisions)} "
              f"tests (seed 0; {sum(ref_decisions)} positive)")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
