#!/usr/bin/env python3
"""Your own Ray Tune search over the platform's trial: a ``tune.Tuner`` with your search space, searcher
and scheduler, over ``autowu_bench.tune.trainable`` (its config keys and metrics: that module's docstring).

    python examples/my_tune_search.py                      # 4 random points, ASHA, on this machine's CPUs
    python examples/my_tune_search.py --samples 8 --epochs 10 --out /tmp/my-search

It searches the linear-warmup baseline's peak LR (log-uniform) and warmup epochs on Fashion-MNIST's
MLP, stops poor trials early with ASHA on validation accuracy, and prints the best trial's point and
test accuracy. Each trial's folder (summary.json, Parquet fragments) is under --out/trials.
"""

from __future__ import annotations

import argparse
import os

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from autowu_bench.tune import RESOURCES, trainable


def main(argv: list[str] | None = None) -> tune.ResultGrid:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-subset", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--data-root", default=None, help="default: the workload's (Debian's Fashion-MNIST)")
    parser.add_argument("--out", default="/tmp/autowu-my-search")
    parser.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args(argv)

    out = os.path.abspath(args.out)
    # The dashboard (ray[default]) serves the State API through which Ray Train frees the cores of a
    # trial that ASHA stopped; without it those cores stay taken (autowu_bench/platform/execution/ray_cluster.py).
    ray.init(num_cpus=args.num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", ignore_reinit_error=True)
    param_space = {
        # the search space: yours
        "peak_lr": tune.loguniform(1e-4, 3e-2),
        "warmup_epochs": tune.choice([0, 1]),
        # fixed keys of the trial
        "schedule": "baseline", "workload": "fmnist-mlp", "batch_size": args.batch_size,
        "epochs": args.epochs, "train_subset": args.train_subset, "val_size": 512,
        "data_root": args.data_root, "num_workers": 1, "cpus_per_worker": 1.0, "run_dir": out,
    }
    tuner = tune.Tuner(
        tune.with_resources(trainable, RESOURCES),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", num_samples=args.samples, max_concurrent_trials=2,
            scheduler=ASHAScheduler(time_attr="epoch", max_t=args.epochs + 1, grace_period=1, reduction_factor=2),
            search_alg=tune.search.BasicVariantGenerator(random_state=0),
        ),
        run_config=tune.RunConfig(name="my-search", storage_path=os.path.join(out, "tune"), verbose=0),
    )
    grid = tuner.fit()
    # The best on validation accuracy among the trials that ran to the end (they carry test_acc).
    done = [r for r in grid if r.metrics and r.metrics.get("status") == "finished"]
    best = max(done, key=lambda r: r.metrics["val_acc"])
    print(f"{len(grid)} trials, {len(done)} ran to the end; best: peak_lr {best.config['peak_lr']:.4g}, "
          f"warmup {best.config['warmup_epochs']} epochs, val_acc {best.metrics['val_acc']:.4f}, "
          f"test_acc {best.metrics['test_acc']:.4f}")
    return grid


if __name__ == "__main__":
    main()
