"""Before a suite starts: its data problems, steps per epoch as the worker will see them, AutoWU's warnings."""

from __future__ import annotations

import torch

from autowu_bench.platform.suite.expansion import expand
from autowu_bench.platform.checks.data import data_problems
from autowu_bench.platform.checks.autowu_density import planned_steps_per_epoch, schedule_warnings
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.suite.loader import load_suite, validate_suite
from autowu_bench.workloads import get_workload
from autowu_bench.workloads.data.splits import TensorSplit


def _spec(**changes) -> TrialSpec:
    values = dict(
        trial_id="t", suite="s", arm="autowu-auto", kind="autowu", workload="fmnist-mlp", batch_size=64,
        epochs=10, seed=0, optimizer="adamp", weight_decay=0.0, decay="const-cos", autowu={"test_interval": "auto"},
    )
    return TrialSpec(**{**values, **changes})


def test_planned_steps_equal_the_training_loaders_length():
    wl = get_workload("fmnist-mlp")
    for subset, batch, workers in [(1000, 64, 2), (999, 96, 3), (5000, 4096, 1)]:
        spec = _spec(train_subset=subset, batch_size=batch, num_workers=workers)
        split = TensorSplit(torch.zeros(subset, 1, 28, 28, dtype=torch.uint8), torch.zeros(subset, dtype=torch.long))
        loader = wl.loader(split, batch_size=batch // workers, rank=workers - 1, world_size=workers, train=True)
        assert planned_steps_per_epoch(spec) == len(loader)
    assert planned_steps_per_epoch(_spec(batch_size=4096)) == (60_000 - 5000) // 4096  # the whole data set


def test_warnings_name_the_trials_whose_warmup_is_too_short_for_the_test():
    trials = [
        _spec(arm="autowu-auto", batch_size=256),  # 214 steps per epoch: W = 1070, a test every 11 steps
        _spec(arm="autowu-auto", batch_size=16384, seed=1),  # 3 steps per epoch: W = 15
        _spec(arm="autowu-auto", batch_size=16384, seed=2),  # the same schedule: reported once
        _spec(arm="autowu-epoch", batch_size=8192, autowu={"test_interval": "epoch"}),
        _spec(arm="baseline", kind="baseline", batch_size=16384, decay=None, autowu={}, peak_lr=0.1, warmup_epochs=1.0),
    ]
    found = schedule_warnings(trials)
    assert len(found) == 2
    short, coarse = found
    assert short.startswith("autowu-auto on fmnist-mlp at batch 16384:") and "only 15 steps" in short
    assert coarse.startswith("autowu-epoch on fmnist-mlp at batch 8192:") and "test_interval='auto'" in coarse


def test_packaged_gpu_quick_warns_that_its_16k_trials_are_too_short_for_autowu():
    found = schedule_warnings(expand(load_suite("gpu-quick")))
    auto = [w for w in found if w.startswith("autowu-auto ")]
    assert len(auto) == 1 and "at batch 16384:" in auto[0] and "only 5 steps" in auto[0]  # fine up to 4096


def test_data_problems_come_after_validation_once_per_data_set(tmp_path):
    raw = {"name": "t", "workloads": ["fmnist-mlp", "fmnist-cnn", "cifar10-resnet18"], "batch_sizes": [64],
           "data": {"root": str(tmp_path / "nothing")}, "arms": [{"name": "a", "kind": "autowu"}]}
    suite = validate_suite(raw)  # missing data is no schema problem
    found = data_problems(suite)
    assert len(found) == 2, found  # the two Fashion-MNIST workloads share one data set
    assert all(p.startswith("data.root: ") and str(tmp_path / "nothing") in p for p in found)
    assert "CIFAR10" in found[1] and "run_suite.py --download" in found[1]
