"""One trial's data-parallel training on one worker: Ray Train's ``train_loop_per_worker``.

Every rank runs :class:`TrialWorker`. Rank 0 also owns the schedule source (the trial's AutoWU
controller, or the fixed baseline plan) and the :class:`~autowu_bench.platform.tracking.TrialRecorder`.

Per step every rank sets the LR to ``plan.lr(t)`` (times each group's ``lr_scale``), trains, and keeps
the all-reduced step loss on the device. At each *sync point* (the plan's ``next_decision`` and every
epoch end) all ranks read the buffered losses once; while AutoWU is in warmup, rank 0 sends them to
the controller and broadcasts the new plan, so all ranks apply the same LR without a per-step call.

Divergence (AUTOWU.md, "What the reference gets wrong"): a loss the plan calls divergent (non-finite,
or above the controller's explosion threshold) in the warmup makes rank 0 send the losses up to it;
the controller switches with reason "divergence", and all ranks restore model, optimizer and RNG
from the newest good snapshot, keep the decision and continue from the snapshot's step under the
decay. Snapshots are taken at the start and at every epoch end and kept in memory (the last two), so
rollback does not depend on storage. The loss of step d is computed on the weights after step d - 1,
so a divergent loss at step d condemns those weights too: a good snapshot is one taken at a step
s < d - 1 (the one-epoch-older snapshot when the last epoch ended right before the divergence).
A non-finite loss in the decay phase, or in a baseline trial, ends the trial with status "diverged"
(a finite but large loss there is left alone: the decay is already lowering the LR).
"""

from __future__ import annotations

import copy
import os
import random
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from autowu_bench.platform.loop import LossBuffer, TrainStep, evaluate, first_divergent, is_distributed
from autowu_bench.platform.spec import TrialSpec

CHECKPOINT_FILE = "state.pt"


class _Rollback(Exception):
    """Raised inside an epoch when the controller decided a divergence: restore a good snapshot."""


class _Diverged(Exception):
    """Raised inside an epoch on a non-finite loss with no rollback left: the trial ends."""


