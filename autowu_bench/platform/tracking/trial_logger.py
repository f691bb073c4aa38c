"""Rank 0's MLflow logger of a trial: ``TrialLogger`` buffers the trial's metrics, appends them to the
trial's spool and its background sender (``_Sender``) sends the spool to MLflow while the trial trains.
It gets the rows from ``records.trial_results.TrialResults``, which writes them as the results' Parquet
fragments and skips what a restarted worker group had recorded already.

Metrics of a child run (MLflow ``step`` = optimizer steps taken, so every chart shares one x axis):
  lr, train_loss                    every step, sent in batches (``log_batch``), never one call a step
  epoch, val_loss, val_acc, ...     every epoch: whatever the trial passes to ``log_epoch``
  autowu_p_<i>                      every AutoWU test: the probability of vote i that the minimum is behind
  autowu_positive_votes, autowu_positive (0/1), autowu_decision (0 negative, 1 positive, 2 switch,
                                    3 divergence)
  event_<name>                      1 at the step of an event such as a rollback
  replay<n>/<key>                   a step logged again for ``key`` (after an AutoWU rollback): each
                                    key holds each step once, ``lr`` the value first logged
  summary metrics                   at the end (test_acc, best_val_acc, switch_epoch, device_hours, ...),
                                    logged by the trial driver's ``lifecycle.close_trial``
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from autowu_bench.platform.records.tables import plain
from autowu_bench.platform.tracking import operations
from autowu_bench.platform.tracking.client import METRICS_PER_CALL, metric_key, now_ms
from autowu_bench.platform.tracking.spool import Spool
from autowu_bench.platform.tracking.delivery import DeliveryReport, send_spool
from autowu_bench.schedulers.switch_tests import Decision, SwitchTest

DECISION_CODES = {Decision.NEGATIVE: 0, Decision.POSITIVE: 1, Decision.SWITCH: 2, Decision.DIVERGENCE: 3}
# How long rank 0 waits at the trial's end for its sender to empty the spool, only while MLflow answers.
LOGGER_CLOSE_SECONDS = 10.0
# The sender's pause between tries while MLflow is away: from the first, doubling up to the last.
_RETRY_PAUSE = (1.0, 30.0)
# Buffered metrics beyond this go to the spool before the epoch ends: rank 0 never holds more.
_SPILL_METRICS = 10 * METRICS_PER_CALL


class _Sender:
    """A logger's background thread: sends the trial's spool whenever it is nudged and, while MLflow
    is away, tries again after a pause that doubles from 1 s to 30 s. It warns once when MLflow goes
    away and once when it is back."""

    def __init__(self, spool: Spool, tracking_uri: str, name: str) -> None:
        self.spool, self.tracking_uri, self.name = spool, tracking_uri, name
        self.healthy = True  # the last pass reached MLflow
        self.error: str | None = None
        self.report = DeliveryReport()
        self._lock = threading.Lock()
        self._asked = 0
        self._wake, self._drained, self._stopping = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mlflow-spool {name}", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        with self._lock:
            self._asked += 1
            self._drained.clear()
        self._wake.set()

    def wait(self, timeout: float | None, *, while_reachable: bool = False) -> bool:
        """Wait until everything nudged so far is sent; False when ``timeout`` passed first or, with
        ``while_reachable``, as soon as a pass finds MLflow away."""
        if not while_reachable:
            return self._drained.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._drained.wait(0.05):
            if not self.healthy or (deadline is not None and time.monotonic() >= deadline):
                return False
        return True

    def stop(self) -> None:
        """Stop after the request in flight, if any (not waited for: it is a daemon thread)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(0.2)

    def _loop(self) -> None:
        pause = None
        while not self._stopping.is_set():
            self._wake.wait(pause)
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._lock:
                asked = self._asked
            try:
                finished = send_spool(self.spool, self.tracking_uri, self.report, stop=self._stopping)
            except Exception as exc:  # noqa: BLE001 - MlflowAway, or a bug: the thread must live on
                if self.healthy:
                    warnings.warn(f"MLflow at {self.tracking_uri} is away ({exc}); trial {self.name} trains on, its "
                                  f"metrics are spooled in {self.spool.folder} and sent when MLflow answers")
                self.healthy, self.error = False, str(exc)
                pause = min(2 * pause, _RETRY_PAUSE[1]) if pause else _RETRY_PAUSE[0]
                continue
            if not finished:  # another sender held the spool, or stopping
                pause = _RETRY_PAUSE[0]
                continue
            if not self.healthy:
                warnings.warn(f"MLflow at {self.tracking_uri} answers again: trial {self.name}'s spool is sent")
            self.healthy, self.error, pause = True, None, None
            with self._lock:
                if asked == self._asked and self.spool.empty():
                    self._drained.set()


# -- the per-trial logger ------------------------------------------------------------------------------


