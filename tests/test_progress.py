"""The live progress line: its counts, its estimate of what is left and the best accuracy so far, from
hand-made trial states; the Tune callback driven by fake Tune trials (no Ray run); and AutoWU's planning
warning silenced in Ray's worker processes only."""

from __future__ import annotations

import dataclasses
import io
import warnings

import pytest

from autowu_bench.platform.execution import progress
from autowu_bench.platform.execution.progress import (
    ProgressReporter, TrialState, best_so_far, count, end_line, epoch_line, format_duration, progress_line,
    remaining_seconds,
)
from autowu_bench.platform.records.outcome import EpochReport, TrialStatus


def state(trial_id, workload="fmnist-mlp", batch=32, epochs=6, status=progress.PENDING, done=0, best=None,
          test=None):
    return TrialState(trial_id, workload, batch, epochs, status=status, epochs_done=done, best_val_acc=best,
                      test_acc=test)


def suite_states():
    return [
        state("a", status=progress.FINISHED, done=6, best=0.81, test=0.80),
        state("b", status=progress.DIVERGED, done=2, best=0.42, test=0.10),
        state("c", status=progress.RUNNING, done=3, best=0.77),
        state("d", batch=64, status=progress.FAILED, done=1, best=0.90),
        state("e", batch=64),
        state("f", workload="fmnist-cnn", batch=64, status=progress.RUNNING, done=0),
    ]


def test_counts_put_diverged_with_finished_and_add_up_to_the_trials():
    c = count(suite_states())
    assert (c.finished, c.diverged, c.running, c.pending, c.failed, c.total) == (2, 1, 2, 1, 1, 6)


def test_what_is_left_is_the_pace_so_far_times_the_epochs_left():
    states = suite_states()
    # Done: 6 + 2 + 3 + 1 = 12 epochs. Left: c 3, e 6, f 6 = 15 (ended trials have none left, however
    # they ended). 120 s for 12 epochs -> 150 s for 15.
    assert remaining_seconds(states, 120.0) == pytest.approx(150.0)
    assert remaining_seconds([state("x"), state("y", status=progress.RUNNING)], 30.0) is None  # no epoch yet
    assert remaining_seconds([state("x", status=progress.FINISHED, done=6)], 30.0) == 0.0


def test_best_so_far_per_workload_and_batch_in_the_trials_order():
    states = suite_states() + [state("g", status=progress.RUNNING, done=1, best=float("nan"))]
    assert best_so_far(states) == {("fmnist-mlp", 32): 0.81, ("fmnist-mlp", 64): 0.90, ("fmnist-cnn", 64): None}


def test_durations():
    assert [format_duration(s) for s in (0, 44.6, 60, 185, 3600, 3725, -3)] == [
        "0s", "45s", "1m00s", "3m05s", "1h00m", "1h02m", "0s"]


def test_the_progress_line():
    line = progress_line(suite_states(), 120.0)
    assert line == ("trials 2/6 done (1 diverged), 2 running, 1 pending, 1 failed | 2m00s elapsed, ~2m30s left | "
                    "best val_acc: fmnist-mlp b32 0.8100, fmnist-mlp b64 0.9000, fmnist-cnn b64 -")
    assert "estimating what is left" in progress_line([state("x")], 5.0)


def test_epoch_and_end_lines():
    report = EpochReport(epoch=2, step=20, phase="warmup", lr=0.00123456, val_acc=0.5, status=TrialStatus.RUNNING)
    assert epoch_line("t", report) == "[t] epoch 2 phase warmup lr 0.001235 val_acc 0.5000"
    assert epoch_line("t", dataclasses.replace(report, test_acc=0.75, status=TrialStatus.FINISHED)).endswith(
        "test_acc 0.7500 (finished)")
    assert epoch_line("t", EpochReport(epoch=3, step=30, status=TrialStatus.RUNNING)) == "[t] epoch 3 status running"
    s = suite_states()
    assert end_line(s[0]) == "[a] finished: test_acc 0.8000, best val_acc 0.8100, 6/6 epochs"
    assert end_line(s[1]) == "[b] diverged: test_acc 0.1000, best val_acc 0.4200, 2/6 epochs"
    assert end_line(s[3], "RuntimeError: boom\n  more") == "[d] FAILED after 1/6 epochs: RuntimeError: boom"
    assert end_line(s[3]) == "[d] FAILED after 1/6 epochs"
    assert end_line(s[3], "RuntimeError: boom", "/r/logs/ray.log") == \
        "[d] FAILED after 1/6 epochs: RuntimeError: boom (Ray's output: /r/logs/ray.log)"


