"""Run a suite's trials through Ray Tune: one function trainable per trial
(:func:`~autowu_bench.platform.execution.trial_driver.run_trial`), a grid over the trial specs themselves, up to
``max_concurrent`` at once (by default as many as the cluster's CPUs, or GPUs, hold), with a live
progress line (``progress.ProgressReporter``; one line per reported epoch with ``verbose``)."""

from __future__ import annotations

import functools
import os
import time
import traceback

from autowu_bench.platform.records.outcome import ENDED, TrialOutcome, TrialStatus
from autowu_bench.platform.execution.progress import progress_callback
from autowu_bench.platform.execution.ray_cluster import default_concurrency
from autowu_bench.platform.execution.ray_logs import ray_log_path
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder
from autowu_bench.platform.execution.trial_driver import run_trial
from autowu_bench.platform.execution.tuner_builder import build_tuner


def run_grid(
    trials: list[TrialSpec],
    *,
    run_dir: str,
    tracking_uri: str | None,
    parent_run_id: str | None,
    max_concurrent: int | None = None,
    verbose: bool = False,
    progress_interval: float = 60.0,
) -> list[TrialOutcome]:
    """Run every trial through Ray Tune (inside :func:`ray_session`); returns their outcomes in order.

    Args:
        trials: the suite's trials.
        run_dir: the invocation's results folder; trial folders go to ``run_dir/trials/<trial_id>``
            and Tune/Train storage (checkpoints) to ``run_dir/ray``.
        tracking_uri / parent_run_id: MLflow; None disables tracking.
        max_concurrent: trials at once (default: as many as the cluster's resources hold).
        verbose: one line per reported epoch per trial, besides the progress line and the trials' ends.
        progress_interval: seconds between progress lines when stdout is not a terminal (a log file).

    A failed trial does not stop the others; its outcome has status "failed" and the error.
    """
    from ray import tune

    if not trials:
        return []
    ids = [t.trial_id for t in trials]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"trial ids must be unique within a run; repeated: {duplicates}")
    run_dir = os.path.abspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    concurrency = max_concurrent or default_concurrency(trials)
    tuner = build_tuner(
        run_trial, run_dir=run_dir, tracking_uri=tracking_uri, parent_run_id=parent_run_id, name="tune",
        param_space={"spec": tune.grid_search([t.to_dict() for t in trials])},
        trial_name=_trial_name,
        callbacks=[progress_callback(trials, verbose=verbose, interval=progress_interval,
                                     error_of=functools.partial(_error_of, run_dir), log_path=ray_log_path(run_dir))],
        max_concurrent_trials=concurrency,
    )
    print(f"running {len(trials)} trials, up to {concurrency} at once", flush=True)
    grid = tuner.fit()
    recorded = {r.config["spec"]["trial_id"]: r.error for r in grid if r.error is not None and r.config}
    return collect_outcomes(trials, run_dir, recorded)


def collect_outcomes(trials: list[TrialSpec], run_dir: str,
                     errors: dict[str, BaseException] | None = None) -> list[TrialOutcome]:
    """Each trial's outcome, in order: its summary; else, when its driver could not write one (a full
    disk), a failed outcome with the error Tune recorded for it (``errors``, by trial id), written as its
    summary where the disk now allows; else a failed outcome saying that the trial never started."""
    errors = errors or {}
    outcomes = []
    for spec in trials:
        folder = TrialFolder.of(run_dir, spec.trial_id)
        outcome = folder.summary()
        if outcome is None:
            now = time.time()
            error = errors.get(spec.trial_id)
            outcome = TrialOutcome.from_report(
                spec, None, status=TrialStatus.FAILED, started=now, ended=now,
                error="the trial never started" if error is None else error_text(error),
            )
            if error is not None:
                try:
                    folder.end(outcome, EndedBy.SUITE_END)
                except OSError:
                    pass  # still full: the outcome returned (the exit status, the list of failures) holds it
        outcomes.append(outcome)
    return outcomes


def pending_trials(run_dir: str, trials: list[TrialSpec]) -> list[TrialSpec]:
    """The trials a resumed run still has to run: all but those whose summary says they ended (finished,
    diverged, or stopped by a search's scheduler). A failed or interrupted trial runs again, from its last
    checkpoint when it has one."""
    return [spec for spec in trials
            if (outcome := TrialFolder.of(run_dir, spec.trial_id).summary()) is None or outcome.status not in ENDED]


def error_text(error: BaseException) -> str:
    """An error as ``Type: message``; for Ray's wrapper of a task's error (``RayTaskError``,
    what Tune records), that of the error the trial raised (its ``cause``)."""
    cause = getattr(error, "cause", None)
    error = cause if isinstance(cause, BaseException) else error
    return "".join(traceback.format_exception_only(type(error), error)).strip()


def _error_of(run_dir: str, trial_id: str) -> str | None:
    """A failed trial's error as its driver recorded it (None when it wrote no summary)."""
    outcome = TrialFolder.of(run_dir, trial_id).summary()
    return outcome.error if outcome is not None else None


def _trial_name(trial) -> str:
    return trial.config["spec"]["trial_id"]
