"""A trial's outcome: the one schema of a trial's ``summary.json`` (written by ``records.trial_folder``) and that the
results tables and the head-to-head table read; and the workers' epoch report it is built from, the one
shape that Ray Train and Tune carry as a metrics dict (``ray.train.report``) and that the searchers and
ASHA read (``val_acc`` by ``epoch``). Fields and statuses are listed in docs/results.md."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping

from autowu_bench.platform.records.spec import TrialSpec


class TrialStatus(StrEnum):
    PENDING = "pending"  # not started yet (the progress line only)
    RUNNING = "running"  # what the workers report while epochs remain
    FINISHED = "finished"  # every epoch trained and evaluated
    DIVERGED = "diverged"  # the loss blew up where no rollback was left: a result, not an error
    STOPPED = "stopped"  # ended early by a Tune scheduler (ASHA) of a search: a result, not an error
    FAILED = "failed"  # an error ended the trial (or it never started)
    MISSING = "missing"  # no summary in the run folder (the results tables only)


# A trial whose summary says one of these has ended: a resumed run keeps it (a failed or interrupted one
# runs again, from its last checkpoint; a search's failed one is replayed as failed: execution/search.py).
ENDED = frozenset({TrialStatus.FINISHED, TrialStatus.DIVERGED, TrialStatus.STOPPED})
# How the error of an interrupted trial began in the summaries written before ``TrialOutcome.interrupted``:
# they read back as interrupted.
_OLD_INTERRUPTED_PREFIX = "interrupted: "


@dataclass(frozen=True)
class EpochReport:
    """One report of a trial's workers (every rank reports the same one).

    Attributes:
        epoch / step: epochs and optimizer steps done.
        status: ``running`` while epochs remain; ``finished`` at the last epoch's report; ``diverged``
            at the report that ends a diverged trial.
        val_loss / val_acc: this epoch's validation (a diverged end's: its final weights').
        best_val_acc: the best validation accuracy so far (NaN before any).
        phase: the schedule's phase at ``step`` (``warmup``, ``decay``...).
        rollbacks / restarts: divergence rollbacks and worker-group restarts so far.
        steps_per_epoch: optimizer steps in one epoch.
        worker_created_at / training_started_at: ``time.time()`` when rank 0's worker was created and
            when its loop began: the outcome's start-up split.
        switch_step / switch_epoch / switch_reason / decay_start_lr: AutoWU's decision, once taken.
        lr: the LR at ``step`` (NaN at a diverged end).
        train_loss / epoch_seconds / sync_seconds / images_per_second: the epoch's mean training loss,
            its training time, the part of it spent at sync points, and its throughput.
        test_loss / test_acc: at the trial's last report only (finished or diverged).
    """

    epoch: int
    step: int
    status: TrialStatus
    val_loss: float | None = None
    val_acc: float | None = None
    best_val_acc: float | None = None
    phase: str | None = None
    rollbacks: int = 0
    restarts: int = 0
    steps_per_epoch: int | None = None
    worker_created_at: float | None = None
    training_started_at: float | None = None
    switch_step: int | None = None
    switch_epoch: float | None = None
    switch_reason: str | None = None
    decay_start_lr: float | None = None
    lr: float | None = None
    train_loss: float | None = None
    epoch_seconds: float | None = None
    sync_seconds: float | None = None
    images_per_second: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TrialStatus(self.status))

    @property
    def ended(self) -> bool:
        """Whether this report ends the trial: its last epoch's, or a divergence's."""
        return self.status in (TrialStatus.FINISHED, TrialStatus.DIVERGED)

    def to_metrics(self) -> dict[str, Any]:
        """The report as ``ray.train.report`` takes it: plain values, the status as its string."""
        metrics = dataclasses.asdict(self)
        metrics["status"] = str(self.status)
        return metrics

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any] | None) -> "EpochReport | None":
        """The report in Ray Train's or Tune's result metrics (which add keys of their own, ignored); None
        when they hold none (a trial that never reported)."""
        if not metrics or "epoch" not in metrics:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in metrics.items() if k in names})


def device_hours(spec: TrialSpec, wall_seconds: float) -> float:
    """Wall time x the devices the trial's workers hold: GPUs, or CPUs on a CPU-only trial."""
    per_worker = (spec.gpus_per_worker or 1.0) if spec.use_gpu else spec.cpus_per_worker
    return wall_seconds * spec.num_workers * per_worker / 3600.0


