"""AutoWU's cost on the platform: an AutoWU trial against a fixed-schedule trial, same workload and steps.

Both run through Ray Tune + Ray Train one after the other (ABBA order, so drift in the machine's load
hits both arms alike). The number compared is the training time after the first epoch (the sum of
``epoch_seconds`` of epochs 2..E: the step loop with its sync points, controller calls and GP tests;
start-up, evaluation and checkpoints excluded). Goal: ratio <= 1.02. It prints numbers; it asserts nothing.

On a shared machine other processes add bursts of delay to single epochs, so the ratio is taken of
per-epoch minima over the repeats (an epoch's least disturbed run), and next to it the direct
account: the seconds the loop spent at sync points (controller calls, GP tests, broadcasts, reading
the losses), which the wall clock of the rest of the epoch does not disturb.

    .venv/bin/python bench/overhead.py [--epochs 6] [--batch 1024] [--test-interval epoch]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autowu_bench.platform.execution.ray_cluster import ray_session  # noqa: E402
from autowu_bench.platform.execution.grid_run import run_grid  # noqa: E402
from autowu_bench.platform.records.spec import TrialSpec  # noqa: E402
from autowu_bench.schedulers.autowu import AutoWUOptions  # noqa: E402


def epoch_rows(run_dir: str, trial_id: str) -> dict[int, dict]:
    rows = []
    for path in glob.glob(os.path.join(run_dir, "trials", trial_id, "fragments", "epochs-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return {r["epoch"]: r for r in rows if r.get("epoch_seconds") is not None and r["epoch"] >= 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="fmnist-mlp")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--test-interval", default="epoch", help='"epoch", "auto" or a number of steps')
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds")
    args = parser.parse_args()
    interval = int(args.test_interval) if args.test_interval.isdigit() else args.test_interval

    common = dict(
        suite="bench-overhead", workload=args.workload, batch_size=args.batch, epochs=args.epochs, seed=0,
        optimizer="adamp", weight_decay=1e-4, train_subset=args.train_subset, num_workers=args.workers,
        cpus_per_worker=1.0,
    )
    trials = []
    for r in range(args.repeats):
        autowu = TrialSpec(trial_id=f"autowu-{r}", arm="autowu", kind="autowu", decay="const-cos",
                           autowu=AutoWUOptions(test_interval=interval), **common)
        fixed = TrialSpec(trial_id=f"fixed-{r}", arm="baseline", kind="baseline", peak_lr=0.01,
                          warmup_epochs=1, **common)
        trials += [fixed, autowu, TrialSpec.from_dict({**autowu.to_dict(), "trial_id": f"autowu-{r}b"}),
                   TrialSpec.from_dict({**fixed.to_dict(), "trial_id": f"fixed-{r}b"})]
    run_dir = tempfile.mkdtemp(prefix="autowu-overhead-")
    with ray_session(None):
        summaries = run_grid(trials, run_dir=run_dir, tracking_uri=None, parent_run_id=None, max_concurrent=1)
    failed = [s.trial_id for s in summaries if s.status != "finished"]
    if failed:
        sys.exit(f"trials did not finish: {failed} (see {run_dir})")

    runs: dict[str, list[dict[int, dict]]] = {"autowu": [], "fixed": []}
    for s in summaries:
        rows = epoch_rows(run_dir, s.trial_id)
        runs[s.trial_id.split("-")[0]].append(rows)
        print(f"{s['trial_id']:>10}: {sum(r['epoch_seconds'] for r in rows.values()):7.2f} s training in epochs "
              f"2..{args.epochs}, {sum(r['sync_seconds'] for r in rows.values()):6.3f} s of it at sync points "
              f"(start-up {s['startup_seconds']:.1f} s; switch {s['switch_reason']} at step {s['switch_step']})")

    def least_disturbed(arm: str) -> float:
        return sum(min(run[e]["epoch_seconds"] for run in runs[arm]) for e in runs[arm][0])

    def sync(arm: str) -> float:
        return statistics.mean(sum(r["sync_seconds"] for r in run.values()) for run in runs[arm])

    autowu, fixed = least_disturbed("autowu"), least_disturbed("fixed")
    print(f"workload {args.workload}, batch {args.batch}, {args.workers} CPU workers, test_interval "
          f"{args.test_interval}, {summaries[0]['steps_per_epoch']} steps/epoch, {len(runs['fixed'])} runs per arm")
    print(f"AutoWU / fixed training time after the first epoch (per-epoch minima): {autowu:.2f} / {fixed:.2f} s "
          f"= {autowu / fixed:.3f} (goal <= 1.02)")
    extra = sync("autowu") - sync("fixed")
    print(f"direct account: AutoWU's sync points cost {extra:.3f} s more than the fixed schedule's = "
          f"{1 + extra / fixed:.3f} of the fixed trial's training time")

if __name__ == "__main__":
    main()
