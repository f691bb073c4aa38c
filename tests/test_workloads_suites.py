"""The paper suites, gpu-quick and the batch-limit suites validate against the platform's schema and expand
into trials."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from autowu_bench.platform.suite.expansion import expand
from autowu_bench.platform.checks.data import data_problems
from autowu_bench.platform.suite.loader import load_suite
from data_fixtures import write_cifar10, write_cifar100, write_fashion_mnist_idx, write_imagenet_folders

SUITES = ["paper-cifar10", "paper-cifar100", "paper-imagenet", "paper-imagenet-models", "paper-ablations", "gpu-quick",
          "batch-limit-cifar10"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("suite-data")
    write_fashion_mnist_idx(root / "FashionMNIST" / "raw", n_train=100, n_test=20)
    write_cifar10(root, n_train=50, n_test=10)
    write_cifar100(root, n_train=50, n_test=10)
    write_imagenet_folders(root, num_classes=2, per_class_train=2, per_class_val=1, size=16)
    return root


@pytest.mark.parametrize("name", SUITES)
def test_suite_validates_and_expands(name, root):
    suite = load_suite(name, sets=[f"data.root={root}", "data.val_size=4"])
    trials = expand(suite)
    assert trials and len({t.trial_id for t in trials}) == len(trials)
    arms = Counter(t.arm for t in trials)
    assert set(arms) == {a.name for a in suite.arms}


def test_paper_suites_use_the_papers_batch_sizes_and_epochs(root):
    sets = [f"data.root={root}", "data.val_size=4"]
    cifar = expand(load_suite("paper-cifar10", sets=sets))
    assert sorted({t.batch_size for t in cifar}) == [256, 1024, 8192, 16384]
    assert {t.epochs for t in cifar} == {200} and {t.seed for t in cifar} == {0, 1, 2}
    assert {t.optimizer for t in cifar} == {"adamp", "lamb"}
    defaults = [t for t in cifar if t.is_default]
    assert {(t.warmup_epochs, t.optimizer) for t in defaults} == {(5.0, "adamp")}
    models = expand(load_suite("paper-imagenet-models", sets=sets))
    assert {(t.workload, t.epochs) for t in models} == {("imagenet-efficientnet-b0", 120), ("imagenet-vit-s16", 300)}
    ablations = expand(load_suite("paper-ablations", sets=sets))
    rhos = {t.autowu.max_warmup_fraction for t in ablations if t.autowu.warmup != "linear"}
    assert rhos == {0.125, 0.25, 0.5}


def test_paper_suite_without_data_names_the_path_and_the_fix(tmp_path):
    found = "\n".join(data_problems(load_suite("paper-cifar100", sets=[f"data.root={tmp_path}"])))
    assert str(tmp_path / "cifar-100-python") in found and "cifar-100-python.tar.gz" in found
    assert "run_suite.py --download" in found


@pytest.mark.parametrize("name", ["batch-limit", "batch-limit-cifar10"])
def test_batch_limit_doubles_the_batch_to_the_whole_training_set_for_every_arm(name, root):
    """From 256 to the training set in doublings, every arm at every size, the same epochs (so the steps
    halve); CLARS without warmup and labelled a reconstruction, its comparison LARS with a warmup; Prodigy
    at LR 1 without warmup; Schedule-Free with a constant LR."""
    from autowu_bench.workloads.optimizers import optimizer_note

    suite = load_suite(name, sets=[f"data.root={root}"])
    sizes = suite.batch_sizes
    assert sizes[0] == 256 and all(b == 2 * a for a, b in pairwise(sizes))
    assert sizes[-1] == suite.data.train_subset  # the whole training set: one step per epoch
    trials = expand(suite)
    cells = Counter((t.arm, t.batch_size) for t in trials)
    assert set(cells) == {(a.name, b) for a in suite.arms for b in sizes} and set(cells.values()) == {1}
    assert len({t.epochs for t in trials}) == 1
    by_arm = {t.arm: t for t in trials if t.batch_size == 256}
    assert {t.optimizer for t in by_arm.values()} >= {"adamp", "lamb", "lars", "clars-chunked", "prodigy",
                                                      "schedulefree-adamw"}
    clars = by_arm["clars"]
    assert clars.warmup_epochs == 0 and clars.decay == "polynomial" and optimizer_note(clars.optimizer) == "reconstruction"
    assert by_arm["warmup-lars"].warmup_epochs > 0 and by_arm["warmup-lars"].decay == "polynomial"
    assert (by_arm["prodigy"].peak_lr, by_arm["prodigy"].warmup_epochs) == (1.0, 0)
    assert by_arm["schedulefree"].decay == "constant" and by_arm["schedulefree"].warmup_epochs > 0
    big = [t for t in trials if t.arm == "clars" and t.batch_size == 2 * 256]
    assert big[0].peak_lr == pytest.approx(2 * clars.peak_lr)  # CLARS.md: linear scaling from batch 256
