"""Run a suite's trials: Ray start/attach, one Tune function trainable per trial, each fitting a TorchTrainer.

Layout of one trial (Ray Train V2 pattern): Tune runs ``_trial_driver`` (holding no CPU, so the
trial's Train workers get the cores); the driver starts the trial's AutoWU controller actor (AutoWU
trials), opens the MLflow child run, builds and fits a ``TorchTrainer`` whose workers run
:func:`~autowu_bench.platform.worker.train_loop_per_worker`, forwards their reports to Tune with
``TuneReportCallback``, and writes the trial's outcome (``summary.json``) in the trial folder. Concurrency is bounded by
``max_concurrent`` (by default as many trials as the cluster's CPUs, or GPUs, hold at once).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import traceback
from contextlib import contextmanager
from typing import Any, Iterator

from autowu_bench.platform import processes
from autowu_bench.platform.outcome import TrialOutcome, TrialStatus
from autowu_bench.platform.mlflow_env import MLFLOW_ENV
from autowu_bench.platform.spec import TrialSpec

# Less start-up work per trial and less noise: no Train/Tune metrics exporters, no state tracking.
_RAY_ENV = {
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune's per-trial JSON/CSV/TensorBoard result files: the platform writes its own results.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_DEDUP_LOGS": "0",
    # The Train controller polls its workers this often (default 2 s): it paces start-up and the end.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # A busy 2-core machine can take more than the default 60 s to start a worker group.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600",
    # Trial drivers and workers log to MLflow: they need its environment before they import it.
    **MLFLOW_ENV,
}

_SETUP_HOOK = "autowu_bench.platform.runner.quiet_ray_logs"


class _DropStateApiNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "State API may be temporarily unavailable" not in record.getMessage()


def quiet_ray_logs() -> None:
    """Ray worker setup hook: Train's INFO lines and the state-API retries (the dashboard, which serves
    that API, is off here) would drown the one progress line per epoch; warnings and errors still show.

    It also pins RAY_ADDRESS to this worker's own cluster: Ray Train's placement-group cleaner looks the
    cluster up by address and fails ("multiple active Ray instances") when another Ray runs on the machine.
    """
    import ray

    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    train_logger = logging.getLogger("ray.train")
    train_logger.setLevel(logging.WARNING)
    for name in ("ray.train", "ray.train.v2._internal.execution.controller.placement_group_cleaner"):
        logging.getLogger(name).addFilter(_DropStateApiNoise())


@contextmanager
def ray_session(
    address: str | None, *, num_cpus: int | None = None, object_store_memory: int | None = None
) -> Iterator[None]:
    """Ray for the duration of a suite.

    Args:
        address: None starts a new local Ray instance, never attaching to another one on the machine
            (the object store bounded, the dashboard off); "auto" or "ray://..." joins a cluster.
        num_cpus: CPUs of the local instance (default: all of the machine's).
        object_store_memory: bytes of the local object store (default 300 MB: trials pass little data).
    """
    import ray

    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    # A value already in the environment wins, so each of these can be tuned per run.
    runtime_env = {"env_vars": {k: os.environ[k] for k in _RAY_ENV}, "worker_process_setup_hook": _SETUP_HOOK}
    if address is None:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            object_store_memory=object_store_memory or 300 * 1024**2,
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=True,
            logging_level="WARNING",
            runtime_env=runtime_env,
        )
    else:
        ray.init(address=address, logging_level="WARNING", runtime_env=runtime_env)
    try:
        yield
    finally:
        # Noted before shutdown, while they are still below the local instance's processes.
        started = processes.descendants(_local_ray_pids()) if address is None else set()
        ray.shutdown()
        killed = processes.kill_survivors(started)
        if killed:
            print(f"stopped {len(killed)} Ray process(es) left running after shutdown: pids "
                  f"{sorted(pid for pid, _ in killed)}", file=sys.stderr, flush=True)


def _local_ray_pids() -> list[int]:
    """The processes this driver's local Ray instance started (raylet, GCS, ...): Ray's private API, so
    nothing when it changes."""
    import ray

    try:
        infos = ray._private.worker._global_node.all_processes.values()
        return [info.process.pid for group in infos for info in group]
    except AttributeError:
        return []


def cluster_problems(trials: list[TrialSpec], *, can_grow: bool = False) -> list[str]:
    """What the running cluster cannot give the trials (call inside :func:`ray_session`).

    A GPU trial on a cluster with no GPU at all is always a problem. ``can_grow`` (a joined cluster,
    whose autoscaler may add nodes while trials wait) skips the checks against what it holds now.
    """
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    problems = []
    for spec in trials:
        need_cpu = spec.num_workers * spec.cpus_per_worker
        need_gpu = spec.num_workers * (spec.gpus_per_worker or (1.0 if spec.use_gpu else 0.0))
        if spec.use_gpu and gpus == 0:
            problems.append(
                f"trial {spec.trial_id}: use_gpu=true but the cluster has no GPUs; set resources.use_gpu "
                "to false or join a cluster with GPUs (--address; if its GPU nodes are still starting, "
                "wait until `ray status` lists them)"
            )
            continue
        if can_grow:
            continue
        if need_gpu > gpus:
            problems.append(
                f"trial {spec.trial_id}: needs {need_gpu:g} GPUs ({spec.num_workers} workers) but the "
                f"cluster has {gpus:g}; lower resources.workers_per_trial"
            )
        if need_cpu > cpus:
            problems.append(
                f"trial {spec.trial_id}: needs {need_cpu:g} CPUs ({spec.num_workers} workers x "
                f"{spec.cpus_per_worker:g}) but the cluster has {cpus:g}; lower resources.workers_per_trial or "
                "resources.cpus_per_worker"
            )
    return problems


def default_concurrency(trials: list[TrialSpec]) -> int:
    """How many trials the cluster holds at once, by the largest trial's CPUs (or GPUs)."""
    import ray

    resources = ray.cluster_resources()
    fits = []
    for spec in trials:
        if spec.use_gpu:
            per_trial = spec.num_workers * (spec.gpus_per_worker or 1.0)
            fits.append(resources.get("GPU", 0.0) / per_trial)
        per_trial = spec.num_workers * spec.cpus_per_worker
        if per_trial > 0:
            fits.append(resources.get("CPU", 0.0) / per_trial)
    return max(1, int(math.floor(min(fits)))) if fits else 1


def trial_dir(run_dir: str, trial_id: str) -> str:
    return os.path.join(run_dir, "trials", trial_id)


def _trial_driver(config: dict[str, Any], *, run_dir: str, tracking_uri: str | None,
                  parent_run_id: str | None, max_failures: int) -> None:
    """Tune function trainable: one trial (``config["spec"]``, a TrialSpec dict), end to end (see the
    module docstring)."""
    started = time.time()
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from autowu_bench.platform.controller import start_controller, stop_controller
    from autowu_bench.platform.tracking import end_trial_run, start_trial_run
    from autowu_bench.platform.worker import train_loop_per_worker

    spec = TrialSpec.from_dict(config["spec"])
    folder = trial_dir(run_dir, spec.trial_id)
    os.makedirs(folder, exist_ok=True)
    run_id = controller = fit_started = None
    metrics: dict[str, Any] = {}
    try:  # from here on, whatever fails is recorded in the trial's summary (and its MLflow run, if any)
        run_id = start_trial_run(tracking_uri, parent_run_id, spec)
        controller = start_controller(spec.autowu_kwargs()) if spec.kind == "autowu" else None
        resources = {"CPU": spec.cpus_per_worker}
        if spec.use_gpu:
            resources["GPU"] = spec.gpus_per_worker or 1.0
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "spec": spec.to_dict(), "trial_dir": folder, "tracking_uri": tracking_uri, "run_id": run_id,
                "controller": controller,
            },
            torch_config=TorchConfig(backend="nccl" if spec.use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=spec.num_workers, use_gpu=spec.use_gpu, resources_per_worker=resources
            ),
            run_config=ray.train.RunConfig(
                name=spec.trial_id,
                storage_path=os.path.join(os.path.abspath(run_dir), "ray", "train"),
                callbacks=[TuneReportCallback()],
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                failure_config=ray.train.FailureConfig(max_failures=max_failures),
            ),
        )
        fit_started = time.time()
        result = trainer.fit()
        metrics = dict(result.metrics or {})
        outcome = TrialOutcome.from_report(
            spec, metrics, status=TrialStatus(metrics.get("status", TrialStatus.FAILED)), started=started,
            ended=time.time(), fit_started=fit_started,
        )
        outcome.write(folder)
        end_trial_run(tracking_uri, run_id, "FINISHED", outcome.to_dict())
    except BaseException as exc:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        outcome = TrialOutcome.from_report(
            spec, metrics, status=TrialStatus.FAILED, started=started, ended=time.time(),
            fit_started=fit_started, error=error,
        )
        outcome.write(folder)
        if run_id is not None:
            end_trial_run(tracking_uri, run_id, "FAILED", outcome.to_dict())
        raise
    finally:
        if controller is not None:
            stop_controller(controller)