# -- the callback, driven by fake Tune trials --------------------------------------------------------


class FakeTrial:
    def __init__(self, trial_id, workload="fmnist-mlp", batch=32, epochs=3):
        self.config = {"spec": {"trial_id": trial_id, "workload": workload, "batch_size": batch, "epochs": epochs}}
        self.last_result = {}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def specs():
    return [FakeTrial(i).config["spec"] for i in ("t1", "t2")] + [FakeTrial("t3", batch=64).config["spec"]]


def result(epoch, val_acc, status="running", **extra):
    return {"epoch": epoch, "step": 10 * epoch, "phase": "decay", "lr": 0.01, "val_acc": val_acc, "best_val_acc": val_acc,
            "status": status, **extra}


def drive(reporter, clock):
    """Two trials through start, epochs and their ends; a third never starts."""
    t1, t2 = FakeTrial("t1"), FakeTrial("t2")
    reporter.on_trial_start(0, [], t1)
    reporter.on_trial_start(0, [], t2)
    assert count(reporter.states.values()).running == 2
    for epoch in (1, 2, 3):
        clock.now += 10
        reporter.on_trial_result(0, [], t1, result(epoch, 0.5 + epoch / 10,
                                                   "finished" if epoch == 3 else "running",
                                                   **({"test_acc": 0.79} if epoch == 3 else {})))
        reporter.on_step_end(0, [])
    # its last epoch reported "finished", but it counts as running until Tune says it ended
    assert count(reporter.states.values()).running == 2
    t1.last_result = result(3, 0.8, "finished", test_acc=0.79)
    reporter.on_trial_complete(0, [], t1)
    clock.now += 100
    reporter.on_step_end(0, [])  # past the interval: one periodic line
    reporter.on_trial_result(0, [], t2, result(1, 0.6))
    reporter.on_trial_error(0, [], t2)
    reporter.on_experiment_end([])


def test_off_a_terminal_lines_come_at_ends_and_every_interval_only():
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(specs(), stream=out, interval=60, clock=clock,
                                error_of=lambda trial_id: "ValueError: bad batch" if trial_id == "t2" else None)
    assert not reporter.live  # a StringIO is not a terminal
    drive(reporter, clock)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "[t1] finished: test_acc 0.7900, best val_acc 0.8000, 3/3 epochs"
    assert lines[1].startswith("trials 1/3 done, 1 running, 1 pending, 0 failed | 30s elapsed, ")
    assert lines[1].endswith("best val_acc: fmnist-mlp b32 0.8000, fmnist-mlp b64 -")
    assert lines[2].startswith("trials 1/3 done, 1 running, 1 pending, 0 failed | 2m10s elapsed")  # periodic
    assert lines[3] == "[t2] FAILED after 1/3 epochs: ValueError: bad batch"
    assert lines[4].startswith("trials 1/3 done, 0 running, 1 pending, 1 failed")
    assert len(lines) == 5  # no epoch lines, no line per result, nothing more at the experiment's end


def test_verbose_adds_todays_epoch_lines():
    out, clock = io.StringIO(), Clock()
    drive(ProgressReporter(specs(), stream=out, verbose=True, clock=clock), clock)
    lines = out.getvalue().splitlines()
    epochs = [line for line in lines if " epoch " in line]
    assert epochs == [
        "[t1] epoch 1 phase decay lr 0.01 val_acc 0.6000",
        "[t1] epoch 2 phase decay lr 0.01 val_acc 0.7000",
        "[t1] epoch 3 phase decay lr 0.01 val_acc 0.8000 test_acc 0.7900 (finished)",
        "[t2] epoch 1 phase decay lr 0.01 val_acc 0.6000",
    ]
    assert "[t2] FAILED after 1/3 epochs" in lines


