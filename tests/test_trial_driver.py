"""The trial driver's record of how a trial ended (its summary.json), for each way a fit can end, without
Ray: the fit itself is replaced by what Ray Train's would return or raise. The real fits are the
end-to-end tests' (test_e2e_smoke, test_e2e_search, test_restarts)."""

import math

import pytest
import torch

from autowu_bench.platform.execution.trial_driver import TrialDriver
from autowu_bench.platform.execution.training_state import LoopPosition, TrainingState
from autowu_bench.platform.records.outcome import EpochReport, TrialStatus
from autowu_bench.platform.records.run_manifest import mark_interrupted
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.records.trial_folder import TrialFolder
from autowu_bench.schedulers.lr_plan import FixedPlan

SPEC = TrialSpec(trial_id="base_s0", suite="t", arm="baseline", kind="baseline", workload="fmnist-mlp",
                 batch_size=64, epochs=3, seed=0, optimizer="sgd", weight_decay=0.0, peak_lr=0.1,
                 warmup_epochs=1.0)


def _drive(tmp_path, monkeypatch, fit):
    """Run a TrialDriver whose fit is ``fit()``; the trial's summary afterwards."""
    monkeypatch.setattr(TrialDriver, "_fit", lambda self, controller: fit())
    TrialDriver(SPEC, str(tmp_path), tracking_uri=None, parent_run_id=None).run()
    return _summary(tmp_path)


def _summary(tmp_path):
    return TrialFolder.of(tmp_path, SPEC.trial_id).summary()


def _report(status, epoch, **more):
    return EpochReport(epoch=epoch, step=10 * epoch, status=status, val_loss=0.5, val_acc=0.8, best_val_acc=0.81,
                       **more)


def test_a_final_report_is_the_trials_outcome(tmp_path, monkeypatch):
    outcome = _drive(tmp_path, monkeypatch, lambda: _report(TrialStatus.FINISHED, 3, test_acc=0.79, test_loss=0.6))
    assert outcome.status is TrialStatus.FINISHED and outcome.error is None
    assert (outcome.epochs_done, outcome.steps, outcome.final_val_acc, outcome.test_acc) == (3, 30, 0.8, 0.79)


def test_an_error_in_the_fit_is_recorded_and_raised_on(tmp_path, monkeypatch):
    def fit():
        raise ValueError("the data root holds no Fashion-MNIST")

    with pytest.raises(ValueError, match="no Fashion-MNIST"):
        _drive(tmp_path, monkeypatch, fit)
    outcome = _summary(tmp_path)
    assert outcome.status is TrialStatus.FAILED and outcome.failed_by_error
    assert outcome.error == "ValueError: the data root holds no Fashion-MNIST"


def test_a_fit_that_returns_without_a_final_report_is_a_failure_with_what_it_reached(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="without a final report"):
        _drive(tmp_path, monkeypatch, lambda: _report(TrialStatus.RUNNING, 2))
    outcome = _summary(tmp_path)
    assert outcome.status is TrialStatus.FAILED and outcome.epochs_done == 2 and outcome.final_val_acc is None
    assert "'running' at epoch 2 of 3 epochs" in outcome.error
    with pytest.raises(RuntimeError, match="last report: none"):
        _drive(tmp_path, monkeypatch, lambda: None)


def test_a_trial_failing_after_the_suite_was_interrupted_is_marked_interrupted(tmp_path, monkeypatch):
    def fit():
        mark_interrupted(tmp_path, "SIGTERM")
        raise ConnectionError("the Train controller died")

    with pytest.raises(ConnectionError):
        _drive(tmp_path, monkeypatch, fit)
    outcome = _summary(tmp_path)
    assert outcome.status is TrialStatus.FAILED and not outcome.failed_by_error
    assert outcome.interrupted and outcome.error.startswith("SIGTERM stopped the suite")
    assert "ConnectionError" in outcome.error


def test_tunes_stop_is_not_a_failure(tmp_path, monkeypatch):
    """ASHA's stop reaches the trial as SystemExit: the driver writes nothing (the search's SearchCallback does)."""
    def fit():
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        _drive(tmp_path, monkeypatch, fit)
    assert _summary(tmp_path) is None


def test_epoch_reports_cross_ray_as_metrics_and_back():
    report = _report(TrialStatus.DIVERGED, 2, lr=math.nan, switch_reason="divergence")
    metrics = report.to_metrics()
    assert metrics["status"] == "diverged" and type(metrics["status"]) is str  # plain, as Tune stores it
    # Tune adds keys of its own to what the workers reported: ignored.
    back = EpochReport.from_metrics({**metrics, "training_iteration": 2, "time_total_s": 9.0})
    assert back.status is TrialStatus.DIVERGED and back.ended and math.isnan(back.lr)
    assert back.epoch == report.epoch and back.val_acc == report.val_acc
    assert EpochReport.from_metrics({}) is None and EpochReport.from_metrics({"training_iteration": 0}) is None
    assert not _report(TrialStatus.RUNNING, 1).ended


def test_a_training_state_is_a_checkpoint_that_loads_without_running_code(tmp_path):
    plan = FixedPlan(total_steps=30, warmup_steps=10, peak_lr=0.1)
    state = TrainingState(model={"w": torch.ones(2)}, optimizer={"state": {}, "param_groups": []},
                          rng=[{"torch": torch.get_rng_state()}],
                          progress=LoopPosition(step=10, epoch=1, rollbacks=0, best_val_acc=0.5,
                                            val_history=[{"epoch": 1, "val_loss": 0.9, "val_acc": 0.5}]),
                          trace=[(1, 0.01), (2, 0.02)], plan=plan, schedule={"peak_lr": 0.1})
    torch.save({**state.to_dict(), "spec": SPEC.to_dict()}, tmp_path / "state.pt")
    loaded = TrainingState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert loaded.plan == plan and loaded.progress == state.progress and loaded.trace == state.trace
    assert torch.equal(loaded.model["w"], state.model["w"]) and loaded.schedule == state.schedule
    # The layout of every checkpoint written so far: old run folders resume.
    assert set(state.to_dict()) == {"model", "optimizer", "rng", "progress", "trace", "plan", "schedule"}
    assert set(state.to_dict()["progress"]) == {"step", "epoch", "rollbacks", "best_val_acc", "val_history",
                                                "tests_logged"}
    with pytest.raises(ValueError, match=r"lacks \['plan', 'progress'\]"):
        TrainingState.from_dict({k: v for k, v in state.to_dict().items() if k not in ("plan", "progress")})
