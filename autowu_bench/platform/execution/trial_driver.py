"""One trial end to end, as a Ray Tune function trainable (the Ray Train V2 pattern).

Tune runs :func:`run_trial` holding no CPU, so the trial's Train workers get the cores. Its
:class:`TrialDriver` opens the
trial's MLflow child run, starts the AutoWU controller actor (AutoWU trials) and passes its handle to
the workers in their config, builds and fits a ``TorchTrainer`` whose workers run
:func:`~autowu_bench.platform.execution.worker.train_loop_per_worker`, forwards their reports to Tune with
``TuneReportCallback``, and hands the trial's outcome to its ``TrialFolder`` (``summary.json``) however
the fit ended, but for Tune's own stop (ASHA), whose summary the search's callback writes (when even
that write fails, a full disk, the trial's error is what it raises: Tune records it and the runner
takes it from there).

Tracking never decides a trial's outcome: the child run is opened and closed through the trial's spool
(``tracking.lifecycle.open_trial`` / ``close_trial``), each waiting a bounded time for MLflow and never raising for
it; what MLflow did not take stays spooled and is sent later (the suite's end, ``--sync``, ``--resume``).

It also notes its start in the trial folder (``driver.json``, ``TrialFolder.note_driver``): what a Tune
callback needs to write the summary of a trial that Tune's scheduler stopped (``platform/execution/search.py``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from autowu_bench.platform.records.files import read_count
from autowu_bench.platform.records.outcome import EpochReport, TrialOutcome, TrialStatus
from autowu_bench.platform.records.run_manifest import interrupted_since
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.platform.records.trial_folder import CHECKPOINTS_KEPT, EndedBy, TrialFolder


def stopped_by_tune() -> bool:
    """Whether Tune is ending this trial (a search's ASHA stopped it): Tune removes a stopped trial's
    placement group, and with it the trial's Ray Train controller, so the fit fails under the trial
    (``ActorDiedError: ... its placement group was removed``). A failure of the trial's own leaves the group
    in place. (Tune's stop event in its session is no signal: the group goes before Tune's ``stop`` call
    sets it.) False outside a placement group (a trial run without Tune)."""
    import ray
    from ray.util.placement_group import get_current_placement_group, placement_group_table

    if not ray.is_initialized():
        return False
    group = get_current_placement_group()
    return group is not None and placement_group_table(group).get("state") == "REMOVED"


def run_trial(config: dict[str, Any], *, run_dir: str, tracking_uri: str | None,
              parent_run_id: str | None) -> None:
    """Tune function trainable: the trial ``config["spec"]`` (a TrialSpec dict), end to end (see the
    module docstring); up to ``spec.max_failures`` worker-group restarts, each from the last checkpoint."""
    TrialDriver(TrialSpec.from_dict(config["spec"]), run_dir, tracking_uri, parent_run_id).run()


class TrialDriver:
    """One run of a trial's driver: :meth:`run` fits the trial's ``TorchTrainer`` and records how it ended."""

    def __init__(self, spec: TrialSpec, run_dir: str, tracking_uri: str | None, parent_run_id: str | None) -> None:
        self.started = time.time()
        self.spec, self.run_dir, self.tracking_uri, self.parent_run_id = spec, run_dir, tracking_uri, parent_run_id
        self.folder = TrialFolder.of(run_dir, spec.trial_id)
        self.run_id: str | None = None
        self.fit_started: float | None = None

    def run(self) -> None:
        """Fit, then write the summary: ``finished`` / ``diverged`` from the final report, or ``failed`` with
        the error that ended the fit (raised on, for Tune to record; an interrupt of the suite marks it so).
        Tune's scheduler ending the trial (ASHA) is not an error: the summary is the search's ``SearchCallback``'s
        to write (platform/execution/search.py)."""
        from autowu_bench.platform.execution.controller import stop_controller

        self.folder.create()
        controller = None
        try:
            self.folder.note_driver(started=self.started)
            controller = self._start_controller()
            report = self._fit(controller)
        except (Exception, KeyboardInterrupt) as exc:  # not SystemExit: Tune's stop (stopped_by_tune)
            if not stopped_by_tune():
                self._record_failure("".join(traceback.format_exception_only(type(exc), exc)).strip())
            raise
        finally:
            if controller is not None:
                stop_controller(controller)
        if report is None or not report.ended:
            # Only a finished or diverged report ends a trial; anything else did not end as it should.
            last = "none" if report is None else f"{str(report.status)!r} at epoch {report.epoch}"
            error = RuntimeError(
                f"trial {self.spec.trial_id}: Ray Train returned without a final report (last report: {last} "
                f"of {self.spec.epochs} epochs); see the trial's Ray Train log under {self.run_dir}/ray")
            self._record_failure(f"RuntimeError: {error}", report)
            raise error
        self._record_end(report)

    def _start_controller(self):
        """Open the trial's MLflow child run (through its spool) and, for AutoWU, start its controller actor."""
        from autowu_bench.platform.execution.controller import controller_name, start_controller
        from autowu_bench.platform.tracking.lifecycle import open_trial

        self.run_id = open_trial(self.tracking_uri, self.parent_run_id, self.spec, self.folder.path)
        if self.spec.kind is not TrialKind.AUTOWU:
            return None
        return start_controller(self.spec.autowu, decay=self.spec.decay, seed=self.spec.seed,
                                name=controller_name(self.spec.trial_id), max_restarts=self.spec.max_failures)

    def _fit(self, controller) -> EpochReport | None:
        """Build and fit the trial's ``TorchTrainer``; the workers' last report (None if none came)."""
        import ray.train
        from ray.train.torch import TorchConfig, TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback

        from autowu_bench.platform.execution.worker import train_loop_per_worker

        spec = self.spec
        resources = {"CPU": spec.cpus_per_worker}
        if spec.use_gpu:
            resources["GPU"] = spec.gpus_per_worker or 1.0
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "spec": spec.to_dict(), "trial_dir": str(self.folder.path), "tracking_uri": self.tracking_uri,
                "run_id": self.run_id, "controller": controller,
                # Worker-group starts by the drivers of earlier, interrupted runs of the suite: not restarts.
                "group_starts_before": read_count(self.folder.attempts_path),
            },
            torch_config=TorchConfig(backend="nccl" if spec.use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=spec.num_workers, use_gpu=spec.use_gpu, resources_per_worker=resources
            ),
            run_config=ray.train.RunConfig(
                name=spec.trial_id,
                storage_path=os.path.join(os.path.abspath(self.run_dir), "ray", "train"),
                callbacks=[TuneReportCallback()],
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            ),
        )
        self.fit_started = time.time()
        self.folder.note_driver(fit_started=self.fit_started)
        return EpochReport.from_metrics(trainer.fit().metrics)

    def _outcome(self, report: EpochReport | None, status: TrialStatus, error: str | None = None,
                 interrupted: bool = False) -> TrialOutcome:
        from autowu_bench.platform.tracking.lifecycle import spooled_run_id

        return TrialOutcome.from_report(
            self.spec, report, status=status, started=self.started, ended=time.time(),
            fit_started=self.fit_started, error=error, interrupted=interrupted,
            mlflow_run_id=self.run_id or spooled_run_id(self.folder.path),
        )

    def _record_end(self, report: EpochReport) -> None:
        """The trial's end: its summary (a failed write, a full disk, raises: Tune records the trial's error)
        and its MLflow run FINISHED."""
        from autowu_bench.platform.tracking.client import RunStatus
        from autowu_bench.platform.tracking.lifecycle import close_trial

        outcome = self._outcome(report, report.status)
        self.folder.end(outcome, EndedBy.DRIVER)
        close_trial(self.tracking_uri, self.folder.path, RunStatus.FINISHED, outcome.to_dict())

    def _record_failure(self, error: str, report: EpochReport | None = None) -> None:
        """A failed trial's summary and MLflow run; one that Ray stopping under it failed (the suite was
        interrupted) is marked so, and its run KILLED: a resumed run continues it."""
        from autowu_bench.platform.tracking.client import RunStatus
        from autowu_bench.platform.tracking.lifecycle import close_trial

        interrupted = interrupted_since(self.run_dir, self.started)
        if interrupted is not None:  # Ray stopping under the trial, not a fault of the trial
            error = f"{interrupted} stopped the suite ({error}); --resume runs the trial again"
        outcome = self._outcome(report, TrialStatus.FAILED, error, interrupted=interrupted is not None)
        try:
            self.folder.end(outcome, EndedBy.DRIVER)
        except OSError as write_error:  # a full disk: the trial's own error, raised on, is what Tune records
            print(f"trial {self.spec.trial_id}: its summary was not written ({write_error}); it failed with: {error}",
                  file=sys.stderr, flush=True)
        close_trial(self.tracking_uri, self.folder.path,
                    RunStatus.FAILED if interrupted is None else RunStatus.KILLED, outcome.to_dict())