class FixedSchedule:
    """The baseline's schedule source: one plan that never changes, with the controller's methods."""

    def __init__(self, spec: TrialSpec) -> None:
        if spec.peak_lr is None or spec.warmup_epochs is None:
            raise ValueError(
                f"baseline trial {spec.trial_id!r} needs peak_lr and warmup_epochs, got "
                f"peak_lr={spec.peak_lr!r}, warmup_epochs={spec.warmup_epochs!r}"
            )
        self.spec = spec
        self._plan = None

    def setup(self, steps_per_epoch: int, total_epochs: int):
        from autowu_bench.schedulers import baseline_plan

        self._plan = baseline_plan(
            steps_per_epoch, total_epochs, peak_lr=self.spec.peak_lr, warmup_epochs=self.spec.warmup_epochs
        )
        return self._plan

    def plan(self):
        return self._plan

    def status(self) -> dict[str, Any]:
        return {"phase": "fixed", "decide_at": self._plan.next_decision, "test_interval": None,
                "switch_step": None, "switch_reason": None, "decay_start_lr": None, "divergence_step": None}

    def feed(self, losses: list[float]) -> None:
        pass

    def advance_with_status(self, losses: list[float]):
        return self._plan, self.status()

    def tests_since(self, index: int) -> list[dict[str, Any]]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class WorkerEnv:
    """Where a worker runs and how it reports; Ray Train's or a plain process's.

    Attributes:
        rank / world_size: this worker among the trial's workers (the process group, if any, is
            already initialised with these).
        device: the device to train on.
        trial_dir: the trial's results folder (lr_rank{r}.parquet, the recorder's fragments).
        report: ``report(metrics, checkpoint_dir_or_None)``; every rank calls it at every epoch end.
        schedule: rank 0's schedule source (controller client or FixedSchedule); None on other ranks.
        recorder: rank 0's TrialRecorder, or None.
        checkpoint_dir: a checkpoint folder to resume from, or None.
    """

    rank: int
    world_size: int
    device: torch.device
    trial_dir: str
    report: Callable[[dict[str, Any], str | None], None]
    schedule: Any = None
    recorder: Any = None
    checkpoint_dir: str | None = None


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _broadcast(obj: Any, rank: int) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(obj: Any, world_size: int) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


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
        if spec.batch_size % self.world:
            raise ValueError(
                f"batch_size={spec.batch_size} is not divisible by num_workers={self.world}; "
                "pick a batch size that is a multiple of the worker count"
            )
        per_worker = spec.batch_size // self.world
        micro = spec.micro_batch or per_worker
        if per_worker % micro:
            raise ValueError(
                f"micro_batch={spec.micro_batch} does not divide the per-worker batch {per_worker}; "
                "use a divisor of batch_size / num_workers"
            )

        wl = get_workload(spec.workload)
        self.workload = wl
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
        self.total_steps = self.steps_per_epoch * spec.epochs

        torch.manual_seed(spec.seed)
        random.seed(spec.seed)
        np.random.seed(spec.seed)
        model = wl.build_model().to(self.device)
        self.loss_fn = wl.loss_fn()
        self.optimizer = build_optimizer(spec.optimizer, model, lr=1e-3, weight_decay=spec.weight_decay)
        self.step_fn = TrainStep(
            model, self.optimizer, self.loss_fn, micro_batches=per_worker // micro, amp=spec.amp,
            channels_last=spec.channels_last, compile=spec.compile,
        )
        self.model = self.step_fn.module

        plan = env.schedule.setup(self.steps_per_epoch, spec.epochs) if self.rank == 0 else None
        self.plan = _broadcast(plan, self.rank)
        self.status: dict[str, Any] = _broadcast(env.schedule.status() if self.rank == 0 else None, self.rank)

        # Progress, all of it in the snapshot / checkpoint.
        self.step = 0
        self.epoch = 0
        self.rollbacks = 0
        self.best_val_acc = float("nan")
        self.val_history: list[dict[str, float]] = []
        self.tests_logged = 0
        self.trace: list[tuple[int, float]] = []  # (step, lr) applied by this rank
        self.outcome = "running"

        self.buffer = LossBuffer()
        self._epoch_lrs: list[float] = []
        self._epoch_losses: list[float] = []

        if env.checkpoint_dir is not None:
            self._resume(env.checkpoint_dir)
        self.snapshots = [self._take_snapshot()]

    # -- snapshot / checkpoint -------------------------------------------------------------------

    def _progress(self) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": self.epoch, "rollbacks": self.rollbacks,
            "best_val_acc": self.best_val_acc, "val_history": list(self.val_history),
            "tests_logged": self.tests_logged,
        }

    def _take_snapshot(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "rng": _rng_state(self.device),
            "progress": self._progress(),
            "trace_len": len(self.trace),
        }

    def _restore_snapshot(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
        _set_rng_state(snap["rng"], self.device)
        progress = snap["progress"]
        self.step, self.epoch = progress["step"], progress["epoch"]
        self.best_val_acc = progress["best_val_acc"]
        self.val_history = list(progress["val_history"])
        del self.trace[snap["trace_len"]:]

    def _write_checkpoint(self, folder: str) -> None:
        rng = _gather(_rng_state(self.device), self.world)
        if self.rank != 0:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "progress": self._progress(),
            "schedule": self.env.schedule.state_dict(),
            "plan": self.plan,
            "status": self.status,
            "spec": self.spec.to_dict(),
        }
        torch.save(state, os.path.join(folder, CHECKPOINT_FILE))

    def _resume(self, folder: str) -> None:
        state = torch.load(os.path.join(folder, CHECKPOINT_FILE), map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        _set_rng_state(rng[self.rank if self.rank < len(rng) else 0], self.device)
        progress = state["progress"]
        self.step, self.epoch = progress["step"], progress["epoch"]
        self.rollbacks = progress["rollbacks"]
        self.best_val_acc = progress["best_val_acc"]
        self.val_history = list(progress["val_history"])
        self.tests_logged = progress["tests_logged"]
        self.plan, self.status = state["plan"], state["status"]
        if self.rank == 0:
            self.env.schedule.load_state_dict(state["schedule"])
        path = self._trace_path()
        if os.path.exists(path):
            table = pq.read_table(path).to_pydict()
            self.trace = [(s, lr) for s, lr in zip(table["step"], table["lr"]) if s <= self.step]

    def _trace_path(self) -> str:
        return os.path.join(self.env.trial_dir, f"lr_rank{self.rank}.parquet")

    def _write_trace(self) -> None:
        steps, lrs = zip(*self.trace) if self.trace else ((), ())
        table = pa.table({"step": pa.array(steps, pa.int64()), "lr": pa.array(lrs, pa.float64())})
        tmp = self._trace_path() + ".tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self._trace_path())

    # -- the protocol at sync points -------------------------------------------------------------

    @property
    def _live(self) -> bool:
        """True while the controller still decides (AutoWU in warmup)."""
        return self.status["phase"] == "warmup"

    def _sync(self) -> None:
        """:meth:`_sync_losses`, timed: ``sync_seconds`` per epoch is what the schedule costs the loop."""
        start = time.perf_counter()
        try:
            self._sync_losses()
        finally:
            self._sync_seconds += time.perf_counter() - start

    def _sync_losses(self) -> None:
        """Read the buffered losses; hand them to the controller while in warmup; detect divergence.

        A test point before ``decide_at`` only feeds the controller (no wait, no broadcast: the plan
        cannot change there); ``decide_at`` and any divergent loss wait for the controller's plan and
        status, which rank 0 broadcasts. Every rank holds the same all-reduced losses and status, so
        all take the same branch.
        """
        first = self.step - len(self.buffer) + 1
        values = self.buffer.take()
        self._epoch_losses.extend(values)
        if not values:
            return
        if self._live:
            bad = first_divergent(values, self.plan.is_divergent)
            losses = values if bad is None else values[: bad + 1]
            if bad is None and self.step < self.status["decide_at"]:
                if self.rank == 0:
                    self.env.schedule.feed(losses)
                return
            plan, status = self.env.schedule.advance_with_status(losses) if self.rank == 0 else (None, None)
            self.plan, self.status = _broadcast((plan, status), self.rank)
            if self.status["switch_reason"] == "divergence" and self.status["divergence_step"] >= first:
                raise _Rollback()
            if bad is None:
                return
            # A divergent loss after a switch by test or fallback inside this batch: treat as below.
            values = values[bad:]
        if first_divergent(values) is not None:
            raise _Diverged()

    def _at_sync_point(self) -> bool:
        """After this step: the plan's decision point, or (in warmup) one of the controller's test points."""
        if self.step == self.plan.next_decision or self.step == self.status.get("decide_at"):
            return True
        interval = self.status.get("test_interval")
        return self._live and interval is not None and self.step % interval == 0

    def _rollback(self) -> None:
        diverged_at = self.status["divergence_step"]
        good = [snap for snap in self.snapshots if snap["progress"]["step"] < diverged_at - 1]
        self._restore_snapshot(good[-1] if good else self.snapshots[0])
        self.rollbacks += 1
        self._epoch_lrs, self._epoch_losses = [], []
        if self.recorder is not None:
            self.recorder.log_event(
                "rollback", diverged_at, restored_step=self.step, restored_epoch=self.epoch,
                decay_start_lr=self.status["decay_start_lr"],
            )

    @property
    def recorder(self):
        return self.env.recorder

    # -- training --------------------------------------------------------------------------------

    def _train_epoch(self) -> None:
        self._sync_seconds = 0.0
        self.train_loader.set_epoch(self.epoch)
        for x, y in self.train_loader:
            lr = self.plan.lr(self.step)
            loss = self.step_fn(x, y, lr)
            self.step += 1
            self.trace.append((self.step, lr))
            self._epoch_lrs.append(lr)
            self.buffer.append(loss)
            if self._at_sync_point():
                self._sync()
        self._sync()

    def run(self) -> dict[str, Any]:
        """Train to the end (or divergence); returns the final metrics (also reported)."""
        metrics: dict[str, Any] = {}
        self.training_started_at = time.time()
        while self.epoch < self.spec.epochs:
            epoch_start_step = self.step
            start = time.perf_counter()
            try:
                self._train_epoch()
            except _Rollback:
                self.buffer.take()
                self._rollback()
                continue
            except _Diverged:
                self.buffer.take()
                self.outcome = "diverged"
                break
            train_seconds = time.perf_counter() - start
            self.epoch += 1
            metrics = self._end_epoch(epoch_start_step, train_seconds)
        if self.outcome == "diverged":
            metrics = self._finish_diverged()
        return metrics

    def _end_epoch(self, epoch_start_step: int, train_seconds: float) -> dict[str, Any]:
        start = time.perf_counter()
        val_loss, val_acc = evaluate(
            self.model, self.val_loader, self.loss_fn, rank=self.rank, world_size=self.world,
            amp=self.spec.amp, channels_last=self.spec.channels_last,
        )
        if not val_acc <= self.best_val_acc:  # NaN-safe max
            self.best_val_acc = val_acc
        last = self.epoch == self.spec.epochs
        steps = self.step - epoch_start_step
        finite = [v for v in self._epoch_losses if v == v and abs(v) != float("inf")]
        metrics: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "phase": self._phase(),
            "lr": self.plan.lr(self.step),
            "train_loss": sum(finite) / len(finite) if finite else float("nan"),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "best_val_acc": self.best_val_acc,
            "epoch_seconds": train_seconds,
            "sync_seconds": self._sync_seconds,
            "images_per_second": steps * self.spec.batch_size / train_seconds if train_seconds > 0 else 0.0,
            "rollbacks": self.rollbacks,
            "status": "finished" if last else "running",
            "steps_per_epoch": self.steps_per_epoch,
            "worker_created_at": self.created_at,
            "training_started_at": self.training_started_at,
            **self._switch_metrics(),
        }
        self.val_history.append({"epoch": self.epoch, "val_loss": val_loss, "val_acc": val_acc})
        if last:
            metrics["test_loss"], metrics["test_acc"] = self._test()
        self._log_epoch(metrics)
        metrics["eval_seconds"] = time.perf_counter() - start
        self.snapshots = [*self.snapshots[-1:], self._take_snapshot()]
        self._report(metrics, checkpoint=True)
        return metrics

    def _finish_diverged(self) -> dict[str, Any]:
        test_loss, test_acc = self._test()
        metrics = {
            "epoch": self.epoch, "step": self.step, "phase": "diverged", "lr": float("nan"),
            "val_loss": float("nan"), "val_acc": float("nan"), "best_val_acc": self.best_val_acc,
            "test_loss": test_loss, "test_acc": test_acc, "rollbacks": self.rollbacks,
            "status": "diverged", "steps_per_epoch": self.steps_per_epoch, **self._switch_metrics(),
        }
        if self.recorder is not None:
            self.recorder.log_event("diverged", self.step, phase=self.status["phase"])
        self._log_epoch(metrics, epoch_metrics=False)
        self._report(metrics, checkpoint=False)
        return metrics

    def _test(self) -> tuple[float, float]:
        return evaluate(
            self.model, self.test_loader, self.loss_fn, rank=self.rank, world_size=self.world,
            amp=self.spec.amp, channels_last=self.spec.channels_last,
        )

    def _phase(self) -> str:
        if self.status["phase"] != "fixed":
            return self.status["phase"]
        return "warmup" if self.step < self.plan.warmup_steps else "decay"

    def _switch_metrics(self) -> dict[str, Any]:
        switch_step = self.status["switch_step"]
        return {
            "switch_step": switch_step,
            "switch_epoch": None if switch_step is None else switch_step / self.steps_per_epoch,
            "switch_reason": self.status["switch_reason"],
            "decay_start_lr": self.status["decay_start_lr"],
        }

    def _log_epoch(self, metrics: dict[str, Any], epoch_metrics: bool = True) -> None:
        """Rank 0: step curves, epoch metrics and new AutoWU tests to the recorder; every rank: LR trace."""
        self._write_trace()
        lrs, losses = self._epoch_lrs, self._epoch_losses
        self._epoch_lrs, self._epoch_losses = [], []
        if self.rank != 0 or self.recorder is None:
            return
        n = min(len(lrs), len(losses))
        first = self.step - len(lrs) + 1
        self.recorder.log_steps(list(range(first, first + n)), lrs[:n], losses[:n])
        if epoch_metrics:
            keys = ("val_loss", "val_acc", "epoch_seconds", "sync_seconds", "images_per_second",
                    "test_loss", "test_acc")
            values = {k: metrics[k] for k in keys if k in metrics}
            # "train_loss" is the per-step metric; the epoch's mean gets a name of its own.
            values["epoch_train_loss"] = metrics["train_loss"]
            self.recorder.log_epoch(self.epoch, self.step, values)
        tests = self.env.schedule.tests_since(self.tests_logged)
        if tests:
            self.recorder.log_tests(tests)
            self.tests_logged += len(tests)
        self.recorder.flush()

    def _report(self, metrics: dict[str, Any], *, checkpoint: bool) -> None:
        if not checkpoint:
            self.env.report(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="autowu-ckpt-") as folder:
            self._write_checkpoint(folder)
            self.env.report(metrics, folder if self.rank == 0 else None)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train V2 entry point: ``config`` holds ``spec`` (a TrialSpec dict), ``trial_dir``,
    ``tracking_uri`` and ``run_id`` (the trial's MLflow child run, or None)."""
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

    schedule = recorder = None
    if rank == 0:
        if spec.kind == "autowu":
            from autowu_bench.platform.controller import connect

            schedule = connect(spec.trial_id)
        else:
            schedule = FixedSchedule(spec)
        from autowu_bench.platform.tracking import TrialRecorder

        recorder = TrialRecorder(config.get("tracking_uri"), config.get("run_id"), config["trial_dir"])

    def report(metrics: dict[str, Any], folder: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint)

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            env = WorkerEnv(rank, world, device, config["trial_dir"], report, schedule, recorder, folder)
            worker = TrialWorker(spec, env)
    else:
        env = WorkerEnv(rank, world, device, config["trial_dir"], report, schedule, recorder, None)
        worker = TrialWorker(spec, env)
    worker.run()