class TrialLogger:
    """Rank 0's MLflow metrics of one trial, through the trial's spool (``records.trial_results.TrialResults``
    hands it the rows; it is that class's ``MetricsLogger``).

    Everything is buffered; ``flush()`` (every epoch) appends the buffered metrics to the trial's spool
    (``<trial_dir>/mlflow-spool``) in ``log_batch``-sized operations, wakes the logger's sender thread
    and returns: training never waits on the network. The sender sends the spool in the background and,
    while MLflow is away, keeps it and tries again (see ``_Sender``); a long epoch spills to the spool
    every 10,000 metrics. ``close()`` (the trial's end) waits a bounded time for the sender; what is
    left is sent by the trial driver's end, the suite's end or ``run_suite.py --sync``.

    Each MLflow key holds each step once. A step logged again for a key (an AutoWU rollback replays the
    steps after the snapshot it restored) goes to a series of its own, ``replay<n>/<key>`` (n = 1 for the
    first replay of that step), so ``lr`` keeps the values first logged; the Parquet tables keep the
    last row of a step. Outside ``run_suite.py`` (whose processes get it), call ``apply_process_env()``
    before logging.

    Args:
        tracking_uri: MLflow URI; None logs nothing.
        run_id: the trial's child run (``open_trial``). None with a spool already opened by ``open_trial``
            (MLflow was away at the trial's start) logs into the run the spool creates; None without one
            logs nothing.
        trial_dir: the trial's folder (its name is the trial id unless ``trial_id`` is given).
    """

    def __init__(
        self, tracking_uri: str | None, run_id: str | None, trial_dir: str | os.PathLike, trial_id: str | None = None
    ) -> None:
        self.run_id = run_id
        self.trial_dir = Path(trial_dir)
        self.trial_id = trial_id or self.trial_dir.name
        self.tracking_uri = tracking_uri
        spool = Spool.of(self.trial_dir) if tracking_uri else None
        if spool is not None and run_id:
            spool.set_run_id(run_id)
        self.spool = spool if spool is not None and spool.exists() else None
        self._sender: _Sender | None = None
        self._points: list[list] = []  # [key, value, timestamp ms, step], not yet spooled
        self._tags: dict[str, str] = {}
        self._high: dict[str, int] = {}  # per MLflow key, the highest step logged to it

    def _metric(self, key: str, value: float, step: int, *, replayable: bool = True) -> None:
        if self.spool is None:
            return
        step = int(step)
        if replayable:
            key = self._series(key, step)
        self._points.append([key, float(value), now_ms(), step])

    def _series(self, key: str, step: int) -> str:
        """``key``, or ``replay<n>/<key>`` for the n-th time ``step`` comes to ``key`` again."""
        name, n = key, 0
        while name in self._high and step <= self._high[name]:
            n += 1
            name = f"replay{n}/{key}"
        self._high[name] = step
        return name

    def log_steps(self, steps: Sequence[int], lrs: Sequence[float], losses: Sequence[float]) -> None:
        """Per-step ``lr`` and ``train_loss`` (the all-reduced mean loss of that step)."""
        if not len(steps) == len(lrs) == len(losses):
            raise ValueError(f"steps, lrs and losses differ in length: {len(steps)}, {len(lrs)}, {len(losses)}")
        for step, lr, loss in zip(steps, lrs, losses):
            step, lr, loss = int(step), float(lr), float(loss)
            self._metric("lr", lr, step)
            self._metric("train_loss", loss, step)
        if len(self._points) >= _SPILL_METRICS:
            self._spool_buffered()  # a long epoch must not hold unbounded metrics in memory

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        """Per-epoch metrics (val_loss, val_acc, epoch_seconds, images_per_second, ...) at ``step``."""
        self._metric("epoch", epoch, step)
        for key, value in metrics.items():
            if value is not None:
                self._metric(metric_key(key), value, step)

    def log_tests(self, records: Iterable[SwitchTest]) -> None:
        """AutoWU test records (``AutoWUCore.tests`` entries): p per vote, positive votes, the decision."""
        for record in records:
            for i, p in enumerate(record.p):
                self._metric(f"autowu_p_{i}", p, record.step)
            self._metric("autowu_positive_votes", sum(record.votes), record.step)
            self._metric("autowu_positive", record.positive, record.step)
            self._metric("autowu_decision", DECISION_CODES[record.decision], record.step)

    def log_event(self, name: str, step: int, **info: Any) -> None:
        """An event such as ``rollback``: metric ``event_<name>`` = 1 at ``step``, tag ``event.<name>``."""
        self._metric(f"event_{metric_key(name)}", 1.0, step, replayable=False)
        if self.spool is not None:
            self._tags[f"event.{name}"] = json.dumps({"step": step, **plain(info)})[:5000]

    def flush(self) -> None:
        """Spool the buffered metrics (the sender sends them); never waits on MLflow."""
        self._spool_buffered()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the spool is sent; False when ``timeout`` (seconds) passed first (it stays spooled)."""
        return True if self._sender is None else self._sender.wait(timeout)

    def close(self, timeout: float = LOGGER_CLOSE_SECONDS) -> bool:
        """The trial's end on rank 0: flush, wait up to ``timeout`` seconds for the sender (not at all while
        MLflow is away) and stop it. True when everything reached MLflow; the rest stays spooled."""
        self.flush()
        sender, self._sender = self._sender, None
        if sender is None:
            return self.spool is None or self.spool.empty()
        done = sender.wait(timeout, while_reachable=True)
        sender.stop()
        return done

    def _spool_buffered(self) -> None:
        points, self._points = self._points, []
        tags, self._tags = self._tags, {}
        if self.spool is None or not (points or tags):
            return
        try:
            self.spool.append(operations.batches(points, tags))
        except OSError as exc:  # a full disk: the results' fragments will fail too and say so
            warnings.warn(f"trial {self.trial_id}: {len(points)} metrics could not be spooled ({exc})")
            return
        if self._sender is None:
            self._sender = _Sender(self.spool, self.tracking_uri, self.trial_id)
        self._sender.nudge()
