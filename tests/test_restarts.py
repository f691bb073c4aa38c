"""Trial restarts through real Ray Tune + Ray Train (2 gloo CPU workers): a Train worker SIGKILLed
mid-warmup, after the first checkpoint, and the worker group restarts from that checkpoint; the same for
the trial's AutoWU controller actor.

Three copies of one AutoWU trial (same seed) run in one Ray session, under a run folder that is not the
working folder: one uninterrupted, one whose rank 1 the test SIGKILLs (the process its ``WORKER_FILE``
names) once the trial has recorded ``WORKER_KILL_AFTER`` steps, and one whose controller's process the
test SIGKILLs once the trial has recorded ``CONTROLLER_KILL_AFTER`` steps. Each restarted trial must
finish with ``restarts == 1`` and the very same LR trace, switch step and decay start LR as the
uninterrupted one; rank 0's curves hold each step once. (Without Ray, the skip of already-recorded steps:
tests/test_trial_results.py.)
"""

from __future__ import annotations

import glob
import json
import os
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest

from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.records.trial_folder import RECORDED_STEP_FILE, WORKER_FILE, TrialFolder
from tests.data_fixtures import write_fashion_mnist_idx

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EPOCHS = 6
BATCH = 200
N_TRAIN, VAL = 1200, 200  # 5 steps per epoch, 30 steps; the longest warmup is 27 steps (rho 0.9)
# Steps recorded (at epoch ends) before the kill, mid-warmup: three epoch ends after the first checkpoint,
# so Ray Train, which registers a reported checkpoint at its next poll of the workers, has registered one.
WORKER_KILL_AFTER = 15
CONTROLLER_KILL_AFTER = 10  # two epoch ends, so a checkpoint; still in the warmup


def _spec(data_root: str, trial_id: str) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id, suite="restart-test", arm="autowu-cos", kind="autowu", decay="cosine",
        autowu={"test_interval": 2, "lr_max": 0.2, "max_warmup_fraction": 0.9}, workload="fmnist-mlp", batch_size=BATCH, epochs=EPOCHS, seed=0,
        optimizer="sgd", weight_decay=0.0, data_root=data_root, val_size=VAL, num_workers=2,
        cpus_per_worker=0.5, max_failures=2,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from autowu_bench.platform.execution.ray_cluster import ray_session
    from autowu_bench.platform.execution.grid_run import run_grid

    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_idx(root, n_train=N_TRAIN, n_test=100, seed=0)
    run_dir = str(tmp_path_factory.mktemp("run"))
    assert os.path.abspath(run_dir) != os.getcwd()
    trials = [_spec(str(root), "uninterrupted"), _spec(str(root), "killed"), _spec(str(root), "controller-killed")]
    with ray_session(None, num_cpus=2, object_store_memory=200 * 1024**2):
        killers = {"killed": _Killer(str(TrialFolder.of(run_dir, "killed").path), WORKER_KILL_AFTER, _rank1_pid),
                   "controller-killed": _Killer(str(TrialFolder.of(run_dir, "controller-killed").path),
                                                CONTROLLER_KILL_AFTER, _controller_pid)}
        for killer in killers.values():
            killer.start()
        outcomes = run_grid(trials, run_dir=run_dir, tracking_uri=None, parent_run_id=None)
        for killer in killers.values():
            killer.join(timeout=5)
    return run_dir, {o.trial_id: o for o in outcomes}, killers


def _rank1_pid(folder: str) -> int:
    """Rank 1's process in the trial's first worker group, from the record its worker keeps."""
    with open(os.path.join(folder, WORKER_FILE.format(rank=1))) as f:
        record = json.load(f)
    assert record["group"] == 1 and record["node_id"], record
    return record["pid"]


def _controller_pid(folder: str) -> int:
    import ray

    from autowu_bench.platform.execution.controller import controller_name

    handle = ray.get_actor(controller_name(os.path.basename(folder)))
    return ray.get(handle.__ray_call__.remote(lambda controller: os.getpid()))


