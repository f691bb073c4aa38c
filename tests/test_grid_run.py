"""Two tiny trials through Ray Tune + Ray Train (2 gloo CPU workers each): summaries, checkpoints, LR
traces on every rank, and a forced divergence that rolls back.

The divergence is forced the way a user could cause it: the AutoWU trial's ``lr_max`` is 1e6, so the
exponential warmup reaches absurd LRs within a few steps and the SGD weights blow up.
"""

from __future__ import annotations

import errno
import glob
import json
import math
import os
import time

import pyarrow.parquet as pq
import pytest
import torch

from autowu_bench.platform.execution.train_step import evaluate
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder
from autowu_bench.platform.tracking.operations import CreateRun, SetStatus
from autowu_bench.schedulers import fixed_plan
from autowu_bench.workloads import get_workload
from tests.data_fixtures import write_fashion_mnist_idx

EPOCHS = 3
BATCH = 200
N_TRAIN, VAL = 1200, 200  # 1000 training images -> 5 steps per epoch at batch 200


def _spec(data_root: str, **kw) -> TrialSpec:
    base = dict(
        suite="runner-test", workload="fmnist-mlp", batch_size=BATCH, epochs=EPOCHS, seed=0, optimizer="sgd",
        weight_decay=0.0, data_root=data_root, val_size=VAL, num_workers=2, cpus_per_worker=0.5,
    )
    base.update(kw)
    return TrialSpec(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from autowu_bench.platform.execution.ray_cluster import cluster_problems, ray_session
    from autowu_bench.platform.execution.grid_run import run_grid

    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_idx(root, n_train=N_TRAIN, n_test=100, seed=0)
    run_dir = str(tmp_path_factory.mktemp("run"))
    trials = [
        _spec(str(root), trial_id="autowu-diverges", arm="autowu-cos", kind="autowu", decay="cosine",
              autowu={"lr_max": 1e6}),
        _spec(str(root), trial_id="baseline", arm="baseline", kind="baseline", peak_lr=0.05, warmup_epochs=1),
    ]
    unfit = [
        _spec(str(root), trial_id="gpu", arm="b", kind="baseline", peak_lr=0.1, warmup_epochs=1, use_gpu=True),
        _spec(str(root), trial_id="wide", arm="b", kind="baseline", peak_lr=0.1, warmup_epochs=1, num_workers=4,
              cpus_per_worker=1.0),
    ]
    with ray_session(None, num_cpus=2, object_store_memory=200 * 1024**2):
        problems = cluster_problems(trials + unfit)
        growing = cluster_problems(trials + unfit, can_grow=True)
        # A baseline whose loss blows up: its diverged end must reach the summary (the last report).
        blows_up = _spec(str(root), trial_id="baseline-blows-up", arm="baseline", kind="baseline", peak_lr=1e8,
                         warmup_epochs=0.5)
        summaries = run_grid(trials + [blows_up], run_dir=run_dir, tracking_uri=None, parent_run_id=None)
    return run_dir, trials, {s.trial_id: s.to_dict() for s in summaries}, (problems, growing)


def test_cluster_problems_name_the_trial_and_the_fix(run):
    problems, growing = run[3]
    assert len(problems) == 2
    assert "trial gpu" in problems[0] and "no GPUs" in problems[0] and "use_gpu" in problems[0]
    assert "trial wide" in problems[1] and "needs 4 CPUs" in problems[1] and "cluster has 2" in problems[1]
    # An autoscaling cluster may add CPUs while trials wait, but a GPU-less one is still refused.
    assert len(growing) == 1 and "trial gpu" in growing[0]


def _trace(run_dir: str, trial_id: str, rank: int) -> dict[str, list]:
    return pq.read_table(os.path.join(run_dir, "trials", trial_id, f"lr_rank{rank}.parquet")).to_pydict()


def _checkpoints(run_dir: str, trial_id: str) -> list[str]:
    """The trial's checkpoint folders, oldest first."""
    pattern = os.path.join(run_dir, "ray", "train", trial_id, "checkpoint_*")
    return sorted((p for p in glob.glob(pattern) if os.path.isdir(p)), key=os.path.getmtime)


def _evaluate_last_checkpoint(run_dir: str, spec: TrialSpec) -> tuple[tuple[float, float], tuple[float, float]]:
    """(loss, accuracy) on the validation and the test split of the weights in the newest checkpoint, in
    this process, with the trial's own split."""
    state = torch.load(os.path.join(_checkpoints(run_dir, spec.trial_id)[-1], "state.pt"), weights_only=True)
    wl = get_workload(spec.workload)
    model = wl.build_model()
    model.load_state_dict(state["model"])
    splits = wl.load(spec.data_root, val_size=spec.val_size, train_subset=spec.train_subset, seed=spec.seed)
    return tuple(evaluate(model, wl.loader(split, batch_size=1024, train=False), wl.loss_fn())
                 for split in (splits.val, splits.test))


def test_both_trials_finish_with_summaries(run):
    run_dir, trials, summaries, _ = run
    steps = EPOCHS * (N_TRAIN - VAL) // BATCH
    for spec in trials:
        s = summaries[spec.trial_id]
        assert s["status"] == "finished", s
        assert s["steps"] == steps and s["epochs_done"] == EPOCHS
        # The reported accuracies and losses are those of the trial's final weights (its last checkpoint)
        # on the whole validation and test splits, though each rank evaluated only its share of them.
        val, test = _evaluate_last_checkpoint(run_dir, spec)
        assert (s["final_val_acc"], s["test_acc"]) == (val[1], test[1])
        assert (s["final_val_loss"], s["test_loss"]) == pytest.approx((val[0], test[0]), rel=1e-6)
        assert s["wall_seconds"] > 0 and s["device_hours"] == pytest.approx(s["wall_seconds"] * 1.0 / 3600)
        with open(os.path.join(run_dir, "trials", spec.trial_id, "summary.json")) as f:
            assert json.load(f)["trial_id"] == spec.trial_id


def test_every_rank_applied_the_same_lr_at_every_step(run):
    run_dir, trials, _, _ = run
    steps = EPOCHS * (N_TRAIN - VAL) // BATCH
    for spec in trials:
        rank0, rank1 = _trace(run_dir, spec.trial_id, 0), _trace(run_dir, spec.trial_id, 1)
        assert rank0 == rank1
        assert rank0["step"] == list(range(1, steps + 1))
    plan = fixed_plan(steps // EPOCHS, EPOCHS, peak_lr=0.05, warmup_epochs=1)
    assert _trace(run_dir, "baseline", 0)["lr"] == pytest.approx([plan.lr(t) for t in range(steps)])


def test_divergence_rolls_back_and_continues_under_the_decay(run):
    run_dir, _, summaries, _ = run
    s = summaries["autowu-diverges"]
    assert s["switch_reason"] == "divergence" and s["rollbacks"] == 1
    assert math.isfinite(s["final_val_loss"])  # the restored weights trained on, they are not NaN
    events = [pq.read_table(p).to_pylist() for p in glob.glob(os.path.join(
        run_dir, "trials", "autowu-diverges", "fragments", "events-*.parquet"))]
    rollbacks = [e for rows in events for e in rows if e["name"] == "rollback"]
    assert len(rollbacks) == 1
    info = json.loads(rollbacks[0]["info"])
    assert info["restored_step"] < rollbacks[0]["step"] == s["switch_step"]
    # After the restored step the LR is the decay from the chosen start, never above it.
    trace = _trace(run_dir, "autowu-diverges", 0)
    after = [lr for step, lr in zip(trace["step"], trace["lr"]) if step > info["restored_step"]]
    assert after[0] == pytest.approx(s["decay_start_lr"]) and max(after) <= s["decay_start_lr"]
    assert after[-1] < s["decay_start_lr"]


def test_each_epoch_left_a_checkpoint_with_the_full_state(run):
    run_dir, _, summaries, _ = run
    pattern = os.path.join(run_dir, "ray", "train", "autowu-diverges", "checkpoint_*")
    folders = sorted((p for p in glob.glob(pattern) if os.path.isdir(p)), key=os.path.getmtime)
    assert len(folders) == 2, folders  # the last two epochs (CheckpointConfig num_to_keep=2)
    state = torch.load(os.path.join(folders[-1], "state.pt"), weights_only=True)
    assert {"model", "optimizer", "rng", "progress", "schedule", "plan", "trace", "spec"} <= set(state)
    assert len(state["rng"]) == 2  # one RNG state per rank
    assert state["progress"]["step"] == summaries["autowu-diverges"]["steps"]
    # Self-contained: the LR trace so far is in the checkpoint, equal to what rank 0 applied.
    assert [lr for _, lr in state["trace"]] == _trace(run_dir, "autowu-diverges", 0)["lr"]
    assert state["schedule"]["core"]["switch_reason"] == "divergence"


@pytest.mark.parametrize("interrupted", [False, True], ids=["error", "suite interrupted"])
def test_a_trial_that_fails_before_training_leaves_a_failed_summary_with_the_error(tmp_path, monkeypatch,
                                                                                   interrupted):
    """A trial that fails before training (here: its Tune callback cannot be built) is recorded as failed with
    its error, not left "missing" with the error only in Ray's log. MLflow being away (nothing listens
    at the URI) neither fails it nor holds it up: its run's creation and end wait in the trial's spool.
    When a signal stopped the suite first (Ray going down under the trial), its run ends KILLED, not
    FAILED, and its summary says it was interrupted."""
    import ray.tune.integration.ray_train

    from autowu_bench.platform.execution import trial_driver
    from autowu_bench.platform.records.run_manifest import mark_interrupted
    from autowu_bench.platform.tracking.env import MLFLOW_ENV
    from autowu_bench.platform.tracking.server import free_port
    from autowu_bench.platform.tracking.spool import Spool

    for key, value in MLFLOW_ENV.items():  # the client's few quick retries, as a trial driver has them
        monkeypatch.setenv(key, value)

    def no_trainer(*args, **kwargs):
        if interrupted:  # the signal came while the trial ran
            mark_interrupted(tmp_path, "SIGINT")
        raise RuntimeError("no worker group can start here")

    monkeypatch.setattr(ray.tune.integration.ray_train, "TuneReportCallback", no_trainer)
    spec = _spec(str(tmp_path), trial_id="t", arm="baseline", kind="baseline", peak_lr=0.1, warmup_epochs=1)
    with pytest.raises(RuntimeError, match="no worker group"):
        trial_driver.run_trial({"spec": spec.to_dict()}, run_dir=str(tmp_path),
                               tracking_uri=f"http://127.0.0.1:{free_port()}", parent_run_id="p")
    folder = TrialFolder.of(tmp_path, "t").path
    with open(TrialFolder(folder).summary_path) as f:
        summary = json.load(f)
    assert summary["status"] == "failed" and "no worker group" in summary["error"]
    assert summary["interrupted"] == interrupted
    assert summary["error"].startswith("SIGINT stopped the suite") == interrupted
    assert summary["mlflow_run_id"] is None
    ops = [op for _, op in Spool.of(folder).pending()]
    assert isinstance(ops[0], CreateRun) and ops[-1] == SetStatus("KILLED" if interrupted else "FAILED")


def test_a_baseline_that_blows_up_ends_as_diverged_in_its_summary(run):
    s = run[2]["baseline-blows-up"]
    assert s["status"] == "diverged", s
    assert s["steps"] < EPOCHS * (N_TRAIN - VAL) // BATCH and s["error"] is None
    # Evaluated as it ended, like a finished trial: it counts in its grid point's mean at what it gives.
    assert s["final_val_acc"] is not None and s["final_val_acc"] <= 0.5 and s["test_acc"] is not None


class _FullDiskTrainer:
    """Stands in for Ray Train's TorchTrainer: its fit fails as a trial does when a checkpoint meets a full disk."""

    def __init__(self, *args, **kwargs):
        pass

    def fit(self):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/ray/train/t/checkpoint_000003/state.pt")


@pytest.fixture
def full_disk(monkeypatch):
    """Ray Train stood in for by :class:`_FullDiskTrainer` (outside a Tune session: no report callback)."""
    import ray.train
    import ray.train.torch
    import ray.tune.integration.ray_train

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", _FullDiskTrainer)
    monkeypatch.setattr(ray.tune.integration.ray_train, "TuneReportCallback", ray.train.UserCallback)


def _baseline(tmp_path) -> TrialSpec:
    return _spec(str(tmp_path), trial_id="t", arm="baseline", kind="baseline", peak_lr=0.1, warmup_epochs=1)


def test_a_disk_that_fills_mid_run_leaves_the_real_error_in_the_summary(tmp_path, full_disk):
    from autowu_bench.platform.execution import trial_driver

    with pytest.raises(OSError, match="No space left on device"):
        trial_driver.run_trial({"spec": _baseline(tmp_path).to_dict()}, run_dir=str(tmp_path), tracking_uri=None,
                               parent_run_id=None)
    with open(TrialFolder.of(tmp_path, "t").summary_path) as f:
        summary = json.load(f)
    assert summary["status"] == "failed"
    assert summary["error"] == ("OSError: [Errno 28] No space left on device: "
                                "'/runs/ray/train/t/checkpoint_000003/state.pt'")


def test_when_the_summary_cannot_be_written_the_trial_raises_its_own_error(tmp_path, full_disk, monkeypatch, capsys):
    """The disk is too full for summary.json too: the driver raises the trial's error (what Tune records),
    not the error of writing the summary."""
    from autowu_bench.platform.execution import trial_driver

    def full(self, outcome, by):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.summary_path))

    monkeypatch.setattr(TrialFolder, "end", full)
    with pytest.raises(OSError) as info:
        trial_driver.run_trial({"spec": _baseline(tmp_path).to_dict()}, run_dir=str(tmp_path), tracking_uri=None,
                               parent_run_id=None)
    assert "checkpoint_000003" in str(info.value)
    err = capsys.readouterr().err
    assert "trial t: its summary was not written" in err and "summary.json" in err and "checkpoint_000003" in err


