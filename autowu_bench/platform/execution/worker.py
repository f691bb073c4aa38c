"""One trial's data-parallel training on one worker: Ray Train's ``train_loop_per_worker``.

Every rank runs :class:`TrialWorker`; :meth:`TrialWorker.run` is the whole loop, top to bottom. Rank 0
also holds the trial's schedule (the AutoWU controller's client, or the baseline's ``FixedSchedule``)
and its results (:class:`~autowu_bench.platform.records.trial_results.TrialResults`: the Parquet fragments,
and MLflow through :class:`~autowu_bench.platform.tracking.trial_logger.TrialLogger`).

Per step every rank sets the LR to ``plan.lr(t)`` (times each group's ``lr_scale``), trains, and keeps
the step loss on the device. At each *sync point* (where the plan hands losses over, and every epoch
end) all ranks read the buffered losses once, averaged over ranks; while AutoWU is in warmup, rank 0
hands them to the schedule and, where the plan may have changed, broadcasts the new plan, so all ranks
apply the same LR without a per-step call. A sync point returns what the loop does next
(:class:`ControllerVerdict`).

Divergence (docs/autowu.md, "Divergence and rollback"): a loss the plan calls divergent in the warmup
is handed over at once; the controller switches with reason "divergence", and all ranks restore the
newest good snapshot (model, optimizer, RNG, progress, LR trace), keep the decision and continue from
the snapshot's step under the decay. Snapshots are taken at the start and at every epoch end and the
last two are kept in memory, so a rollback does not depend on storage; the epoch-end snapshot is also
the checkpoint. The loss of step d is computed on the weights after step d - 1, so a good snapshot is
one taken at a step s < d - 1. A non-finite loss in the decay phase, or in a baseline trial, ends the
trial with status "diverged".

Restarts: Ray Train restarts the whole worker group after a worker dies (``FailureConfig``, the suite's
``resources.max_failures``); every rank then resumes from the last reported checkpoint (the schedule's
state goes back into the controller), so the rest of the run is the run that would have happened.
A failure before the first checkpoint is registered starts the trial afresh (the controller too:
``configure`` starts a new core). A resumed suite (``run_suite.py --resume``) starts a new trial driver,
whose Ray Train run picks up the same way from the checkpoint in the run's storage. Rank 0 counts the
worker-group starts in the trial folder (``attempts``) and, among them, the restarts
(``restarts``: a start that is not its driver's first followed a failure; a resume is not one),
so ``restarts`` is right however the group restarted, and after any earlier start rank 0's results skip
the steps already recorded (``TrialResults.resume``), so MLflow gets each replayed step once.
"""

from __future__ import annotations

import copy
import json
import os
import random
import socket
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import torch

from autowu_bench.platform.execution.collectives import broadcast_object, gather_objects
from autowu_bench.platform.records.files import count_up, read_count, write_atomic, write_parquet_atomic
from autowu_bench.platform.execution.train_step import LossBuffer, TrainStep, evaluate, first_divergent
from autowu_bench.platform.execution.training_state import LoopPosition, TrainingState
from autowu_bench.platform.records.outcome import EpochReport, TrialStatus
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.platform.records.trial_folder import CHECKPOINT_FILE, TrialFolder
from autowu_bench.platform.records.trial_results import TrialResults
from autowu_bench.schedulers.lr_plan import Phase, SwitchReason
from autowu_bench.schedulers.schedule import Schedule
from autowu_bench.workloads.data.sharding import batch_split_problem
from autowu_bench.workloads.optimizers import evaluation_weights

# Where the schedule no longer decides (AutoWU's decay, the baseline), the buffered losses are still
# read this often, so a loss that blew up stops the trial within this many steps, not at the epoch end.
DIVERGENCE_CHECK_STEPS = 8


class ControllerVerdict(StrEnum):
    CONTINUE = "continue"  # train on
    ROLLBACK = "rollback"  # the controller decided a divergence in these losses: restore a good snapshot
    DIVERGED = "diverged"  # a non-finite loss with no rollback left: the trial ends


