"""A search arm as a Ray Tune job: Tune's own searcher (grid / random through ``BasicVariantGenerator``,
TPE through ``OptunaSearch``, HyperOpt through ``HyperOptSearch``) and optionally Tune's ASHA over the
arm's search space, each proposed point one ordinary trial (``trial_driver.run_trial``).

One job per arm, workload, batch size and seed (``expansion.search_jobs``). Every searcher and ASHA read
``val_acc`` (validation accuracy, reported each epoch; never the test set), in mode max. A trial's id
is ``<job>_t<NNN>``, numbered in the order Tune creates the trials, e.g.
``baseline-tpe_fmnist-mlp_b4096_s0_t003``.

Reproducible: the searcher's seed is the suite's ``search.seed``. Grid and random proposals depend on
the seed only. TPE and HyperOpt also learn from results, so they run in batches of ``max_concurrent``
(``ConcurrencyLimiter(batch=True)``): each batch is proposed once the one before has completed, so
the same results (the platform's trials are deterministic) give the same points whatever the timing.

A trial stopped by ASHA: Tune stops its actor, which tears down the trial's ``TorchTrainer`` (its Ray
Train controller and workers are the actor's own). Its driver cannot write its summary, so
:class:`SearchCallback` (a Tune callback in the driver's process) writes it: status ``stopped``, the
epochs it reported, its wall time from its driver's start to the stop (device-hours counted for what it
ran), and ends its MLflow child run (through the trial's spool) as KILLED with ``summary.status = stopped``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from autowu_bench.platform.records.outcome import ENDED, EpochReport, TrialOutcome, TrialStatus
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder
from autowu_bench.platform.suite.expansion import SearchJob
from autowu_bench.platform.suite.schema import Range
from autowu_bench.platform.tracking.client import RunStatus
from autowu_bench.platform.tracking.lifecycle import close_trial, spooled_run_id
from autowu_bench.platform.execution.trial_driver import run_trial
from autowu_bench.platform.execution.tuner_builder import build_tuner

METRIC, MODE = "val_acc", "max"
TIME_ATTR = "epoch"
# How long the Tune loop waits for MLflow to take a trial's end that a callback writes; what is left
# stays in the trial's spool, sent at the suite's end (or by --sync).
CALLBACK_WAIT_SECONDS = 5.0


def param_space(job: SearchJob) -> dict[str, Any]:
    """Tune's search space: a range is (log-)uniform (``randint`` / ``lograndint`` when integer); a list
    is a ``choice``, or a ``grid_search`` for the grid searcher."""
    from ray import tune

    space = {}
    for key, value in job.search.space.items():
        if isinstance(value, Range):
            if value.integer:
                low, high = int(value.low), int(value.high) + 1  # Tune's upper bound is exclusive
                space[key] = tune.lograndint(low, high) if value.log else tune.randint(low, high)
            else:
                space[key] = tune.loguniform(value.low, value.high) if value.log else tune.uniform(value.low, value.high)
        elif job.search.searcher == "grid":
            space[key] = tune.grid_search(list(value))
        else:
            space[key] = tune.choice(list(value))
    return space


def concurrency(job: SearchJob, default: int) -> int:
    return max(1, min(job.search.max_concurrent or default, job.search.trials))


def searcher(job: SearchJob, max_concurrent: int):
    """Tune's search algorithm for the job, seeded with ``search.seed``."""
    s = job.search
    if s.searcher in ("grid", "random"):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=s.seed, max_concurrent=max_concurrent)
    from ray.tune.search import ConcurrencyLimiter

    initial = s.initial_points or max(1, s.trials // 3)
    if s.searcher == "tpe":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=initial))
    else:
        from ray.tune.search.hyperopt import HyperOptSearch

        alg = HyperOptSearch(n_initial_points=initial, random_state_seed=s.seed)
    return ConcurrencyLimiter(alg, max_concurrent=max_concurrent, batch=True)


def scheduler(job: SearchJob):
    """ASHA on the epochs (the trial's own ``epoch`` metric), or Tune's FIFO without one.

    ``max_t`` is one past the last epoch, so that ASHA's own end (it stops every trial at ``max_t``)
    never comes at a trial's final report; a rung can still fall on the last epoch (4 epochs, grace 1, factor 2: rungs 1, 2, 4), and a
    trial stopped there has made its final report: :class:`SearchCallback` then records it as it ended."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    asha = job.search.scheduler
    if asha is None:
        return FIFOScheduler()
    return ASHAScheduler(time_attr=TIME_ATTR, max_t=job.base.epochs + 1, grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor)


def trial_name(job: SearchJob, trial: Any) -> str:
    """Tune's ``trial_name_creator`` of a job: ``<job>_t001``, ... in the order Tune creates the trials.

    The number is the one Tune puts first in the trial's ``experiment_tag`` (its own count of created
    trials: from 0 in ``BasicVariantGenerator``, from 1 in ``SearchGenerator``), so every copy of the
    job's callbacks (Tune copies them) names a trial alike."""
    n = int(str(trial.experiment_tag).split("_", 1)[0])
    return job.trial_id(n + 1 if job.search.searcher in ("grid", "random") else n)


