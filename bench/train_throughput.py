"""Images/s of the platform's training loop under Ray Train against a plain PyTorch DDP loop (torchrun).

Same workload (model, data, augmentation, optimizer), global batch, number of workers and backend
(gloo on CPU) in the same command. The platform's number is a baseline trial through Ray Tune + Ray
Train (its per-step LR, its loss buffer and the one loss all-reduce per sync point included); the
plain loop is DDP with the same data loader and optimizer, a constant LR and nothing else. Both count epochs 2..E only (the first one warms up). Goal: ratio
>= 0.95. It prints numbers; it asserts nothing.

Rounds alternate (platform, plain); on a shared machine other processes slow single runs by tens of
percent, so the ratio is given of the best run of each side (the least disturbed) and of the medians.

    .venv/bin/python bench/train_throughput.py [--epochs 4] [--batch 1024] [--workers 2]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plain_ddp(args: argparse.Namespace) -> None:
    """The torchrun side: one rank of a plain DDP loop."""
    import torch
    import torch.distributed as dist

    from autowu_bench.workloads import build_optimizer, get_workload

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    wl = get_workload(args.workload)
    splits = wl.load(None, val_size=5000, train_subset=args.train_subset, seed=0)
    loader = wl.loader(splits.train, batch_size=args.batch // world, rank=rank, world_size=world, train=True, seed=0)
    torch.manual_seed(0)
    model = wl.build_model()
    net = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = build_optimizer("adamp", model, lr=0.01, weight_decay=1e-4)
    loss_fn = wl.loss_fn()
    rates = []
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        start, steps = time.perf_counter(), 0
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            optimizer.step()
            steps += 1
        rates.append(steps * args.batch / (time.perf_counter() - start))
    if rank == 0:
        print(json.dumps({"images_per_second": statistics.mean(rates[1:]), "per_epoch": rates}), flush=True)
    dist.destroy_process_group()


def run_plain(args: argparse.Namespace) -> float:
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    command = [
        torchrun, "--standalone", f"--nproc_per_node={args.workers}", os.path.abspath(__file__), "--plain",
        "--workload", args.workload, "--epochs", str(args.epochs), "--batch", str(args.batch),
    ]
    if args.train_subset:
        command += ["--train-subset", str(args.train_subset)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return result["images_per_second"]


def run_platform(args: argparse.Namespace) -> float:
    import pyarrow.parquet as pq

    from autowu_bench.platform.execution.ray_cluster import ray_session
    from autowu_bench.platform.execution.grid_run import run_grid
    from autowu_bench.platform.records.spec import TrialSpec

    spec = TrialSpec(
        trial_id="platform", suite="bench-throughput", arm="baseline", kind="baseline", workload=args.workload,
        batch_size=args.batch, epochs=args.epochs, seed=0, optimizer="adamp", weight_decay=1e-4, peak_lr=0.01,
        warmup_epochs=1, train_subset=args.train_subset, num_workers=args.workers, cpus_per_worker=1.0,
    )
    run_dir = tempfile.mkdtemp(prefix="autowu-throughput-")
    with ray_session(None, num_cpus=args.workers):
        (summary,) = run_grid([spec], run_dir=run_dir, tracking_uri=None, parent_run_id=None)
    if summary.status != "finished":
        sys.exit(f"the platform trial did not finish: {summary}")
    rows = []
    for path in glob.glob(os.path.join(run_dir, "trials", "platform", "fragments", "epochs-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return statistics.mean(r["images_per_second"] for r in rows if r["epoch"] >= 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="fmnist-mlp")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of (platform, plain)")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain_ddp(args)
        return
    platform, plain = [], []
    for _ in range(args.repeats):
        platform.append(run_platform(args))
        plain.append(run_plain(args))
    print(f"workload {args.workload}, global batch {args.batch}, {args.workers} CPU workers (gloo), "
          f"epochs 2..{args.epochs}, {args.repeats} rounds")
    print(f"platform under Ray Train: best {max(platform):,.0f} images/s, median {statistics.median(platform):,.0f}  "
          f"{['%.0f' % v for v in platform]}")
    print(f"plain DDP under torchrun: best {max(plain):,.0f} images/s, median {statistics.median(plain):,.0f}  "
          f"{['%.0f' % v for v in plain]}")
    print(f"ratio platform / plain: best {max(platform) / max(plain):.3f}, median "
          f"{statistics.median(platform) / statistics.median(plain):.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
