"""TrialWorker without Ray (one process): resume from a checkpoint, rollback, the diverged ending."""

from __future__ import annotations

import math
import os
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from autowu_bench.platform.execution.controller import AutoWUController
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.execution.worker import TrialWorker, WorkerEnv, rank0_schedule
from tests.data_fixtures import write_fashion_mnist_idx

EPOCHS = 3


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist_idx(root, n_train=700, n_test=100, seed=0)
    return str(root)


def _spec(data_root: str, **kw) -> TrialSpec:
    values = dict(
        trial_id="w", suite="t", arm="autowu-const-cos", kind="autowu", workload="fmnist-mlp", batch_size=100,
        epochs=EPOCHS, seed=0, optimizer="adamp", weight_decay=1e-4, decay="const-cos",
        autowu={"test_interval": "auto"}, data_root=data_root, val_size=200,
    )
    values.update(kw)
    return TrialSpec(**values)


def _schedule(spec: TrialSpec):
    if spec.kind == "baseline":
        return rank0_schedule(spec, controller=None)
    return AutoWUController(spec.autowu, decay=spec.decay, seed=spec.seed)  # in-process, the actor's class


def _run(spec: TrialSpec, trial_dir: str, keep: str | None = None, resume: str | None = None):
    """Train; copy each epoch's checkpoint under ``keep``; returns (reports, worker)."""
    os.makedirs(trial_dir, exist_ok=True)
    reports = []

    def report(metrics, folder):
        reports.append(metrics)
        if folder is not None and keep is not None:
            shutil.copytree(folder, os.path.join(keep, f"epoch{metrics.epoch}"))

    env = WorkerEnv(0, 1, torch.device("cpu"), trial_dir, report, _schedule(spec), None, resume)
    worker = TrialWorker(spec, env)
    worker.run()
    return reports, worker


def _trace(trial_dir: str) -> list[tuple[int, float]]:
    table = pq.read_table(os.path.join(trial_dir, "lr_rank0.parquet")).to_pydict()
    return list(zip(table["step"], table["lr"]))


def test_resume_from_a_checkpoint_gives_the_same_trace_and_weights(data_root, tmp_path):
    spec = _spec(data_root)
    full_dir, ckpts = str(tmp_path / "full"), str(tmp_path / "ckpts")
    full_reports, full = _run(spec, full_dir, keep=ckpts)
    assert [r.epoch for r in full_reports] == [1, 2, 3]
    assert full_reports[-1].status == "finished"

    resumed_dir = str(tmp_path / "resumed")
    os.makedirs(resumed_dir)  # empty: the checkpoint alone must give the trace so far
    reports, resumed = _run(spec, resumed_dir, resume=os.path.join(ckpts, "epoch1"))
    assert [r.epoch for r in reports] == [2, 3]
    assert _trace(resumed_dir) == _trace(full_dir)
    assert len(_trace(full_dir)) == EPOCHS * len(full.train_loader)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert reports[-1].test_acc == full_reports[-1].test_acc
    assert reports[-1].switch_step == full_reports[-1].switch_step


def test_a_baseline_that_blows_up_ends_as_diverged(data_root, tmp_path):
    spec = _spec(data_root, kind="baseline", arm="baseline", optimizer="sgd", peak_lr=1e8, warmup_epochs=0.5,
                 decay=None, autowu={})
    reports, worker = _run(spec, str(tmp_path / "b"))
    last = reports[-1]
    assert last.status == "diverged"
    assert last.rollbacks == 0 and last.step < EPOCHS * len(worker.train_loader)
    # tested as it ended, on broken weights: no finite loss, and no better than always guessing one class
    labels = torch.cat([y for _, y in worker.test_loader])
    assert math.isnan(last.test_loss) and last.test_acc <= labels.bincount().max().item() / len(labels)


def test_autowu_divergence_rolls_back_past_the_snapshot_whose_weights_gave_the_bad_loss(data_root, tmp_path):
    """lr_max=1e6: the LR grows x50 per step; the update of step 5 (the last of epoch 1) breaks the
    weights, the loss of step 6 shows it, so the epoch-1 snapshot is bad and the initial one is used."""
    spec = _spec(data_root, optimizer="sgd", autowu={"lr_max": 1e6, "test_interval": "auto"})
    reports, worker = _run(spec, str(tmp_path / "a"))
    steps = len(worker.train_loader)
    assert [r.epoch for r in reports] == [1, 1, 2, 3]  # epoch 1 replayed after the rollback
    assert reports[0].val_loss > 100  # what the epoch-1 snapshot held: broken weights
    last = reports[-1]
    assert last.status == "finished" and last.rollbacks == 1 and last.switch_reason == "divergence"
    assert last.switch_step == steps + 1
    assert all(math.isfinite(r.val_loss) and r.val_loss < 3.0 for r in reports[1:])
    trace = _trace(str(tmp_path / "a"))
    assert [s for s, _ in trace] == list(range(1, EPOCHS * steps + 1))
    assert trace[0][1] == pytest.approx(last.decay_start_lr)  # replayed from step 1 under the decay


def test_a_loss_that_blows_up_stops_the_trial_within_a_few_steps_not_at_the_epoch_end(data_root, tmp_path):
    from autowu_bench.platform.records.trial_results import TrialResults
    from autowu_bench.platform.execution.worker import DIVERGENCE_CHECK_STEPS

    spec = _spec(data_root, kind="baseline", arm="baseline", optimizer="sgd", peak_lr=1e8, warmup_epochs=0.5,
                 decay=None, autowu={}, batch_size=20)  # 25 steps per epoch
    trial_dir = str(tmp_path / "b")
    os.makedirs(trial_dir)
    reports = []
    env = WorkerEnv(0, 1, torch.device("cpu"), trial_dir, lambda m, f: reports.append(m), _schedule(spec),
                    TrialResults(trial_dir), None)
    worker = TrialWorker(spec, env)
    worker.run()
    curves = [r for p in sorted((tmp_path / "b" / "fragments").glob("curves-*.parquet"))
              for r in pq.read_table(p).to_pylist()]
    first_bad = next(r["step"] for r in curves if not math.isfinite(r["train_loss"]))
    (last,) = reports
    assert last.status == "diverged" and len(worker.train_loader) == 25
    assert first_bad <= last.step < first_bad + DIVERGENCE_CHECK_STEPS < len(worker.train_loader)
    # Its final weights were evaluated on the validation split too: the trial counts in its point's mean.
    assert 0.0 <= last.val_acc <= 0.5