def _progress_callback():
    from ray import tune

    class EpochLines(tune.Callback):
        """One line per reported epoch per trial, instead of Tune's tables."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            trial_id = _trial_name(trial)
            acc = result.get("val_acc")
            test = result.get("test_acc")
            lr = result.get("lr")
            line = (
                f"[{trial_id}] epoch {result.get('epoch')} phase {result.get('phase')} "
                f"lr {lr:.4g} val_acc {acc:.4f}" if isinstance(lr, float) and isinstance(acc, float)
                else f"[{trial_id}] epoch {result.get('epoch')} status {result.get('status')}"
            )
            if test is not None:
                line += f" test_acc {test:.4f} ({result.get('status')})"
            print(line, flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            print(f"[{_trial_name(trial)}] FAILED", flush=True)

    return EpochLines()


def run_trials(
    trials: list[TrialSpec],
    *,
    run_dir: str,
    tracking_uri: str | None,
    parent_run_id: str | None,
    max_concurrent: int | None = None,
    max_failures: int = 0,
) -> list[TrialOutcome]:
    """Run every trial through Ray Tune (inside :func:`ray_session`); returns their outcomes in order.

    Args:
        trials: the suite's trials.
        run_dir: the invocation's results folder; trial folders go to ``run_dir/trials/<trial_id>``
            and Tune/Train storage (checkpoints) to ``run_dir/ray``.
        tracking_uri / parent_run_id: MLflow; None disables tracking.
        max_concurrent: trials at once (default: as many as the cluster's resources hold).
        max_failures: Ray Train worker-group restarts per trial (each resumes from the last checkpoint).

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
    trainable = tune.with_parameters(
        _trial_driver, run_dir=run_dir, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
        max_failures=max_failures,
    )
    # The driver holds no CPU, so the trial's Train workers get the cores. Tune refuses an all-zero
    # request; one byte of the "memory" resource (present on every node) is a request that costs nothing.
    trainable = tune.with_resources(trainable, {"CPU": 0, "memory": 1})
    tuner = tune.Tuner(
        trainable,
        param_space={"spec": tune.grid_search([t.to_dict() for t in trials])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=os.path.join(run_dir, "ray"),
            verbose=0,
            callbacks=[_progress_callback()],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )
    print(f"running {len(trials)} trials, up to {concurrency} at once", flush=True)
    # With Tune's result files off, its end-of-run summary would warn that it cannot read them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()
    outcomes = []
    for spec in trials:
        outcome = TrialOutcome.read(trial_dir(run_dir, spec.trial_id))
        if outcome is None:
            now = time.time()
            outcome = TrialOutcome.from_report(spec, {}, status=TrialStatus.FAILED, started=now, ended=now,
                                               error="the trial never started")
        outcomes.append(outcome)
    return outcomes


def _trial_name(trial) -> str:
    return trial.config["spec"]["trial_id"]