def test_a_trial_without_a_summary_takes_the_error_tune_recorded(tmp_path):
    """The runner's fallback: the summary first, else the error Tune recorded (Ray's wrapper of the trial's
    own error), written as the summary; only a trial with neither 'never started'."""
    from autowu_bench.platform.records.outcome import TrialOutcome, TrialStatus
    from autowu_bench.platform.execution.grid_run import collect_outcomes, error_text

    class RayTaskError(Exception):  # the shape of ray.exceptions.RayTaskError: the trial's error as .cause
        def __init__(self, cause):
            super().__init__(f"ray::ImplicitFunc.train()\nTraceback ...\n{cause!r}")
            self.cause = cause

    finished, full, lost = (_spec(str(tmp_path), trial_id=i, arm="b", kind="baseline", peak_lr=0.1, warmup_epochs=1)
                            for i in ("finished", "full", "lost"))
    TrialFolder.of(tmp_path, "finished").end(
        TrialOutcome(trial_id="finished", arm="b", kind="baseline", status=TrialStatus.FINISHED, test_acc=0.8),
        EndedBy.DRIVER)
    recorded = {"full": RayTaskError(OSError(errno.ENOSPC, "No space left on device")),
                "finished": RuntimeError("not this one: it has its summary")}
    outcomes = collect_outcomes([finished, full, lost], str(tmp_path), recorded)
    assert [o.status for o in outcomes] == [TrialStatus.FINISHED, TrialStatus.FAILED, TrialStatus.FAILED]
    assert outcomes[0].test_acc == 0.8
    assert outcomes[1].error == "OSError: [Errno 28] No space left on device"
    assert TrialFolder.of(tmp_path, "full").summary().error == outcomes[1].error
    assert outcomes[2].error == "the trial never started"
    assert error_text(ValueError("plain")) == "ValueError: plain"


def test_only_an_interruption_after_the_trial_started_counts(tmp_path):
    from autowu_bench.platform.records.run_manifest import interrupted_since, mark_interrupted

    assert interrupted_since(tmp_path, 0.0) is None  # never interrupted
    before = time.time()
    mark_interrupted(tmp_path, "SIGTERM")
    assert interrupted_since(tmp_path, before) == "SIGTERM"
    # A resumed run's trial starts after the mark its earlier run left: that run's interruption is not its.
    assert interrupted_since(tmp_path, time.time() + 1.0) is None