@dataclass
class WorkerEnv:
    """Where a worker runs and how it reports; Ray Train's or a plain process's.

    Attributes:
        rank / world_size: this worker among the trial's workers (the process group, if any, is
            already initialised with these).
        device: the device to train on.
        trial_dir: the trial's results folder (lr_rank{r}.parquet, the results' fragments).
        report: ``report(epoch_report, checkpoint_dir_or_None)``; every rank calls it at every epoch end.
        schedule: rank 0's schedule; None on other ranks.
        results: rank 0's TrialResults, or None.
        checkpoint_dir: a checkpoint folder to resume from, or None.
        group_starts_before: worker-group starts of the trial before this trial driver started (by the
            drivers of earlier, interrupted runs of the suite).
    """

    rank: int
    world_size: int
    device: torch.device
    trial_dir: str
    report: Callable[[EpochReport, str | None], None]
    schedule: Schedule | None = None
    results: TrialResults | None = None
    checkpoint_dir: str | None = None
    group_starts_before: int = 0


class TrialWorker:
    """The training of one trial on one rank (see the module docstring for the protocol)."""

    def __init__(self, spec: TrialSpec, env: WorkerEnv) -> None:
        from autowu_bench.workloads import build_optimizer, get_workload

        self.created_at = time.time()
        self.spec = spec
        self.env = env
        self.rank = env.rank
        self.world = env.world_size
        self.device = env.device
        problem = batch_split_problem(spec.batch_size, self.world, spec.micro_batch)
        if problem is not None:
            raise ValueError(problem)
        per_worker = spec.batch_size // self.world
        micro = spec.micro_batch or per_worker

        wl = get_workload(spec.workload)
        splits = wl.load(spec.data_root, val_size=spec.val_size, train_subset=spec.train_subset, seed=spec.seed)
        self.train_loader = wl.loader(
            splits.train, batch_size=per_worker, rank=self.rank, world_size=self.world, train=True,
            seed=spec.seed, device=self.device, channels_last=spec.channels_last,
        )
        eval_batch = max(per_worker, 1024)
        self.val_loader = wl.loader(
            splits.val, batch_size=eval_batch, train=False, device=self.device, channels_last=spec.channels_last
        )
        self.test_loader = wl.loader(
            splits.test, batch_size=eval_batch, train=False, device=self.device, channels_last=spec.channels_last
        )
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training split has fewer images than one global batch of {spec.batch_size}; "
                "lower batch_size or raise train_subset"
            )

        schedule = env.schedule  # its plan first: the optimizer may depend on whether it warms up
        self.plan = broadcast_object(schedule.configure(self.steps_per_epoch, spec.epochs) if self.rank == 0 else None, self.rank)

        torch.manual_seed(spec.seed)
        random.seed(spec.seed)
        np.random.seed(spec.seed)
        model = wl.build_model().to(self.device)
        self.loss_fn = wl.loss_fn()
        self.optimizer = build_optimizer(spec.optimizer, model, lr=1e-3, weight_decay=spec.weight_decay,
                                         schedule_warms_up=self.plan.warmup_steps > 0)
        self.step_fn = TrainStep(
            model, self.optimizer, self.loss_fn, micro_batches=per_worker // micro, amp=spec.amp,
            channels_last=spec.channels_last, compile=spec.compile,
        )
        self.model = self.step_fn.module

        # LoopPosition: all of it in every snapshot and checkpoint.
        self.step = 0
        self.epoch = 0
        self.rollbacks = 0
        self.best_val_acc = float("nan")
        self.val_history: list[dict[str, float]] = []
        self.tests_logged = 0
        self.trace: list[tuple[int, float]] = []  # (step, lr) applied by this rank

        self.buffer = LossBuffer()
        self._epoch_losses: list[float] = []
        self._epoch_first = 0  # index in the trace of the epoch's first step
        self._sync_seconds = 0.0

        if env.checkpoint_dir is not None:
            # On the CPU: the RNG states must stay CPU byte tensors; the state dicts move to the device on load.
            # Plain data and tensors only (training_state.py): nothing in a checkpoint runs code when loaded.
            state = torch.load(os.path.join(env.checkpoint_dir, CHECKPOINT_FILE), map_location="cpu",
                               weights_only=True)
            self._restore(TrainingState.from_dict(state), resume=True)
        group, self.restarts = broadcast_object(_count_start(env) if self.rank == 0 else None, self.rank)
        if group > 1 and self.results is not None:
            self.results.resume()
            event = "restart" if group - env.group_starts_before > 1 else "resume"
            self.results.log_event(event, self.step, restarts=self.restarts, epoch=self.epoch)
        _note_worker(env.trial_dir, self.rank, group)

    # -- the training loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Train to the end, or to a divergence; every epoch end reports (and checkpoints)."""
        self.training_started_at = time.time()
        self.snapshots = [self._capture()]
        while self.epoch < self.spec.epochs:
            epoch_start_step, started = self.step, time.perf_counter()
            outcome = self._train_epoch()
            if outcome is ControllerVerdict.ROLLBACK:
                self._rollback()
                continue
            if outcome is ControllerVerdict.DIVERGED:
                self._finish_diverged()
                return
            self.epoch += 1
            self._end_epoch(epoch_start_step, time.perf_counter() - started)

    def _train_epoch(self) -> ControllerVerdict:
        self._sync_seconds = 0.0
        self._epoch_first = len(self.trace)
        self.train_loader.set_epoch(self.epoch)
        for x, y in self.train_loader:
            lr = self.plan.lr(self.step)
            self.buffer.append(self.step_fn(x, y, lr))
            self.step += 1
            self.trace.append((self.step, lr))
            if self.plan.hands_over_after(self.step) or self._divergence_check_due():
                outcome = self._sync()
                if outcome is not ControllerVerdict.CONTINUE:
                    return outcome
        return self._sync()

    def _divergence_check_due(self) -> bool:
        return self.plan.phase is not Phase.WARMUP and len(self.buffer) >= DIVERGENCE_CHECK_STEPS

    def _end_epoch(self, epoch_start_step: int, train_seconds: float) -> None:
        """Evaluate, report and log the epoch; snapshot and checkpoint its end."""
        val_loss, val_acc = self._evaluate(self.val_loader)
        if not val_acc <= self.best_val_acc:  # NaN-safe max
            self.best_val_acc = val_acc
        last = self.epoch == self.spec.epochs
        steps = self.step - epoch_start_step
        finite = [v for v in self._epoch_losses if v == v and abs(v) != float("inf")]
        test_loss, test_acc = self._evaluate(self.test_loader) if last else (None, None)
        report = self._epoch_report(
            TrialStatus.FINISHED if last else TrialStatus.RUNNING, val_loss, val_acc,
            lr=self.plan.lr(self.step),
            train_loss=sum(finite) / len(finite) if finite else float("nan"),
            epoch_seconds=train_seconds,
            sync_seconds=self._sync_seconds,
            images_per_second=steps * self.spec.batch_size / train_seconds if train_seconds > 0 else 0.0,
            test_loss=test_loss, test_acc=test_acc,
        )
        self.val_history.append({"epoch": self.epoch, "val_loss": val_loss, "val_acc": val_acc})
        self._log_epoch(report)
        self.snapshots = [*self.snapshots[-1:], self._report(report)]

    def _finish_diverged(self) -> None:
        """The diverged end: its final weights are evaluated like a finished trial's, so the trial counts in
        its grid point's mean (at about chance) instead of dropping out of it."""
        val_loss, val_acc = self._evaluate(self.val_loader)
        test_loss, test_acc = self._evaluate(self.test_loader)
        report = self._epoch_report(TrialStatus.DIVERGED, val_loss, val_acc, lr=float("nan"),
                                    test_loss=test_loss, test_acc=test_acc)
        if self.results is not None:
            self.results.log_event("diverged", self.step, phase=str(self.plan.phase))
        self._log_epoch(report, epoch_metrics=False)
        self._report(report)

    def _epoch_report(self, status: TrialStatus, val_loss: float, val_acc: float, **more: Any) -> EpochReport:
        """What every report carries (the trial outcome is built from the last one), plus ``more``."""
        switch_step = self.plan.switch_step
        return EpochReport(
            epoch=self.epoch, step=self.step, status=status, phase=str(self.plan.phase_at(self.step)),
            val_loss=val_loss, val_acc=val_acc, best_val_acc=self.best_val_acc,
            rollbacks=self.rollbacks, restarts=self.restarts,
            steps_per_epoch=self.steps_per_epoch, worker_created_at=self.created_at,
            training_started_at=self.training_started_at, switch_step=switch_step,
            switch_epoch=None if switch_step is None else switch_step / self.steps_per_epoch,
            switch_reason=None if self.plan.switch_reason is None else str(self.plan.switch_reason),
            decay_start_lr=self.plan.decay_start_lr, **more,
        )

    def _report(self, report: EpochReport) -> TrainingState:
        """Report with a checkpoint of the state now (returned: it is also the snapshot).

        Every report carries a checkpoint, the diverged end too: the result of Ray Train's ``fit`` holds
        the metrics of the newest checkpoint, so a final report without one would be lost
        (tests/test_grid_run.py's diverging baseline)."""
        state = self._capture()
        with tempfile.TemporaryDirectory(prefix="autowu-ckpt-") as folder:
            if self.rank == 0:
                torch.save({**state.to_dict(), "spec": self.spec.to_dict()}, os.path.join(folder, CHECKPOINT_FILE))
            self.env.report(report, folder if self.rank == 0 else None)
        return state

    # -- sync points -----------------------------------------------------------------------------

    def _sync(self) -> ControllerVerdict:
        """:meth:`_hand_over`, timed: ``sync_seconds`` per epoch is what the schedule costs the loop."""
        started = time.perf_counter()
        try:
            return self._hand_over()
        finally:
            self._sync_seconds += time.perf_counter() - started

    def _hand_over(self) -> ControllerVerdict:
        """Read the buffered losses; hand them to the schedule while it decides; detect divergence.

        Before the plan's ``next_switch`` (and with no divergent loss) rank 0 only hands the losses
        over: the plan cannot change there. Otherwise it waits for the new plan and broadcasts it.
        Every rank holds the same averaged losses and plan, so all take the same branch.
        """
        first = self.step - len(self.buffer) + 1
        values = self.buffer.take()
        self._epoch_losses.extend(values)
        if not values:
            return ControllerVerdict.CONTINUE
        if self.plan.phase is Phase.WARMUP:
            bad = first_divergent(values, self.plan.is_divergent)
            if self.rank == 0:
                self.env.schedule.observe(values if bad is None else values[: bad + 1])
            if bad is None and self.step < self.plan.next_switch:
                return ControllerVerdict.CONTINUE
            self.plan = broadcast_object(self.env.schedule.plan() if self.rank == 0 else None, self.rank)
            if self.plan.switch_reason is SwitchReason.DIVERGENCE and self.plan.divergence_step >= first:
                return ControllerVerdict.ROLLBACK
            if bad is None:
                return ControllerVerdict.CONTINUE
            values = values[bad:]  # a switch by test or fallback earlier in these losses: as below
        return ControllerVerdict.DIVERGED if first_divergent(values) is not None else ControllerVerdict.CONTINUE

    def _rollback(self) -> None:
        diverged_at = self.plan.divergence_step
        good = [state for state in self.snapshots if state.progress.step < diverged_at - 1]
        self._restore(good[-1] if good else self.snapshots[0], resume=False)
        self.rollbacks += 1
        if self.results is not None:
            self.results.log_event(
                "rollback", diverged_at, restored_step=self.step, restored_epoch=self.epoch,
                decay_start_lr=self.plan.decay_start_lr,
            )

    # -- state: one capture for the rollback snapshot and the checkpoint -------------------------

    def _capture(self) -> TrainingState:
        """The training state now, self-contained (``TrainingState``). Every rank calls it at the same step."""
        with evaluation_weights(self.optimizer):
            model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            optimizer = copy.deepcopy(self.optimizer.state_dict())
        progress = LoopPosition(step=self.step, epoch=self.epoch, rollbacks=self.rollbacks,
                            best_val_acc=self.best_val_acc, val_history=list(self.val_history),
                            tests_logged=self.tests_logged)
        return TrainingState(model=model, optimizer=optimizer, rng=gather_objects(_rng_state(self.device)),
                             progress=progress, trace=list(self.trace), plan=self.plan,
                             schedule=self.env.schedule.state_dict() if self.rank == 0 else None)

    def _restore(self, state: TrainingState, *, resume: bool) -> None:
        """Back to a captured state. A rollback keeps the schedule's decision (the plan, the tests
        logged, the rollback count); a resume takes everything from the checkpoint."""
        self.model.load_state_dict(state.model)
        # The optimizer keeps its tensors: a copy, so the snapshot survives the steps that follow.
        self.optimizer.load_state_dict(copy.deepcopy(state.optimizer))
        rng = state.rng
        _set_rng_state(rng[self.rank] if self.rank < len(rng) else rng[0], self.device)
        progress = state.progress
        self.step, self.epoch = progress.step, progress.epoch
        self.best_val_acc = progress.best_val_acc
        self.val_history = list(progress.val_history)
        self.trace = list(state.trace)
        self._epoch_losses = []
        if resume:
            self.rollbacks, self.tests_logged = progress.rollbacks, progress.tests_logged
            self.plan = state.plan
            if self.rank == 0:
                self.env.schedule.load_state_dict(state.schedule)

    # -- evaluation and logging ------------------------------------------------------------------

    def _evaluate(self, loader) -> tuple[float, float]:
        with evaluation_weights(self.optimizer):
            return evaluate(
                self.model, loader, self.loss_fn, rank=self.rank, world_size=self.world,
                amp=self.spec.amp, channels_last=self.spec.channels_last,
            )

    @property
    def results(self) -> TrialResults | None:
        return self.env.results

    def _log_epoch(self, report: EpochReport, epoch_metrics: bool = True) -> None:
        """Rank 0: step curves, epoch metrics and new AutoWU tests to the results; every rank: LR trace."""
        self._write_trace()
        lrs = [lr for _, lr in self.trace[self._epoch_first:]]
        losses, self._epoch_losses = self._epoch_losses, []
        if self.rank != 0 or self.results is None:
            return
        n = min(len(lrs), len(losses))
        first = self.step - len(lrs) + 1
        self.results.log_steps(list(range(first, first + n)), lrs[:n], losses[:n])
        if epoch_metrics:
            keys = ("val_loss", "val_acc", "epoch_seconds", "sync_seconds", "images_per_second",
                    "test_loss", "test_acc")
            values = {k: getattr(report, k) for k in keys if getattr(report, k) is not None}
            # "train_loss" is the per-step metric; the epoch's mean gets a name of its own.
            values["epoch_train_loss"] = report.train_loss
            self.results.log_epoch(self.epoch, self.step, values)
        tests = self.env.schedule.tests_since(self.tests_logged)
        if tests:
            self.results.log_tests(tests)
            self.tests_logged += len(tests)
        self.results.flush()

    def _write_trace(self) -> None:
        """This rank's applied LRs so far, ``lr_rank<r>.parquet`` (equal on every rank by construction)."""
        steps, lrs = zip(*self.trace) if self.trace else ((), ())
        table = pa.table({"step": pa.array(steps, pa.int64()), "lr": pa.array(lrs, pa.float64())})
        write_parquet_atomic(table, TrialFolder(self.env.trial_dir).lr_trace_path(self.rank))