def run_search_trial(config: dict[str, Any], *, job: SearchJob, run_dir: str, tracking_uri: str | None,
                     parent_run_id: str | None) -> None:
    """Tune function trainable of a search trial: its spec from the proposed ``config``, then the
    ordinary trial driver."""
    from ray import tune

    spec = job.spec(config, tune.get_context().get_trial_name())
    earlier = TrialFolder.of(run_dir, spec.trial_id).summary()
    if earlier is not None and (earlier.status in ENDED or earlier.failed_by_error):
        for report in recorded_reports(run_dir, spec, earlier):
            tune.report(report.to_metrics())
        if earlier.status is TrialStatus.FAILED:
            raise RecordedFailure(f"search trial {spec.trial_id} failed in the run being resumed and is replayed "
                                  f"as failed, not trained again (a new run of the suite trains it): {earlier.error}")
        return
    run_trial({"spec": spec.to_dict()}, run_dir=run_dir, tracking_uri=tracking_uri, parent_run_id=parent_run_id)


class SearchReplayError(RuntimeError):
    """A resumed search's searcher proposed another point under a trial id than the run did the first time."""


class RecordedFailure(RuntimeError):
    """What a resumed search's trial that failed with its own error the first time raises instead of training:
    Tune records it as failed again, so the searcher learns what it learned then (TPE a failed trial, not
    the result a second try might give) and proposes the same points after it."""


def recorded_reports(run_dir: str, spec: TrialSpec, outcome: TrialOutcome) -> list[EpochReport]:
    """A search trial that ended in an earlier run of the folder (``--resume``), as Tune saw it then:
    its epochs' reports again, from the trial's records, and its final one (a diverged trial's from its
    outcome: that report has no epoch row), so that the searcher and the scheduler learn what they learned
    the first time and propose the same points after it (the trial does not train again). A failed trial
    made no final report: its reports are its epochs' (its summary counts none: the error came before a
    final report), and :class:`RecordedFailure` is what it ends with."""
    from autowu_bench.platform.records import tables

    failed = outcome.status is TrialStatus.FAILED
    epochs = tables.fragments_frame(run_dir, "epochs", spec.trial_id)
    reports = [EpochReport(epoch=int(row.epoch), step=int(row.step), status=TrialStatus.RUNNING,
                           val_acc=float(row.val_acc), val_loss=float(row.val_loss))
               for row in epochs.itertuples() if failed or row.epoch <= outcome.epochs_done]
    if failed:
        return reports
    if outcome.status is TrialStatus.DIVERGED or not reports:
        reports.append(EpochReport(epoch=outcome.epochs_done, step=outcome.steps, status=outcome.status,
                                   val_acc=outcome.final_val_acc, val_loss=outcome.final_val_loss))
    else:
        reports[-1] = dataclasses.replace(reports[-1], status=outcome.status)
    return reports


def stopped_outcome(spec: TrialSpec, last: EpochReport | None, folder: TrialFolder, now: float) -> TrialOutcome:
    """The outcome of a trial that Tune ended before its driver could (ASHA): from its last report;
    ``finished`` / ``diverged`` if that report was its last, else ``stopped``."""
    driver = folder.driver_note()
    status = last.status if last is not None and last.ended else TrialStatus.STOPPED
    started = now if driver.started is None else driver.started
    return TrialOutcome.from_report(spec, last, status=status, started=started, ended=now,
                                    fit_started=driver.fit_started, mlflow_run_id=spooled_run_id(folder.path))


def last_report(trial: Any) -> EpochReport | None:
    """A Tune trial's last report (None before its first)."""
    return EpochReport.from_metrics(getattr(trial, "last_result", None))


