"""Images/s of the platform's training step against a plain hand-written PyTorch loop.

Both loops train the CIFAR-shaped ResNet-18 of the ``cifar10-resnet18`` workload with the same
settings (bf16 autocast, channels_last, torch.compile by default on CUDA), the same optimizer and the
same device-resident batches; the platform loop is ``autowu_bench.platform.execution.train_step.TrainStep`` with its
``LossBuffer`` (losses stay on the device until the end), exactly as the Ray Train worker drives it.
Timed rounds of the two loops alternate and the best round of each counts, so clock and thermal drift
hit both alike.

It also reports the input pipeline: the workload's device-resident loader (random crop, flip,
AutoAugment, Cutout, normalization, all batched on the device) alone, and the platform step fed by it.

Goals (issue 4): platform / plain >= 0.95, and >= 90k images/s at batch 4096 on an H100.

    python bench/gpu_throughput.py                           # CUDA: batch 512 and 4096
    python bench/gpu_throughput.py --device cpu --steps 3 --batch 64   # a quick check on the CPU
"""

from __future__ import annotations

import argparse
import json
import platform as host
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autowu_bench.platform.execution.train_step import LossBuffer, TrainStep  # noqa: E402
from autowu_bench.schedulers.lr_functions import linear_warmup_cosine_lr  # noqa: E402
from autowu_bench.workloads import build_optimizer, get_workload  # noqa: E402
from autowu_bench.workloads.data.splits import TensorSplit  # noqa: E402