def _count_start(env: WorkerEnv) -> tuple[int, int]:
    """Rank 0: count this worker-group start in the trial folder; (starts, restarts) so far."""
    folder = TrialFolder(env.trial_dir)
    group = count_up(folder.attempts_path)
    restarts = folder.restarts_path
    return group, count_up(restarts) if group - env.group_starts_before > 1 else read_count(restarts)


def _note_worker(trial_dir: str, rank: int, group: int) -> None:
    """Write this rank's ``worker-rank<r>.json``: its process, host and Ray node in the worker group ``group``
    (which process and node to look at when a rank fails, or to stop from outside)."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None  # None: a test's loop
    record = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "node_id": node, "group": group,
              "at": time.time()}
    write_atomic(TrialFolder(trial_dir).worker_path(rank), json.dumps(record) + "\n")


def _rng_state(device: torch.device) -> dict[str, Any]:
    name, key, *rest = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": [name, key.tolist(), *rest]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), *rest))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def rank0_schedule(spec: TrialSpec, controller: Any) -> Schedule:
    """The schedule rank 0 drives: the trial's AutoWU controller (its actor handle, from the driver)
    or the baseline's fixed schedule at the trial's grid point."""
    from autowu_bench.platform.execution.controller import ControllerClient
    from autowu_bench.schedulers.baseline import FixedSchedule

    if spec.kind is TrialKind.AUTOWU:
        if controller is None:
            raise ValueError(f"AutoWU trial {spec.trial_id!r}: its config has no controller handle ('controller')")
        return ControllerClient(controller)
    if spec.peak_lr is None or spec.warmup_epochs is None:
        raise ValueError(
            f"baseline trial {spec.trial_id!r} needs peak_lr and warmup_epochs, got "
            f"peak_lr={spec.peak_lr!r}, warmup_epochs={spec.warmup_epochs!r}"
        )
    return FixedSchedule(peak_lr=spec.peak_lr, warmup_epochs=spec.warmup_epochs, decay=spec.decay or "cosine",
                         decay_power=spec.decay_power or 2.0)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train V2 entry point: ``config`` holds ``spec`` (a TrialSpec dict), ``trial_dir``,
    ``tracking_uri``, ``run_id`` (the trial's MLflow child run, or None), ``controller`` (the AutoWU
    controller's actor handle; None for a baseline) and ``group_starts_before`` (``WorkerEnv``'s)."""
    import ray.train

    ctx = ray.train.get_context()
    spec = TrialSpec.from_dict(config["spec"])
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(spec.cpus_per_worker)))
    if spec.use_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
    else:
        device = torch.device("cpu")

    schedule = results = None
    if rank == 0:
        from autowu_bench.platform.tracking.trial_logger import TrialLogger

        schedule = rank0_schedule(spec, config.get("controller"))
        logger = TrialLogger(config.get("tracking_uri"), config.get("run_id"), config["trial_dir"])
        results = TrialResults(config["trial_dir"], logger=logger)

    def report(epoch_report: EpochReport, folder: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(epoch_report.to_metrics(), checkpoint=checkpoint)

    def worker(checkpoint_dir: str | None) -> TrialWorker:
        env = WorkerEnv(rank, world, device, config["trial_dir"], report, schedule, results, checkpoint_dir,
                        group_starts_before=config.get("group_starts_before", 0))
        return TrialWorker(spec, env)

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        trial_worker = worker(None)
    else:
        with checkpoint.as_directory() as folder:
            trial_worker = worker(folder)
    trial_worker.run()
    if results is not None:
        results.close()  # a bounded wait for MLflow; what is left stays in the trial's spool
