"""Images/s of the CIFAR training input pipeline: the workload's batched device loader against
torchvision's per-image transforms (what a DataLoader would run), in the same process.

The batched loader draws every image's crop, flip, AutoAugment sub-policy and Cutout square itself and
applies them as whole-batch tensor operations on the batch's device; its cost per batch on a GPU at
small batches is set by the kernels it launches, printed beside the rate (on the CPU, where it goes
through in chunks of 256 images for the caches, that count grows with the batch; on a GPU it does not). The torchvision baseline
runs RandomCrop(32, padding 4), RandomHorizontalFlip, AutoAugment (CIFAR-10 policy) and
normalization image by image in this process (Cutout, which torchvision lacks, is left out of it).

    python bench/augment_throughput.py                 # CPU, batch 512 and 4096
    python bench/augment_throughput.py --device cuda   # the batched loader on the GPU too
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autowu_bench.profiling import count_kernels  # noqa: E402
from autowu_bench.workloads import get_workload  # noqa: E402
from autowu_bench.workloads.data.splits import TensorSplit  # noqa: E402

WORKLOAD = "cifar10-resnet18"


def images_per_s(run, n_images: int, device: torch.device, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return n_images / best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, nargs="+", default=[512, 4096])
    p.add_argument("--batches", type=int, default=4, help="batches per timed round of the batched loader")
    p.add_argument("--baseline-images", type=int, default=1024, help="images per timed round of the baseline")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (best counts)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    wl = get_workload(WORKLOAD)
    n = max(args.batch) * args.batches
    g = torch.Generator().manual_seed(0)
    split = TensorSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g))

    per_image = v2.Compose([
        v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])  # fmt: skip
    images = split.images[: args.baseline_images]
    base = images_per_s(lambda: [per_image(img) for img in images], len(images), torch.device("cpu"), args.rounds)
    print(f"device: {device}; torch {torch.__version__}; threads {torch.get_num_threads()}; {WORKLOAD} train augmentation")
    print(f"torchvision per image (CPU, this process): {base:,.0f} images/s")
    print(f"{'batch':>6} {'batched img/s':>14} {'x per-image':>12} {'kernels/batch on this device':>30}")
    for batch in args.batch:
        loader = wl.loader(split, batch_size=batch, train=True, device=device, channels_last=True)
        it = iter(loader)
        next(it)  # the split's copy to the device, the policy tables
        kernels = count_kernels(lambda: next(it))
        rate = images_per_s(lambda: [None for _ in zip(range(args.batches), loader)], batch * args.batches, device, args.rounds)
        print(f"{batch:>6} {rate:>14,.0f} {rate / base:>12.1f} {kernels:>30}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
