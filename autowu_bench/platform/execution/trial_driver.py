"""One trial end to end, as a Ray Tune function trainable (the Ray Train V2 pattern).

Tune runs :func:`run_trial` holding no CPU, so the trial's Train workers get the cores. It opens the
trial's MLflow child run, starts the AutoWU controller actor (AutoWU trials) and passes its handle to
the workers in their config, builds and fits a ``TorchTrainer`` whose workers run
:func:`~autowu_bench.platform.execution.worker.train_loop_per_worker`, forwards their reports to Tune with
``TuneReportCallback``, and writes the trial's outcome (``summary.json``) in the trial folder,
whatever happens (when even that write fails, a full disk, the trial's error is what it raises: Tune
records it and the runner takes it from there).

Tracking never decides a trial's outcome: the child run is opened and closed through the trial's spool
(``tracking.lifecycle.open_trial`` / ``close_trial``), each waiting a bounded time for MLflow and never raising for
it; what MLflow did not take stays spooled and is sent later (the suite's end, ``--sync``, ``--resume``).

It also keeps ``driver.json`` (its start time) in the trial folder: what a Tune callback needs to
write the summary of a trial that Tune's scheduler stopped (``platform/execution/search.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from autowu_bench.platform.records.files import read_count, write_atomic
from autowu_bench.platform.records.outcome import INTERRUPTED, TrialOutcome, TrialStatus
from autowu_bench.platform.records.run_record import interrupted_since
from autowu_bench.platform.records.spec import TrialKind, TrialSpec

CHECKPOINTS_KEPT = 2  # per trial, in Ray Train's storage under the run folder (the free-disk check counts them)
DRIVER_FILE = "driver.json"


def trial_dir(run_dir: str, trial_id: str) -> str:
    return os.path.join(run_dir, "trials", trial_id)


def read_json(path: str) -> dict[str, Any]:
    """A small JSON file's mapping; empty when it is absent or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _note(folder: str, **values: Any) -> None:
    path = os.path.join(folder, DRIVER_FILE)
    write_atomic(path, json.dumps({**read_json(path), **values}))


def _stopped_by_tune(exc: BaseException) -> bool:
    """Whether Tune is stopping this trial (ASHA cut it short): Tune sets its session's stop event, then a
    report exits the trial with SystemExit, or the trial's placement group goes and its Train controller
    dies under it. Ray's private API (ray.train._internal.session): False where it changes."""
    if isinstance(exc, SystemExit):
        return True
    try:
        from ray.train._internal.session import get_session
    except ImportError:
        return False
    event = getattr(get_session(), "stop_event", None)
    return event is not None and event.is_set()


def run_trial(config: dict[str, Any], *, run_dir: str, tracking_uri: str | None,
              parent_run_id: str | None) -> None:
    """Tune function trainable: the trial ``config["spec"]`` (a TrialSpec dict), end to end (see the
    module docstring); up to ``spec.max_failures`` worker-group restarts, each from the last checkpoint."""
    started = time.time()
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from autowu_bench.platform.execution.controller import (
        controller_name,
        start_controller,
        stop_controller,
    )
    from autowu_bench.platform.tracking.client import RunStatus
    from autowu_bench.platform.tracking.lifecycle import close_trial, open_trial, spooled_run_id
    from autowu_bench.platform.execution.worker import ATTEMPTS_FILE, train_loop_per_worker

    spec = TrialSpec.from_dict(config["spec"])
    folder = trial_dir(run_dir, spec.trial_id)
    os.makedirs(folder, exist_ok=True)
    # Worker-group starts by the drivers of earlier, interrupted runs of the suite: not restarts.
    starts_before = read_count(os.path.join(folder, ATTEMPTS_FILE))
    run_id = controller = fit_started = None
    finished = False
    metrics: dict[str, Any] = {}
    try:  # from here on, whatever fails is recorded in the trial's summary (and its MLflow run, if any)
        _note(folder, started=started)
        run_id = open_trial(tracking_uri, parent_run_id, spec, folder)
        if spec.kind is TrialKind.AUTOWU:
            controller = start_controller(spec.autowu_kwargs(), name=controller_name(spec.trial_id),
                                          max_restarts=spec.max_failures)
        resources = {"CPU": spec.cpus_per_worker}
        if spec.use_gpu:
            resources["GPU"] = spec.gpus_per_worker or 1.0
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "spec": spec.to_dict(), "trial_dir": folder, "tracking_uri": tracking_uri, "run_id": run_id,
                "controller": controller, "group_starts_before": starts_before,
            },
            torch_config=TorchConfig(backend="nccl" if spec.use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=spec.num_workers, use_gpu=spec.use_gpu, resources_per_worker=resources
            ),
            run_config=ray.train.RunConfig(
                name=spec.trial_id,
                storage_path=os.path.join(os.path.abspath(run_dir), "ray", "train"),
                callbacks=[TuneReportCallback()],
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            ),
        )
        fit_started = time.time()
        _note(folder, fit_started=fit_started)
        result = trainer.fit()
        metrics = dict(result.metrics or {})
        status = metrics.get("status")
        if status not in (TrialStatus.FINISHED, TrialStatus.DIVERGED):
            # Only those two end a trial; anything else is a trial that did not end as it should.
            raise RuntimeError(
                f"trial {spec.trial_id}: Ray Train returned without a final report (last status {status!r} at "
                f"epoch {metrics.get('epoch')} of {spec.epochs}); see the trial's Ray Train log under {run_dir}/ray"
            )
        outcome = TrialOutcome.from_report(
            spec, metrics, status=TrialStatus(status), started=started,
            ended=time.time(), fit_started=fit_started, mlflow_run_id=run_id or spooled_run_id(folder),
        )
        outcome.write(folder)
        finished = True
        close_trial(tracking_uri, folder, RunStatus.FINISHED, outcome.to_dict())
    except BaseException as exc:
        if finished:
            raise  # the trial's summary says finished: nothing after it (an interrupt) turns it into a failure
        if _stopped_by_tune(exc):
            raise  # a scheduler's stop is not a failure (a search's SearchBook writes the trial's summary)
        earlier = TrialOutcome.read(folder)
        if earlier is not None and earlier.status is not TrialStatus.FAILED and (earlier.ended_at or 0) >= started:
            # Tune's scheduler stopped this trial and the search's callback wrote its summary (stopped, or
            # finished when the stop came at its last epoch's report): platform/execution/search.py
            raise
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        interrupted = interrupted_since(run_dir, started)
        if interrupted is not None:  # Ray stopping under the trial, not a fault of the trial
            error = f"{INTERRUPTED}{interrupted} stopped the suite ({error}); --resume runs the trial again"
        outcome = TrialOutcome.from_report(
            spec, metrics, status=TrialStatus.FAILED, started=started, ended=time.time(),
            fit_started=fit_started, error=error, mlflow_run_id=run_id or spooled_run_id(folder),
        )
        try:
            outcome.write(folder)
        except OSError as write_error:  # a full disk: the trial's own error, raised below, is what Tune records
            print(f"trial {spec.trial_id}: its summary was not written ({write_error}); it failed with: {error}",
                  file=sys.stderr, flush=True)
        close_trial(tracking_uri, folder, RunStatus.FAILED if interrupted is None else RunStatus.KILLED,
                    outcome.to_dict())
        raise
    finally:
        if controller is not None:
            stop_controller(controller)