@dataclass
class TrialOutcome:
    """What a trial came to, from its last report. Accuracies and losses are None when not measured;
    ``final_*`` for a trial that ended (finished, or diverged: its final weights, however bad)."""

    trial_id: str
    arm: str
    kind: str
    status: TrialStatus
    epochs_done: int = 0
    steps: int = 0
    steps_per_epoch: int | None = None
    final_val_acc: float | None = None
    best_val_acc: float | None = None
    final_val_loss: float | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    switch_step: int | None = None
    switch_epoch: float | None = None
    switch_reason: str | None = None
    decay_start_lr: float | None = None
    rollbacks: int = 0
    restarts: int = 0  # worker-group restarts from a checkpoint (Ray Train FailureConfig)
    wall_seconds: float = 0.0
    device_hours: float = 0.0
    # Where the start-up went: the driver (imports, MLflow run, controller actor), Ray Train (its
    # controller, placement group, worker processes), the workers (data, model).
    startup_seconds: float | None = None
    driver_setup_seconds: float | None = None
    train_startup_seconds: float | None = None
    worker_setup_seconds: float | None = None
    error: str | None = None
    # Failed because the suite was stopped under it (a signal, Ray going down): not a fault of the trial,
    # so a resumed run continues it from its checkpoint.
    interrupted: bool = False
    mlflow_run_id: str | None = None  # the trial's MLflow child run, when tracked (the report links it)
    ended_at: float | None = None  # time.time() when the trial ended: the grid's completion order

    @classmethod
    def from_report(
        cls, spec: TrialSpec, report: EpochReport | None, *, status: TrialStatus, started: float, ended: float,
        fit_started: float | None = None, error: str | None = None, interrupted: bool = False,
        mlflow_run_id: str | None = None,
    ) -> "TrialOutcome":
        """The outcome from the workers' last ``report`` (None when none came), timed from the driver's
        ``started`` to ``ended`` (``time.time()`` values)."""
        wall = ended - started
        timing = {"trial_id": spec.trial_id, "arm": spec.arm, "kind": spec.kind, "status": status,
                  "wall_seconds": wall, "device_hours": device_hours(spec, wall), "error": error,
                  "interrupted": interrupted, "mlflow_run_id": mlflow_run_id, "ended_at": ended}
        if report is None:
            return cls(**timing)
        # A diverged trial's final weights were evaluated too: it counts in its grid point's mean.
        evaluated = status in (TrialStatus.FINISHED, TrialStatus.DIVERGED)
        startup = {}
        if report.training_started_at is not None and report.worker_created_at is not None \
                and fit_started is not None:
            startup = {
                "startup_seconds": report.training_started_at - started,
                "driver_setup_seconds": fit_started - started,
                "train_startup_seconds": report.worker_created_at - fit_started,
                "worker_setup_seconds": report.training_started_at - report.worker_created_at,
            }
        return cls(
            **timing, **startup, epochs_done=report.epoch, steps=report.step,
            steps_per_epoch=report.steps_per_epoch,
            final_val_acc=report.val_acc if evaluated else None,
            best_val_acc=_finite_or_none(report.best_val_acc),
            final_val_loss=report.val_loss if evaluated else None,
            test_acc=report.test_acc, test_loss=report.test_loss,
            switch_step=report.switch_step, switch_epoch=report.switch_epoch,
            switch_reason=report.switch_reason, decay_start_lr=report.decay_start_lr,
            rollbacks=report.rollbacks, restarts=report.restarts,
        )

    @property
    def failed_by_error(self) -> bool:
        """Failed with an error of its own, not because the suite was stopped under it."""
        return self.status is TrialStatus.FAILED and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["status"] = str(self.status)
        if values["switch_reason"] is not None:
            values["switch_reason"] = str(values["switch_reason"])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialOutcome":
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        if "interrupted" not in known:  # a summary of before the field: the error's prefix said it
            known["interrupted"] = (known.get("error") or "").startswith(_OLD_INTERRUPTED_PREFIX)
        return cls(**{**known, "status": TrialStatus(known["status"])})


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
