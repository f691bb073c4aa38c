"""Live progress of a suite while Ray Tune runs its trials.

One progress line: trials finished / running / pending / failed, the elapsed time, an estimate of what
is left (from the epochs done against the epochs planned, at the pace so far) and the best validation
accuracy so far per workload and batch size::

    trials 2/6 done (1 diverged), 2 running, 2 pending, 0 failed | 1m05s elapsed, ~2m10s left | best val_acc: fmnist-mlp b32 0.8125, fmnist-mlp b64 -

On a terminal the line is redrawn in place (``\\r``); elsewhere (CI, a log file, ``ray submit``) it is
printed at most every ``interval`` seconds and after each trial's end, so logs stay short. A trial's end
is always printed as a line of its own (finished / diverged with the test accuracy, failed with the
error); ``verbose`` adds one line per reported epoch per trial (the format of :func:`epoch_line`).

The formatting is pure functions of :class:`TrialState` values (tested without Ray);
:class:`ProgressReporter` keeps the states from Tune's callback calls, and :func:`progress_callback`
makes it a ``ray.tune.Callback``.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from autowu_bench.platform.records.outcome import EpochReport, TrialStatus

PENDING, RUNNING, FINISHED, DIVERGED, STOPPED, FAILED = (
    TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.FINISHED, TrialStatus.DIVERGED, TrialStatus.STOPPED,
    TrialStatus.FAILED
)
DONE = (FINISHED, DIVERGED)


@dataclass
class TrialState:
    """What the progress line knows of one trial."""

    trial_id: str
    workload: str
    batch_size: int
    epochs: int  # planned
    status: str = PENDING
    epochs_done: int = 0
    best_val_acc: float | None = None
    test_acc: float | None = None

    @classmethod
    def from_spec(cls, spec: Any) -> "TrialState":
        """From a ``TrialSpec`` or its dict (a Tune trial's ``config["spec"]``)."""
        get = spec.get if isinstance(spec, dict) else lambda name: getattr(spec, name)
        return cls(get("trial_id"), get("workload"), int(get("batch_size")), int(get("epochs")))

    @property
    def epochs_left(self) -> int:
        """Epochs still to train: none once the trial ended, however it ended."""
        return 0 if self.status in DONE + (STOPPED, FAILED) else max(0, self.epochs - self.epochs_done)


@dataclass(frozen=True)
class Counts:
    finished: int  # finished, diverged or stopped by a search's scheduler: trials that ended
    diverged: int
    stopped: int
    running: int
    pending: int
    failed: int

    @property
    def total(self) -> int:
        return self.finished + self.running + self.pending + self.failed


def count(states: Iterable[TrialState]) -> Counts:
    states = list(states)
    by = {s: sum(1 for t in states if t.status == s) for s in (PENDING, RUNNING, FINISHED, DIVERGED, STOPPED, FAILED)}
    return Counts(finished=by[FINISHED] + by[DIVERGED] + by[STOPPED], diverged=by[DIVERGED], stopped=by[STOPPED],
                  running=by[RUNNING],
                  pending=by[PENDING], failed=by[FAILED])


def remaining_seconds(states: Iterable[TrialState], elapsed: float) -> float | None:
    """Seconds left at the pace so far: ``elapsed`` x epochs left / epochs done, all trials together
    (concurrency is in the pace). None before any epoch is done; 0 when nothing is left."""
    states = list(states)
    done = sum(min(s.epochs_done, s.epochs) for s in states)
    left = sum(s.epochs_left for s in states)
    if left == 0:
        return 0.0
    if done == 0 or elapsed <= 0:
        return None
    return elapsed * left / done


def best_so_far(states: Iterable[TrialState]) -> dict[tuple[str, int], float | None]:
    """The best validation accuracy per (workload, batch size), in the trials' order; None where no
    trial of that group has reported one yet."""
    best: dict[tuple[str, int], float | None] = {}
    for s in states:
        key = (s.workload, s.batch_size)
        current = best.setdefault(key, None)
        acc = s.best_val_acc
        if acc is not None and math.isfinite(acc) and (current is None or acc > current):
            best[key] = acc
    return best


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_line(states: Iterable[TrialState], elapsed: float) -> str:
    """The progress line (see the module docstring)."""
    states = list(states)
    c = count(states)
    notes = [f"{n} {what}" for n, what in ((c.diverged, "diverged"), (c.stopped, "stopped early")) if n]
    done = f"trials {c.finished}/{c.total} done" + (f" ({', '.join(notes)})" if notes else "")
    left = remaining_seconds(states, elapsed)
    eta = "estimating what is left" if left is None else f"~{format_duration(left)} left"
    best = ", ".join(f"{workload} b{batch} {'-' if acc is None else f'{acc:.4f}'}"
                     for (workload, batch), acc in best_so_far(states).items())
    return (f"{done}, {c.running} running, {c.pending} pending, {c.failed} failed | "
            f"{format_duration(elapsed)} elapsed, {eta} | best val_acc: {best}")


def epoch_line(trial_id: str, report: EpochReport) -> str:
    """One reported epoch of a trial (``--verbose``)."""
    acc, test, lr = report.val_acc, report.test_acc, report.lr
    if isinstance(lr, float) and isinstance(acc, float):
        line = f"[{trial_id}] epoch {report.epoch} phase {report.phase} lr {lr:.4g} val_acc {acc:.4f}"
    else:
        line = f"[{trial_id}] epoch {report.epoch} status {report.status}"
    if test is not None:
        line += f" test_acc {test:.4f} ({report.status})"
    return line


def end_line(state: TrialState, error: str | None = None, log: str | None = None) -> str:
    """A trial's end: ``[id] finished: test_acc 0.8123, best val_acc 0.8200, 6/6 epochs``, or diverged
    (with the epoch it reached), or FAILED with the first line of its error and the file holding Ray's
    output (``log``: its tracebacks are there, not on the console)."""
    if state.status == FAILED:
        return f"[{state.trial_id}] FAILED after {state.epochs_done}/{state.epochs} epochs" + (
            f": {error.strip().splitlines()[0][:300]}" if error and error.strip() else "") + (
            f" (Ray's output: {log})" if log else "")
    parts = [f"test_acc {_acc(state.test_acc)}", f"best val_acc {_acc(state.best_val_acc)}",
             f"{state.epochs_done}/{state.epochs} epochs"]
    return f"[{state.trial_id}] {state.status}: " + ", ".join(parts)


def _acc(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


class ProgressReporter:
    """The trials' states from Tune's callback calls, and what is printed when.

    Args:
        specs: the suite's trials (``TrialSpec`` or dicts): all pending until Tune starts them.
        verbose: also one line per reported epoch per trial.
        stream: where to print (default ``sys.stdout``).
        live: redraw the progress line in place; default: whether ``stream`` is a terminal.
        interval: off a terminal, seconds between progress lines (besides those after a trial's end).
        error_of: ``error_of(trial_id)`` -> the error of a failed trial (the trial driver's summary), or None.
        clock: ``time.monotonic``-like.
        spec_of: ``spec_of(tune_trial)`` -> the trial's spec dict (default: its ``config["spec"]``; a
            search trial's config holds only the proposed values).
        log_path: the file of Ray's output (``ray_logs.ray_log_path``), named in a failed trial's line
            when it exists (not with ``--verbose``, whose Ray output stays on the console).
    """

    def __init__(self, specs: Iterable[Any], *, verbose: bool = False, stream: TextIO | None = None,
                 live: bool | None = None, interval: float = 60.0,
                 error_of: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 spec_of: Callable[[Any], dict[str, Any]] | None = None,
                 log_path: Path | None = None) -> None:
        self.states = {s.trial_id: s for s in map(TrialState.from_spec, specs)}
        self.verbose = verbose
        self._stream = stream  # None: sys.stdout when writing (Tune pickles its callbacks; a console stream does not pickle)
        self.live = self._isatty(self.stream) if live is None else live
        self.interval = interval
        self.error_of = error_of
        self.clock = clock
        self.spec_of = spec_of
        self.log_path = log_path
        self.started = clock()
        self._last_line_at: float | None = None
        self._drawn = False  # a live line is on screen, to be cleared before any other line

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @staticmethod
    def _isatty(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def elapsed(self) -> float:
        return self.clock() - self.started

    def line(self) -> str:
        return progress_line(self.states.values(), self.elapsed())

    # -- Tune callback methods (the signatures of ray.tune.Callback) -----------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        state = self._state(trial)
        state.status = RUNNING
        self._progress(force=self.live)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        state = self._state(trial)
        report = EpochReport.from_metrics(result)
        self._update(state, report)
        if state.status == PENDING:
            state.status = RUNNING
        if self.verbose and report is not None:
            self._print(epoch_line(state.trial_id, report))
        self._progress(force=self.live)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        state = self._state(trial)
        last = EpochReport.from_metrics(getattr(trial, "last_result", None))
        self._update(state, last)
        # Ended without its last epoch: stopped by the search's scheduler (ASHA).
        state.status = last.status if last is not None and last.ended else STOPPED
        self._print(end_line(state))
        self._progress(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        state = self._state(trial)
        state.status = FAILED
        error = self.error_of(state.trial_id) if self.error_of is not None else None
        log = self.log_path if self.log_path is not None and self.log_path.is_file() else None
        self._print(end_line(state, error, None if log is None else str(log)))
        self._progress(force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # Tune's loop calls this often: the clock of the live redraw and of the periodic log line.
        self._progress(force=False)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if not self.live:
            return  # the last trial's end already printed the final line
        self._progress(force=True)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    # -- internals -------------------------------------------------------------------------------

    def _state(self, trial: Any) -> TrialState:
        spec = self.spec_of(trial) if self.spec_of is not None else trial.config["spec"]
        trial_id = spec["trial_id"]
        if trial_id not in self.states:  # a trial the reporter was not told of
            self.states[trial_id] = TrialState.from_spec(spec)
        return self.states[trial_id]

    @staticmethod
    def _update(state: TrialState, report: EpochReport | None) -> None:
        if report is None:  # Tune's result of a trial that never reported
            return
        state.epochs_done = max(state.epochs_done, int(report.epoch))
        for acc in (report.best_val_acc, report.val_acc):
            if acc is not None and math.isfinite(acc) and (state.best_val_acc is None or acc > state.best_val_acc):
                state.best_val_acc = float(acc)
        if report.test_acc is not None:
            state.test_acc = float(report.test_acc)
        # The status stays "running" until Tune says the trial ended (on_trial_complete / _error).

    def _progress(self, *, force: bool) -> None:
        now = self.clock()
        wait = 1.0 if self.live else self.interval
        if not force and self._last_line_at is not None and now - self._last_line_at < wait:
            return
        if not force and self._last_line_at is None and not self.live and now - self.started < wait:
            return
        self._last_line_at = now
        if self.live:  # cut to the terminal's width: a wrapped line could not be redrawn in place
            width = shutil.get_terminal_size().columns
            line = self.line()
            self.stream.write("\r\x1b[K" + (line if len(line) < width else line[: max(10, width - 2)] + "…"))
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def _print(self, text: str) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()


def progress_callback(specs: Iterable[Any], **kwargs: Any):
    """A ``ray.tune.Callback`` that is a :class:`ProgressReporter` (same arguments)."""
    from ray import tune

    class ProgressCallback(ProgressReporter, tune.Callback):
        pass

    return ProgressCallback(specs, **kwargs)
