"""A suite on a real several-node Ray cluster on this one machine (``ray.cluster_utils.Cluster``): a head
with 0 CPUs, as a cluster whose head only coordinates, and two worker nodes of 1 CPU each, every node a
raylet and object store of its own. ``run_suite.py --address <the cluster's GCS>`` joins it as a user
joins a cluster; its local MLflow server over ``<work>/mlflow.db`` is the tracking store (127.0.0.1 is
reachable from every node here, all on one machine).

The checks read what a user would: the exit status, the trials' summaries and curves, the checkpoints in
the run folder (the storage path every node writes to), the MLflow runs; and which node ran what from
Ray's State API (the head's dashboard): every Train worker ran on a worker node, none on the head.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from autowu_bench.local_cluster import LocalCluster, Suite, wait_for_dashboard
from tests.ray_fixtures import actors, e2e_data, e2e_suite

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

EPOCHS, STEPS_PER_EPOCH = 6, 5  # train_subset 1000 / batch 200: 30 steps; the longest warmup 27 (rho 0.9)
AUTOWU_TRIAL = "autowu_fmnist-mlp_b200_s0"


def _suite(data_root: Path) -> str:
    return e2e_suite("multinode-test", data_root, epochs=EPOCHS,
                     resources="{workers_per_trial: 2, cpus_per_worker: 0.5, max_concurrent_trials: 2, use_gpu: false}")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return e2e_data(tmp_path_factory)


@pytest.fixture(scope="module")
def joined_run(tmp_path_factory, data_root):
    """(work folder, run folder, stdout, the actors the cluster ran, the head's node id, worker node ids)."""
    work = tmp_path_factory.mktemp("multinode")
    cluster = LocalCluster()
    try:
        wait_for_dashboard(cluster.address)
        suite = Suite(work, _suite(data_root), cluster.address)
        code, out, err = suite.wait()
        assert code == 0, f"run_suite.py exited {code}:\n{out[-4000:]}\n{err[-4000:]}"
        ran = actors(cluster.address)
        head, workers = cluster.head_id, {n.node_id for n in cluster.workers}
    finally:
        cluster.shutdown()
    return work, suite.run_dir(), out, ran, head, workers


def _trial_ids(run_dir: Path) -> list[str]:
    return [spec["trial_id"] for spec in json.loads((run_dir / "trial_specs.json").read_text())]


def test_every_trial_finished(joined_run):
    _, run_dir, out, _, _, _ = joined_run
    address = out.split("--address ", 1)[1].split()[0] if "--address " in out else None
    ids = _trial_ids(run_dir)
    assert len(ids) == 2
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("trial_id")
    assert sorted(trials.index) == sorted(ids)
    assert (trials.status == "finished").all(), trials[["status", "error"]]
    assert (trials.epochs_done == EPOCHS).all() and (trials.steps == EPOCHS * STEPS_PER_EPOCH).all()
    assert (trials.restarts == 0).all()
    assert json.loads((run_dir / "run.json").read_text())["address"] == address
    assert "autowu" in (run_dir / "table.txt").read_text()


def test_train_workers_ran_on_the_worker_nodes_not_the_head(joined_run):
    _, _, _, ran, head, workers = joined_run
    train_workers = [a for a in ran if a["class_name"] == "RayTrainWorker"]
    # 2 trials x 2 workers, none restarted
    assert len(train_workers) == 4, [(a["class_name"], a["node_id"]) for a in ran]
    assert {a["node_id"] for a in train_workers} <= workers
    assert head not in {a["node_id"] for a in train_workers}
    # Both worker nodes were used: 2 trials of 1 CPU each at once on 2 nodes of 1 CPU.
    assert {a["node_id"] for a in train_workers} == workers


def test_the_trial_drivers_and_controllers_ran_on_the_head(joined_run):
    """execution.tuner_builder.RESOURCES: a lost worker node takes only Train workers with it."""
    _, _, _, ran, head, _ = joined_run
    placed = {}
    for a in ran:
        placed.setdefault(a["class_name"], []).append(a["node_id"])
    # Tune's function trainable (the trial driver), Ray Train's controller, the AutoWU controller
    for name, count in (("ImplicitFunc", 2), ("TrainController", 2), ("AutoWUController", 1)):
        assert placed.get(name) == [head] * count, (name, placed)


def test_checkpoints_and_results_are_in_the_run_folder(joined_run):
    _, run_dir, _, _, _, _ = joined_run
    for trial_id in _trial_ids(run_dir):
        storage = run_dir / "ray" / "train" / trial_id
        assert (storage / "checkpoint_manager_snapshot.json").is_file(), sorted(p.name for p in storage.iterdir())
        checkpoints = sorted(p for p in storage.glob("checkpoint_*") if p.is_dir())
        assert checkpoints and all(any(c.iterdir()) for c in checkpoints), checkpoints
        folder = run_dir / "trials" / trial_id
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "finished"
        for rank in (0, 1):
            trace = pd.read_parquet(folder / f"lr_rank{rank}.parquet")
            assert trace.step.tolist() == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    curves = pd.read_parquet(run_dir / "curves.parquet")
    for trial_id in _trial_ids(run_dir):
        assert curves[curves.trial_id == trial_id].step.tolist() == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))


def test_mlflow_holds_every_step_once_per_trial(joined_run):
    _check_mlflow(joined_run[1])


