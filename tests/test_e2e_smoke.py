"""The smoke suite end to end: run_suite.py -> Ray Tune -> Ray Train (2 workers per trial) -> MLflow + Parquet.

One real run (a few minutes on 2 cores) on the real Fashion-MNIST of Debian's dataset-fashion-mnist
(the suite's default data root; .ci/run and make run install it); the checks read what a user would
read afterwards: the printed table, the MLflow runs, the Parquet tables and the per-rank LR traces.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from autowu_bench.schedulers import AutoWUCore
from autowu_bench.workloads.data import fashion_mnist

REPO = Path(__file__).resolve().parents[1]
# The module fixture runs the whole suite inside the first test: past the default per-test timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Every smoke trial trains 6 epochs on 1024 real images; chance is 0.1 on the 10 classes. Measured on
# the 2-core VM: test accuracy 0.755-0.796 on the 10000 test images, best validation accuracy
# 0.766-0.813 on 256, over the six trials.
LEARNED_ACC = 0.6


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    if not Path(fashion_mnist.DEBIAN_DIR, "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real Fashion-MNIST is missing from {fashion_mnist.DEBIAN_DIR}: install Debian's package "
                    "dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist; make data does it as root)")
    work = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_suite.py"), "--suite", "smoke", "--results", str(work / "runs")],
        cwd=work, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, f"run_suite.py failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    (run_dir,) = (work / "runs" / "smoke").iterdir()
    return work, run_dir, proc.stdout, proc.stderr


def test_every_trial_ran_and_is_in_the_parquet_tables(smoke_run):
    _, run_dir, *_ = smoke_run
    specs = json.loads((run_dir / "trial_specs.json").read_text())
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert sorted(trials.trial_id) == sorted(s["trial_id"] for s in specs)
    assert set(trials.kind) == {"autowu", "baseline"} and set(trials.batch_size) == {32, 64}
    assert (trials.status == "finished").all(), trials[["trial_id", "status", "error"]]
    # training learns: every trial, AutoWU and baseline, ends far above chance (0.1)
    assert (trials.test_acc > LEARNED_ACC).all(), trials[["trial_id", "test_acc"]]
    assert (trials.best_val_acc > LEARNED_ACC).all(), trials[["trial_id", "best_val_acc"]]
    curves = pd.read_parquet(run_dir / "curves.parquet")
    for row in trials.itertuples():
        steps = curves[curves.trial_id == row.trial_id].step.tolist()
        assert steps == list(range(1, row.steps + 1)), row.trial_id
    assert curves.train_loss.notna().all() and (curves.lr >= 0).all()


def test_every_rank_applied_the_same_lr_at_every_step(smoke_run):
    _, run_dir, *_ = smoke_run
    for trial_dir in sorted((run_dir / "trials").iterdir()):
        rank0 = pd.read_parquet(trial_dir / "lr_rank0.parquet")
        rank1 = pd.read_parquet(trial_dir / "lr_rank1.parquet")
        assert len(rank0) > 0, trial_dir.name
        pd.testing.assert_frame_equal(rank0.reset_index(drop=True), rank1.reset_index(drop=True))


def test_autowu_switched_by_its_test_and_matches_the_standalone_scheduler(smoke_run):
    _, run_dir, *_ = smoke_run
    trials = pd.read_parquet(run_dir / "trials.parquet")
    curves = pd.read_parquet(run_dir / "curves.parquet")
    tests = pd.read_parquet(run_dir / "tests.parquet")
    autowu = trials[trials.kind == "autowu"]
    assert len(autowu) == 2
    for row in autowu.itertuples():
        assert row.switch_reason == "test", (row.trial_id, row.switch_reason)
        own = tests[tests.trial_id == row.trial_id]
        assert own.decision.iloc[-1] == "switch" and own.step.iloc[-1] == row.switch_step
        assert own.start_lr.iloc[-1] == pytest.approx(row.decay_start_lr) and len(own.x_star.iloc[-1]) == 5
        # The controller's trace equals AutoWU run standalone on the same (all-reduced) losses.
        curve = curves[curves.trial_id == row.trial_id].sort_values("step")
        core = AutoWUCore(row.steps_per_epoch, row.epochs, decay=row.decay, test_interval="auto", seed=row.seed)
        expected = []
        for loss in curve.train_loss:
            expected.append(core.lr())
            core.observe([loss])
        assert curve.lr.tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert core.switch_step == row.switch_step
        assert core.decay_start_lr == pytest.approx(row.decay_start_lr, rel=1e-9)


def test_mlflow_has_one_parent_and_a_child_run_per_trial_with_step_metrics(smoke_run):
    work, run_dir, *_ = smoke_run
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.tags.get("git_commit")
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("trial_id")
    assert sorted(r.info.run_name for r in children) == sorted(trials.index)
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        row = trials.loc[run.info.run_name]
        assert run.data.tags["arm"] == row.arm and run.data.tags["batch_size"] == str(row.batch_size)
        assert {"workload", "seed", "optimizer"} <= set(run.data.tags)
        for metric in ("lr", "train_loss"):
            history = client.get_metric_history(run.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, row.steps + 1)), (run.info.run_name, metric)
        assert {"val_acc", "val_loss", "epoch_seconds", "images_per_second", "test_acc"} <= set(run.data.metrics)


def test_the_printed_table_compares_autowu_with_the_best_and_default_baseline(smoke_run):
    _, run_dir, stdout, _ = smoke_run
    table = (run_dir / "table.txt").read_text()
    assert table.strip() in stdout
    for label in ("autowu-auto", "baseline best", "baseline default"):
        assert label in table
    lines = [line for line in table.splitlines() if "autowu-auto" in line]
    assert len(lines) == 2 and any(" 32 " in line for line in lines) and any(" 64 " in line for line in lines)


def test_the_console_holds_the_suites_lines_and_rays_output_is_in_the_run_folder(smoke_run):
    """No Ray internals between the progress lines (a Train controller's traceback, the raylet's warnings,
    a worker's SystemExit at shutdown): they are in RUN_DIR/logs/ray.log."""
    _, run_dir, stdout, stderr = smoke_run
    console = stdout + stderr
    assert "running 6 trials" in stdout and "[autowu-auto_fmnist-mlp_b32_s0] finished" in stdout
    assert "Traceback" not in console and "(raylet)" not in console
    assert not [line for line in console.splitlines() if re.search(r"\((\S+ )?pid=\d+", line)], console[-4000:]
    assert (run_dir / "logs" / "ray.log").is_file()
