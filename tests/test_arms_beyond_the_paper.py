"""The arms beyond the paper (LARS, CLARS, Prodigy, Schedule-Free AdamW) through the platform's worker loop
without Ray: a short real training on Fashion-MNIST learns, the checkpoint round trip resumes exactly
(the optimizers' own state included, loadable with weights_only=True), and Schedule-Free is evaluated
and saved at its averaged weights."""

from __future__ import annotations

import io
import os

import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.records.trial_folder import CHECKPOINT_FILE
from autowu_bench.workloads import build_optimizer
from autowu_bench.workloads.data import fashion_mnist
from autowu_bench.workloads.optimizers import (
    OPTIMIZER_INFO,
    evaluation_weights,
    optimizer_note,
)
from tests.data_fixtures import write_fashion_mnist_idx
from tests.test_worker import _run  # one harness for a single-process TrialWorker run

# (optimizer, peak LR, warmup epochs, decay): each as its suites run it (suites/batch-limit.yaml)
ARMS = {
    "lars": (16.0, 1.0, "polynomial"),
    "clars": (0.1, 0.0, "polynomial"),
    "clars-chunked": (0.04, 0.0, "polynomial"),
    "prodigy": (1.0, 0.0, "cosine"),
    "schedulefree-adamw": (0.0025, 0.5, "constant"),
}
REAL_DATA = not fashion_mnist.check(None)


def _spec(optimizer: str, **kw) -> TrialSpec:
    peak, warmup, decay = ARMS[optimizer]
    values = {
        "trial_id": f"{optimizer}-t", "suite": "t", "arm": optimizer, "kind": "baseline", "workload": "fmnist-mlp",
        "batch_size": 128, "epochs": 3, "seed": 0, "optimizer": optimizer, "weight_decay": 5e-4, "peak_lr": peak,
        "warmup_epochs": warmup, "decay": decay, "decay_power": 2.0 if decay == "polynomial" else None,
        "micro_batch": 32, "val_size": 500,
    }
    values.update(kw)
    return TrialSpec(**values)


@pytest.mark.skipif(not REAL_DATA, reason="needs Debian's dataset-fashion-mnist (make test installs it)")
@pytest.mark.parametrize("optimizer", list(ARMS))
def test_a_short_real_training_learns(optimizer, tmp_path):
    """Real Fashion-MNIST, 3 epochs of 16 steps: well above chance (10 %) on the real test set."""
    # the exact per-example statistic writes a gradient per example: half the images, in smaller batches
    size = {"train_subset": 512, "batch_size": 32} if optimizer == "clars" else {"train_subset": 1024, "batch_size": 64}
    spec = _spec(optimizer, data_root=None, epochs=3, **size)
    reports, _ = _run(spec, str(tmp_path / "t"))
    last = reports[-1]
    assert last.status == "finished"
    assert last.test_acc > 0.5, last  # 0.65 to 0.78 when written


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist_idx(root, n_train=900, n_test=100, seed=0)
    return str(root)


def _trace(trial_dir: str) -> list[tuple[int, float]]:
    table = pq.read_table(os.path.join(trial_dir, "lr_rank0.parquet")).to_pydict()
    return list(zip(table["step"], table["lr"]))


@pytest.mark.parametrize("optimizer", list(ARMS))
def test_resume_from_a_checkpoint_is_exact_with_the_optimizers_state(optimizer, data_root, tmp_path):
    spec = _spec(optimizer, data_root=data_root, val_size=200)
    full_reports, full = _run(spec, str(tmp_path / "full"), keep=str(tmp_path / "ckpts"))
    checkpoint = os.path.join(tmp_path, "ckpts", "epoch1")
    state = torch.load(os.path.join(checkpoint, CHECKPOINT_FILE), map_location="cpu", weights_only=False)
    assert state["optimizer"]["state"], "the optimizer's own state is in the checkpoint"
    buffer = io.BytesIO()
    torch.save({"model": state["model"], "optimizer": state["optimizer"]}, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)  # plain tensors and containers only

    reports, resumed = _run(spec, str(tmp_path / "resumed"), resume=checkpoint)
    assert [r.epoch for r in reports] == [2, 3]
    assert _trace(str(tmp_path / "resumed")) == _trace(str(tmp_path / "full"))
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for key in ("val_loss", "val_acc", "test_loss", "test_acc"):
        assert getattr(reports[-1], key) == getattr(full_reports[-1], key)
    for a, b in zip(full.optimizer.state.values(), resumed.optimizer.state.values()):
        assert a.keys() == b.keys()
        for k in a:
            if torch.is_tensor(a[k]):
                torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
            else:
                assert a[k] == b[k]
    for a, b in zip(full.optimizer.param_groups, resumed.optimizer.param_groups):  # Prodigy's d, k; SF's k
        assert {k: v for k, v in a.items() if k != "params"} == {k: v for k, v in b.items() if k != "params"}


def test_schedule_free_is_evaluated_and_saved_at_its_averaged_weights(data_root, tmp_path):
    spec = _spec("schedulefree-adamw", data_root=data_root, val_size=200, epochs=1)
    reports, worker = _run(spec, str(tmp_path / "sf"), keep=str(tmp_path / "ckpt"))
    opt, model = worker.optimizer, worker.model
    y_weights = [p.detach().clone() for p in model.parameters()]
    with evaluation_weights(opt):
        x_weights = [p.detach().clone() for p in model.parameters()]
        assert not opt.param_groups[0]["train_mode"]
    assert opt.param_groups[0]["train_mode"]  # back to training after the block
    assert any(not torch.equal(a, b) for a, b in zip(x_weights, y_weights))
    for a, b in zip(model.parameters(), y_weights):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # the switch back: the training weights (rounding)
    saved = torch.load(os.path.join(tmp_path, "ckpt", "epoch1", CHECKPOINT_FILE), weights_only=False)
    for (name, _), x in zip(model.named_parameters(), x_weights):
        torch.testing.assert_close(saved["model"][name], x, rtol=0, atol=1e-7)
    assert not saved["optimizer"]["param_groups"][0]["train_mode"]  # saved in eval mode, as its authors require
    # the reported accuracy is that of the averaged weights
    from autowu_bench.platform.execution.train_step import evaluate

    with evaluation_weights(opt):
        _, acc = evaluate(model, worker.val_loader, worker.loss_fn)
    assert reports[-1].val_acc == acc


def test_prodigy_follows_its_authors_advice_on_warmup():
    model = nn.Linear(3, 2)
    with_warmup = build_optimizer("prodigy", model, lr=1.0, weight_decay=1e-2, schedule_warms_up=True)
    without = build_optimizer("prodigy", model, lr=1.0, weight_decay=1e-2)
    assert with_warmup.param_groups[0]["safeguard_warmup"] and not without.param_groups[0]["safeguard_warmup"]
    assert not without.param_groups[0]["use_bias_correction"] and without.param_groups[0]["decouple"]


def test_clars_is_labelled_a_reconstruction_and_the_others_are_not():
    assert optimizer_note("clars") == optimizer_note("clars-chunked") == "reconstruction"
    assert "reconstruction" in OPTIMIZER_INFO["clars"].label
    assert all(optimizer_note(n) is None for n in ("adamp", "lamb", "sgd", "lars", "prodigy", "schedulefree-adamw"))