class _Killer(threading.Thread):
    """SIGKILLs, from outside, the process ``pid_of(folder)`` names once the trial in ``folder`` has recorded
    ``after`` steps; ``recorded_at_kill`` is the recorded step at that moment (the kill is within one epoch
    of it)."""

    def __init__(self, folder: str, after: int, pid_of) -> None:
        super().__init__(daemon=True)
        self.folder, self.after, self.pid_of = folder, after, pid_of
        self.recorded_at_kill = self.pid = None

    def run(self) -> None:

        path = os.path.join(self.folder, RECORDED_STEP_FILE)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    recorded = int(f.read())
            except (OSError, ValueError):
                recorded = 0
            if recorded >= self.after:
                self.pid = self.pid_of(self.folder)
                os.kill(self.pid, signal.SIGKILL)
                self.recorded_at_kill = recorded
                return
            time.sleep(0.01)


def _trace(run_dir: str, trial_id: str, rank: int) -> dict[str, list]:
    return pq.read_table(os.path.join(run_dir, "trials", trial_id, f"lr_rank{rank}.parquet")).to_pydict()


def test_the_killed_trial_restarted_once_and_finished(run):
    run_dir, outcomes, _ = run
    for trial_id, restarts in (("uninterrupted", 0), ("killed", 1), ("controller-killed", 1)):
        o = outcomes[trial_id]
        assert o.status == "finished", o
        assert (o.restarts, o.epochs_done, o.steps) == (restarts, EPOCHS, EPOCHS * 5)


@pytest.mark.parametrize("trial_id", ["killed", "controller-killed"])
def test_the_restarted_trial_is_the_uninterrupted_one_exactly(run, trial_id):
    run_dir, outcomes, _ = run
    a, b = outcomes["uninterrupted"], outcomes[trial_id]
    for rank in (0, 1):
        assert _trace(run_dir, trial_id, rank) == _trace(run_dir, "uninterrupted", 0)
    assert _trace(run_dir, trial_id, 0)["step"] == list(range(1, EPOCHS * 5 + 1))
    assert (b.switch_step, b.switch_reason, b.decay_start_lr) == (a.switch_step, a.switch_reason, a.decay_start_lr)
    assert (b.final_val_acc, b.test_acc, b.final_val_loss) == (a.final_val_acc, a.test_acc, a.final_val_loss)


@pytest.mark.parametrize("trial_id", ["killed", "controller-killed"])
def test_the_kill_came_mid_warmup(run, trial_id):
    run_dir, outcomes, killers = run
    killer = killers[trial_id]
    assert killer.pid is not None, f"{trial_id}: nothing was killed"
    # Within an epoch (5 steps) of the recorded step, and before the uninterrupted trial's switch.
    assert killer.recorded_at_kill + 5 < outcomes["uninterrupted"].switch_step
    if trial_id == "killed":  # the restarted group's rank 1 is another process
        with open(os.path.join(run_dir, "trials", trial_id, WORKER_FILE.format(rank=1))) as f:
            record = json.load(f)
        assert record["group"] == 2 and record["pid"] != killer.pid


def test_each_step_is_recorded_once_and_the_restart_is_an_event(run):
    run_dir, _, _ = run
    for trial_id in ("uninterrupted", "killed", "controller-killed"):
        rows = [r for p in glob.glob(os.path.join(run_dir, "trials", trial_id, "fragments", "curves-*.parquet"))
                for r in pq.read_table(p).to_pylist()]
        assert sorted(r["step"] for r in rows) == list(range(1, EPOCHS * 5 + 1))
    events = [r for p in glob.glob(os.path.join(run_dir, "trials", "killed", "fragments", "events-*.parquet"))
              for r in pq.read_table(p).to_pylist()]
    # Resumed from a checkpoint taken at an epoch end before the kill.
    assert [e["name"] for e in events] == ["restart"] and events[0]["step"] in (5, 10, 15)
