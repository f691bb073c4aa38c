"""Rank 0's result rows of a trial (``records.trial_results.TrialResults``) without Ray: what a restarted
worker group skips, and what the MLflow logger is handed."""

import dataclasses

import pyarrow.parquet as pq

from autowu_bench.platform.records.trial_folder import RECORDED_STEP_FILE
from autowu_bench.platform.records.trial_results import TrialResults
from autowu_bench.schedulers.switch_tests import Decision, SwitchTest


def test_a_resumed_trial_skips_what_the_failed_attempt_recorded(tmp_path):
    trial = tmp_path / "trials" / "t"
    first = TrialResults(trial)
    first.log_steps([1, 2, 3, 4], [0.1] * 4, [1.0] * 4)
    first.log_epoch(1, 4, {"val_acc": 0.5})
    first.flush()
    assert (trial / RECORDED_STEP_FILE).read_text() == "4"
    # The next attempt resumed from the checkpoint at step 2 and replays steps 3 and 4.
    second = TrialResults(trial)
    assert second.resume() == 4
    second.log_steps([3, 4, 5, 6], [0.2] * 4, [2.0] * 4)
    second.log_epoch(1, 4, {"val_acc": 0.9})
    second.log_epoch(2, 6, {"val_acc": 0.6})
    second.flush()
    assert (trial / RECORDED_STEP_FILE).read_text() == "6"
    rows = [r for p in sorted((trial / "fragments").glob("curves-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [(r["step"], r["lr"]) for r in rows] == [(1, 0.1), (2, 0.1), (3, 0.1), (4, 0.1), (5, 0.2), (6, 0.2)]
    epochs = [r for p in sorted((trial / "fragments").glob("epochs-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [(r["epoch"], r["val_acc"]) for r in epochs] == [(1, 0.5), (2, 0.6)]


class _Logger:
    """A ``MetricsLogger`` that keeps what it is handed."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_steps(self, steps, lrs, losses):
        self.calls.append(("steps", list(steps), list(lrs), list(losses)))

    def log_epoch(self, epoch, step, metrics):
        self.calls.append(("epoch", epoch, step, metrics))

    def log_tests(self, records):
        self.calls.append(("tests", [r.step for r in records]))

    def log_event(self, name, step, **info):
        self.calls.append(("event", name, step, info))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.calls.append(("close",))
        return True


def test_the_logger_gets_the_rows_that_are_not_skipped_and_closes_after_the_last_flush(tmp_path):
    trial = tmp_path / "trials" / "t"
    first = TrialResults(trial)
    first.log_steps([1, 2], [0.1] * 2, [1.0] * 2)
    first.flush()
    logger = _Logger()
    second = TrialResults(trial, logger=logger)
    second.resume()
    test = SwitchTest(step=2, epoch=0.5, p=(0.2,), votes=(False,), positive=False, decision=Decision.NEGATIVE,
                      n_finite=2, seconds=0.01)
    second.log_steps([2, 3], [0.2] * 2, [2.0] * 2)
    second.log_tests([test, dataclasses.replace(test, step=3)])
    second.log_epoch(1, 2, {"val_acc": 0.4})  # the failed attempt's epoch: skipped
    second.log_epoch(1, 3, {"val_acc": 0.5, "test_acc": None})
    second.log_event("restart", 2, restarts=1)  # events are not filtered
    assert second.close()
    assert logger.calls == [("steps", [3], [0.2], [2.0]), ("tests", [3]),
                            ("epoch", 1, 3, {"val_acc": 0.5, "test_acc": None}),
                            ("event", "restart", 2, {"restarts": 1}), ("flush",), ("close",)]