def test_on_a_terminal_the_line_is_redrawn_in_place_and_other_lines_clear_it():
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(specs(), stream=out, live=True, clock=clock)
    drive(reporter, clock)
    text = out.getvalue()
    assert text.count("\n") == 3  # the two trials' ends and the final newline under the last line
    redraws = text.split("\r\x1b[K")
    assert len(redraws) > 5
    # each end line starts at the start of a cleared line, never after a half-drawn progress line
    assert "\r\x1b[K[t1] finished" in text and "\r\x1b[K[t2] FAILED" in text
    assert text.endswith("\n") and redraws[-1].startswith("trials 1/3 done, 0 running, 1 pending, 1 failed")


def test_the_tune_callback_is_a_reporter_that_tune_accepts():
    from ray import tune

    callback = progress.progress_callback(specs(), stream=io.StringIO(), live=False)
    assert isinstance(callback, tune.Callback) and isinstance(callback, ProgressReporter)
    callback.on_trial_start(iteration=0, trials=[], trial=FakeTrial("t3", batch=64))
    assert count(callback.states.values()).running == 1


# -- the planning warning, once ----------------------------------------------------------------------


def _coarse_autowu():
    from autowu_bench.schedulers.autowu import AutoWUCore

    return AutoWUCore(32, 6, test_interval="epoch")  # 6 epochs of 32 steps: the LR grows x46 per test


def test_autowu_used_directly_still_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _coarse_autowu()
    assert any("lets the LR grow" in str(w.message) for w in caught)


def test_ray_workers_do_not_repeat_the_planning_warning(monkeypatch):
    """The setup hook of every Ray worker (trial driver, controller actor, Train workers) silences it."""
    import ray

    from autowu_bench.platform.execution import ray_cluster

    class Context:
        gcs_address = "127.0.0.1:6379"

    monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    import logging

    # The hook also quiets Ray's loggers for the process: put them back for the tests after this one.
    loggers = [logging.getLogger(n) for n in logging.root.manager.loggerDict if n.startswith("ray")]
    saved = [(lg, lg.level, list(lg.filters)) for lg in loggers + [logging.getLogger("ray.train")]]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ray_cluster.quiet_ray_logs()  # what each worker process runs at start
            _coarse_autowu()
            warnings.warn("another warning still shows", UserWarning)
    finally:
        for logger, level, filters in saved:
            logger.setLevel(level)
            logger.filters[:] = filters
    messages = [str(w.message) for w in caught]
    assert not any("lets the LR grow" in m for m in messages), messages
    assert "another warning still shows" in messages


def test_a_trial_whose_last_report_says_diverged_ends_as_diverged():
    out = io.StringIO()
    reporter = ProgressReporter(specs(), stream=out, clock=Clock())
    trial = FakeTrial("t1")
    reporter.on_trial_start(0, [], trial)
    trial.last_result = {"epoch": 2, "step": 20, "status": "diverged", "val_acc": float("nan"), "best_val_acc": 0.4,
                         "test_acc": 0.1}
    reporter.on_trial_complete(0, [], trial)
    assert out.getvalue().splitlines()[0] == "[t1] diverged: test_acc 0.1000, best val_acc 0.4000, 2/3 epochs"
    assert count(reporter.states.values()).diverged == 1


def test_the_callback_pickles_with_the_console_stream():
    """Tune pickles its callbacks with the experiment state: the reporter must not hold sys.stdout."""
    import sys

    import cloudpickle

    callback = progress.progress_callback([{"trial_id": "a", "workload": "w", "batch_size": 8, "epochs": 2}])
    assert callback.stream is sys.stdout
    assert cloudpickle.loads(cloudpickle.dumps(callback)).states.keys() == {"a"}


def test_a_failed_trial_names_the_file_of_rays_output_when_there_is_one(tmp_path):
    log = tmp_path / "logs" / "ray.log"
    for exists in (False, True):  # --verbose: Ray's output stays on the console, no file to name
        if exists:
            log.parent.mkdir()
            log.write_text("(RayTrainWorker pid=1) Traceback ...\n")
        out, clock = io.StringIO(), Clock()
        reporter = ProgressReporter(specs(), stream=out, interval=60, clock=clock, log_path=log,
                                    error_of=lambda trial_id: "ValueError: bad batch")
        drive(reporter, clock)
        (failed,) = [line for line in out.getvalue().splitlines() if "FAILED" in line]
        assert failed == "[t2] FAILED after 1/3 epochs: ValueError: bad batch" + (
            f" (Ray's output: {log})" if exists else "")