WORKLOAD = "cifar10-resnet18"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lr_at(t: int, total: int) -> float:
    return linear_warmup_cosine_lr(t, 0.01, max(total // 10, 1), total)


def make_model(device: torch.device, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    model = get_workload(WORKLOAD).build_model().to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def synthetic_batches(n: int, batch: int, device: torch.device, channels_last: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` distinct normalized batches already on the device (so no input cost is timed)."""
    g = torch.Generator(device="cpu").manual_seed(1)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append((x, torch.randint(0, 10, (batch,), generator=g).to(device)))
    return out


class PlainLoop:
    """The reference: what one would write by hand for the same model and settings."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.model = make_model(device, args.channels_last)
        self.net = torch.compile(self.model) if args.compile else self.model
        self.opt = build_optimizer(args.optimizer, self.model, lr=0.01, weight_decay=5e-4)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
        self.amp = args.amp == "bf16"
        self.device = device
        self.t = 0
        self.total = args.steps * 100

    def run(self, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> None:
        self.model.train()
        last = None
        for i in range(steps):
            x, y = batches[i % len(batches)]
            for group in self.opt.param_groups:
                group["lr"] = lr_at(self.t, self.total)
            self.opt.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss = self.loss_fn(self.net(x), y)
            loss.backward()
            self.opt.step()
            last = loss.detach()
            self.t += 1
        if last is not None:
            float(last)


class PlatformLoop:
    """The platform's step function and loss buffer, as the Ray Train worker uses them."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        model = make_model(device, False)  # TrainStep converts to channels_last itself
        opt = build_optimizer(args.optimizer, model, lr=0.01, weight_decay=5e-4)
        self.step = TrainStep(
            model, opt, nn.CrossEntropyLoss(label_smoothing=0.1),
            amp=args.amp if args.amp != "none" else None, channels_last=args.channels_last, compile=args.compile,
        )
        self.buffer = LossBuffer()
        self.t = 0
        self.total = args.steps * 100

    def run(self, batches, steps: int) -> None:
        it = iter(batches) if not isinstance(batches, list) else None
        for i in range(steps):
            x, y = next(it) if it is not None else batches[i % len(batches)]
            self.buffer.append(self.step(x, y, lr_at(self.t, self.total)))
            self.t += 1
        self.buffer.take()


def timed(fn: Callable[[], None], device: torch.device) -> float:
    return timed_with_host(fn, device)[1]


def timed_with_host(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(seconds until ``fn`` returned, seconds until the device finished too). On CUDA a host time close
    to the total means the host, not the GPU, sets the pace: Python per step is then what to cut."""
    sync(device)
    start = time.perf_counter()
    fn()
    host = time.perf_counter() - start
    sync(device)
    return host, time.perf_counter() - start


def loader_over_synthetic_cifar(batch: int, steps: int, device: torch.device, channels_last: bool):
    """The workload's training loader over random CIFAR-shaped uint8 images (enough for ``steps`` batches)."""
    n = batch * max(steps, 1)
    g = torch.Generator().manual_seed(2)
    split = TensorSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g))
    return get_workload(WORKLOAD).loader(split, batch_size=batch, train=True, device=device, channels_last=channels_last)


def bench_batch(args: argparse.Namespace, device: torch.device, batch: int) -> dict:
    torch._dynamo.reset()  # compile this batch size statically (a size change would mark the batch dim dynamic)
    batches = synthetic_batches(args.distinct_batches, batch, device, args.channels_last)
    plain, plat = PlainLoop(args, device), PlatformLoop(args, device)
    warm = args.warmup_steps
    plain.run(batches, warm)  # compile, autotune, allocator warm-up
    plat.run(batches, warm)
    plain_s, plat_s = [], []
    for _ in range(args.rounds):
        plain_s.append(timed_with_host(lambda: plain.run(batches, args.steps), device))
        plat_s.append(timed_with_host(lambda: plat.run(batches, args.steps), device))
    images = batch * args.steps
    (plain_host, plain_total), (plat_host, plat_total) = min(plain_s, key=lambda s: s[1]), min(plat_s, key=lambda s: s[1])
    result = {
        "batch": batch,
        "plain_images_per_s": images / plain_total,
        "platform_images_per_s": images / plat_total,
        "plain_host_ms_per_step": 1e3 * plain_host / args.steps,
        "platform_host_ms_per_step": 1e3 * plat_host / args.steps,
        "plain_ms_per_step": 1e3 * plain_total / args.steps,
    }
    result["ratio"] = result["platform_images_per_s"] / result["plain_images_per_s"]

    loader = loader_over_synthetic_cifar(batch, args.steps, device, args.channels_last)
    for _ in zip(range(2), loader):  # warm the augmentation kernels
        pass
    load_s = timed(lambda: [None for _ in loader], device)
    result["loader_images_per_s"] = batch * len(loader) / load_s
    loader.set_epoch(1)
    e2e_s = timed(lambda: plat.run(loader, len(loader)), device)
    result["platform_with_loader_images_per_s"] = batch * len(loader) / e2e_s
    return result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({host.processor() or host.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, nargs="+", default=[512, 4096])
    p.add_argument("--steps", type=int, default=50, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per loop (best counts)")
    p.add_argument("--warmup-steps", type=int, default=None, help="untimed steps first (default: 15 on CUDA, 1 on CPU)")
    p.add_argument("--distinct-batches", type=int, default=4)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamp", "lamb"])
    p.add_argument("--amp", default=None, choices=["bf16", "none"], help="default: bf16 on CUDA, none on CPU")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.amp = args.amp or ("bf16" if cuda else "none")
    args.compile = cuda if args.compile is None else args.compile
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (15 if cuda else 1)
    if cuda:
        torch.backends.cudnn.benchmark = True

    settings = f"amp={args.amp} channels_last={args.channels_last} compile={args.compile} optimizer={args.optimizer}"
    print(f"device: {device_name(device)}; torch {torch.__version__}; {WORKLOAD}; {settings}")
    print(
        f"{'batch':>6} {'plain img/s':>12} {'platform img/s':>15} {'ratio':>6} {'loader img/s':>13} {'platform+loader':>16}"
        f" {'host ms/step plain, platform (plain total)':>44}"
    )
    results = []
    for batch in args.batch:
        r = bench_batch(args, device, batch)
        results.append(r)
        print(
            f"{batch:>6} {r['plain_images_per_s']:>12,.0f} {r['platform_images_per_s']:>15,.0f} {r['ratio']:>6.3f} "
            f"{r['loader_images_per_s']:>13,.0f} {r['platform_with_loader_images_per_s']:>16,.0f}"
            f" {r['plain_host_ms_per_step']:>22.2f}, {r['platform_host_ms_per_step']:.2f} ({r['plain_ms_per_step']:.2f})"
        )
    print("goals: ratio >= 0.95; platform >= 90,000 img/s at batch 4096 on an H100")
    for r in results:
        ok_ratio = r["ratio"] >= 0.95
        line = f"batch {r['batch']}: ratio {r['ratio']:.3f} ({'met' if ok_ratio else 'NOT met'})"
        if r["batch"] == 4096 and cuda:
            met = r["platform_images_per_s"] >= 90_000
            line += f", {r['platform_images_per_s']:,.0f} img/s ({'met' if met else 'NOT met'})"
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"device": device_name(device), "torch": torch.__version__, "settings": settings, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