class SearchCallback:
    """Tune callback methods of a search job (made a ``tune.Callback`` by :func:`run_search`): names
    the trials, hands each new trial's spec to ``on_new`` as it starts (the suite run records it in
    ``trial_specs.json``), checks a resumed run's trials against ``known`` and writes the summary of a
    trial that Tune stopped.

    Args:
        known: the run's trials so far (a resumed run's search trials among them), read only.
        on_new: called once with each trial's spec that ``known`` does not hold, as Tune starts it.
    """

    def __init__(self, job: SearchJob, *, run_dir: str, tracking_uri: str | None, known: Sequence[TrialSpec],
                 on_new: Callable[[TrialSpec], None]) -> None:
        self.job, self.run_dir, self.tracking_uri = job, run_dir, tracking_uri
        self.known, self.on_new = known, on_new
        self.mine: dict[str, TrialSpec] = {}

    def name(self, trial: Any) -> str:
        return trial_name(self.job, trial)

    def spec_of(self, trial: Any) -> TrialSpec:
        name = self.name(trial)
        if name not in self.mine:
            self.mine[name] = self.job.spec(trial.config, name)
        return self.mine[name]

    def spec_dict(self, trial: Any) -> dict[str, Any]:
        return self.spec_of(trial).to_dict()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        spec = self.spec_of(trial)
        known = next((s for s in self.known if s.trial_id == spec.trial_id), None)
        if known is None:
            self.on_new(spec)
        elif known != spec:  # a resumed run's trial: its point must be the one its records hold
            raise SearchReplayError(
                f"search trial {spec.trial_id}: the searcher proposed another point than in the run being resumed "
                f"(peak_lr {known.peak_lr}, warmup {known.warmup_epochs}, autowu {known.autowu.to_dict()} then; peak_lr "
                f"{spec.peak_lr}, warmup {spec.warmup_epochs}, autowu {spec.autowu.to_dict()} now): the search cannot be "
                "resumed; start a new run of the suite")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial whose actor died (e.g. killed for memory) before its driver wrote a summary: listed in
        ``trial_specs.json`` and summarised as failed, so that the tables count it and a resumed run
        replays it as failed. A summary older than the driver's start is an earlier run's (the trial was
        interrupted then): replaced, or a resumed run would train again a trial this run saw fail."""
        self.on_trial_start(iteration, trials, trial)
        spec = self.spec_of(trial)
        folder = TrialFolder.of(self.run_dir, spec.trial_id)
        now = time.time()
        started = folder.driver_note().started
        outcome = TrialOutcome.from_report(
            spec, last_report(trial), status=TrialStatus.FAILED,
            started=now if started is None else started, ended=now, mlflow_run_id=spooled_run_id(folder.path),
            error="the trial's process died before its driver wrote a summary (see Ray's logs)",
        )
        if folder.end(outcome, EndedBy.PROCESS_DIED):
            close_trial(self.tracking_uri, folder.path, RunStatus.FAILED, outcome.to_dict(),
                        wait=CALLBACK_WAIT_SECONDS)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial Tune completed: its driver's summary when it wrote one of a result; else (Tune stopped it
        before its driver could, or its driver took the teardown of Tune's stop for a failure: Tune completed
        it, so it did not fail) the summary of its last report."""
        spec = self.spec_of(trial)
        folder = TrialFolder.of(self.run_dir, spec.trial_id)
        outcome = stopped_outcome(spec, last_report(trial), folder, time.time())
        if not folder.end(outcome, EndedBy.TUNE_COMPLETED):
            return  # the driver's summary of a result stands: the trial ran to its end
        # Stopped at a rung on its last epoch, the trial ended as it would have: its run ends FINISHED.
        status = RunStatus.KILLED if outcome.status is TrialStatus.STOPPED else RunStatus.FINISHED
        close_trial(self.tracking_uri, folder.path, status, outcome.to_dict(), wait=CALLBACK_WAIT_SECONDS)


def run_search(job: SearchJob, *, run_dir: str, tracking_uri: str | None, parent_run_id: str | None,
               known: Sequence[TrialSpec], on_new: Callable[[TrialSpec], None], default_concurrency: int,
               verbose: bool = False, progress_interval: float = 60.0) -> list[TrialSpec]:
    """Run one search job through its own ``tune.Tuner``; returns the trials it ran. Each trial that
    ``known`` (the run's trials so far) does not hold goes to ``on_new`` as it starts (``SearchCallback``):
    ``on_new`` and the objects it holds must pickle, as Tune keeps a copy of its callbacks."""
    from ray import tune

    from autowu_bench.platform.execution.progress import progress_callback
    from autowu_bench.platform.execution.ray_logs import ray_log_path

    run_dir = os.path.abspath(run_dir)

    class TuneSearchCallback(SearchCallback, tune.Callback):  # ray imported here, not at module load
        pass

    callback = TuneSearchCallback(job, run_dir=run_dir, tracking_uri=tracking_uri, known=known, on_new=on_new)
    limit = concurrency(job, default_concurrency)
    grid = job.search.searcher == "grid"
    tuner = build_tuner(
        run_search_trial, run_dir=run_dir, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
        bound={"job": job}, name=f"search-{job.name}", param_space=param_space(job),
        trial_name=functools.partial(trial_name, job),
        callbacks=[callback, progress_callback(job.planned(), verbose=verbose, interval=progress_interval,
                                           spec_of=callback.spec_dict, log_path=ray_log_path(run_dir))],
        metric=METRIC, mode=MODE, search_alg=searcher(job, limit), scheduler=scheduler(job),
        num_samples=1 if grid else job.search.trials, reuse_actors=False,
    )
    print(f"search {job.name}: {job.search.label}, {job.search.trials} trials, up to {limit} at once, "
          f"seed {job.search.seed}", flush=True)
    try:
        tuner.fit()
    except Exception as exc:  # noqa: BLE001 - Tune may wrap what the SearchCallback raised: that is what counts
        cause = exc
        while cause is not None and not isinstance(cause, SearchReplayError):
            cause = cause.__cause__ or cause.__context__
        raise (cause or exc) from None
    return list(callback.mine.values())