def _check_mlflow(run_dir: Path) -> None:
    """One parent run, one child run per trial, every step of lr and train_loss once in each."""
    from mlflow import MlflowClient

    work = run_dir.parents[2]  # work/runs/multinode-test/<stamp>
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("multinode-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == sorted(_trial_ids(run_dir))
    for run in children:
        assert run.info.status == "FINISHED"
        for metric in ("lr", "train_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert sorted(steps) == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1)), (run.info.run_name, metric)


# --- (b) a worker node lost mid-trial ------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_lost_run(tmp_path_factory, data_root):
    """The AutoWU trial alone (``--only autowu``); once Ray Train has registered its first checkpoint, the
    worker node its Train workers run on is removed at once (``allow_graceful=False``: every process of the
    node SIGKILLed, as a node that is lost), and a replacement node joins. Returns (run folder, the removed
    node's id, the step the trial had recorded at the removal, the actors the cluster ran, the head's id)."""
    from autowu_bench.platform.records.trial_folder import RECORDED_STEP_FILE

    work = tmp_path_factory.mktemp("node-lost")
    cluster = LocalCluster()
    head = cluster.head_id
    try:
        wait_for_dashboard(cluster.address)
        suite = Suite(work, _suite(data_root), cluster.address, "--only", "autowu")
        try:
            deadline, snapshot = time.monotonic() + 900, None
            while snapshot is None or not snapshot.is_file():
                assert suite.proc.poll() is None, "run_suite.py ended before the trial had a checkpoint"
                assert time.monotonic() < deadline, "no checkpoint registered in 900 s"
                time.sleep(0.05)
                run_dir = suite.run_dir()
                snapshot = run_dir and run_dir / "ray" / "train" / AUTOWU_TRIAL / "checkpoint_manager_snapshot.json"
            alive = [a for a in actors(cluster.address) if a["class_name"] == "RayTrainWorker" and a["state"] == "ALIVE"]
            (node,) = [n for n in cluster.workers if n.node_id in {a["node_id"] for a in alive}]
            cluster.lose_worker(node)
            recorded = int((run_dir / "trials" / AUTOWU_TRIAL / RECORDED_STEP_FILE).read_text())
            cluster.add_worker()  # the replacement
        except BaseException:
            suite.stop()
            raise
        code, out, err = suite.wait()
        assert code == 0, f"run_suite.py exited {code}:\n{out[-4000:]}\n{err[-4000:]}"
        ran = actors(cluster.address)
    finally:
        cluster.shutdown()
    return run_dir, node.node_id, recorded, ran, head


def _lr_trace(run_dir: Path, trial_id: str, rank: int) -> dict[str, list]:
    return pd.read_parquet(run_dir / "trials" / trial_id / f"lr_rank{rank}.parquet").to_dict("list")


def test_the_trial_restarted_once_on_another_node(node_lost_run):
    run_dir, removed, recorded, ran, head = node_lost_run
    summary = json.loads((run_dir / "trials" / AUTOWU_TRIAL / "summary.json").read_text())
    assert summary["status"] == "finished", summary.get("error")
    assert (summary["restarts"], summary["epochs_done"], summary["steps"]) == (1, EPOCHS, EPOCHS * STEPS_PER_EPOCH)
    train_workers = [a for a in ran if a["class_name"] == "RayTrainWorker"]
    lost = [a for a in train_workers if a["node_id"] == removed]
    after = [a for a in train_workers if a["node_id"] != removed]
    assert len(lost) == 2 and all(a["state"] == "DEAD" for a in lost), lost
    # The restarted worker group ran elsewhere: on a worker node (the other one, or the replacement).
    assert len(after) == 2 and head not in {a["node_id"] for a in after}, after
    # The trial's driver, Train controller and AutoWU controller were on the head and lived through it.
    for name in ("ImplicitFunc", "TrainController", "AutoWUController"):
        assert [a["node_id"] for a in ran if a["class_name"] == name] == [head], (name, ran)
    # Resumed from a checkpoint taken at an epoch end at or before the step recorded at the removal.
    rows = [r for p in sorted((run_dir / "trials" / AUTOWU_TRIAL / "fragments").glob("events-*.parquet"))
            for r in pd.read_parquet(p).to_dict("records")]
    assert [r["name"] for r in rows] == ["restart"], rows
    assert rows[0]["step"] % STEPS_PER_EPOCH == 0 and STEPS_PER_EPOCH <= rows[0]["step"] <= recorded, (rows, recorded)


def test_the_restarted_trial_is_the_uninterrupted_one_exactly(node_lost_run, joined_run):
    run_dir, _, recorded, _, _ = node_lost_run
    reference = joined_run[1]
    a = json.loads((reference / "trials" / AUTOWU_TRIAL / "summary.json").read_text())
    b = json.loads((run_dir / "trials" / AUTOWU_TRIAL / "summary.json").read_text())
    # The node went mid-warmup: the uninterrupted trial switched after the step recorded at the removal.
    assert recorded < a["switch_step"], (recorded, a["switch_step"])
    for rank in (0, 1):
        assert _lr_trace(run_dir, AUTOWU_TRIAL, rank) == _lr_trace(reference, AUTOWU_TRIAL, 0)
    assert _lr_trace(run_dir, AUTOWU_TRIAL, 0)["step"] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    for key in ("switch_step", "switch_reason", "decay_start_lr", "final_val_acc", "test_acc", "final_val_loss"):
        assert b[key] == a[key], key
    # rank 0's curves hold each step once (the replayed steps are not recorded again)
    curves = pd.read_parquet(run_dir / "curves.parquet")
    assert curves[curves.trial_id == AUTOWU_TRIAL].step.tolist() == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))


def test_mlflow_holds_every_step_once_after_the_restart(node_lost_run):
    _check_mlflow(node_lost_run[0])
