"""Host time the platform's TrainStep adds per optimizer step, against a hand-written step.

On a GPU a small batch leaves little GPU time per step to hide the host's work behind, so every
microsecond of Python in the step shows (bench/gpu_throughput.py at batch 512). This measures that work
where it dominates: a deep, tiny model on one CPU thread, same optimizer, loss and LR setting per step.

    python bench/step_overhead.py [--steps 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autowu_bench.platform.execution.train_step import LossBuffer, TrainStep  # noqa: E402


def tiny_deep_model() -> nn.Module:
    torch.manual_seed(0)
    layers = [m for _ in range(10) for m in (nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(8, 4))


def plain(steps: int, x: torch.Tensor, y: torch.Tensor) -> float:
    model = tiny_deep_model().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(steps):
        for group in opt.param_groups:
            group["lr"] = 0.01
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        last = loss.detach()
    float(last)
    return time.perf_counter() - start


def platform(steps: int, x: torch.Tensor, y: torch.Tensor) -> float:
    model = tiny_deep_model()
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss())
    buffer = LossBuffer()
    start = time.perf_counter()
    for _ in range(steps):
        buffer.append(step(x, y, 0.01))
    buffer.take()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    plain(50, x, y), platform(50, x, y)  # warm-up
    diffs, plains = [], []
    for _ in range(args.rounds):  # alternate, so drift hits both alike
        a, b = plain(args.steps, x, y), platform(args.steps, x, y)
        plains.append(a / args.steps * 1e6)
        diffs.append((b - a) / args.steps * 1e6)
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} rounds x {args.steps} steps")
    print(f"plain step: median {statistics.median(plains):.0f} us")
    print(f"platform - plain: median {statistics.median(diffs):+.0f} us per step "
          f"(min {min(diffs):+.0f}, max {max(diffs):+.0f})")


if __name__ == "__main__":
    main()
