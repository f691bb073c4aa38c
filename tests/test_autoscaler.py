"""A suite on a cluster that grows under Ray's autoscaler, on this one machine: Ray's fake multi-node
provider (``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=...``, provider type
``fake_multinode``), whose autoscaler (v1, Ray's default) starts each worker node it adds as a raylet of its
own here. The head has 0 CPUs, as ``cluster.yaml``'s, and no worker node is up at launch (``min_workers:
0``): the trials wait for the nodes the autoscaler adds for them, up to 2 of 1 CPU.

What is checked is what the run leaves (the exit status, its printed concurrency, each trial's summary and
``worker-rank0.json``) and what Ray's State API says of the nodes: the suite ran as many trials at once as
the autoscaler's maximum holds (not the 0 CPUs up at launch), the autoscaler added the nodes after the
trials had started waiting, and two trials trained at the same time on two different worker nodes.

The launcher config is complete and the autoscaler is v1: Ray 2.58's wheel lacks the
``fake_multi_node/example.yaml`` that ``autoscaler._private.util.prepare_config`` merges a fake_multinode
config's defaults from (``providers._get_default_config`` opens it: FileNotFoundError), and autoscaler v2
calls it on every config it reads (``v2.instance_manager.config.AutoscalingConfig.update_configs``); v1
reads the file as it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest
import yaml

from autowu_bench.platform.execution import processes
from autowu_bench.platform.records.trial_folder import WORKER_FILE
from autowu_bench.platform.tracking.server import free_port
from autowu_bench.local_cluster import OBJECT_STORE, Suite, wait_for_dashboard
from tests.ray_fixtures import e2e_data, e2e_suite, gcs_address, ray_head

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# A trial trains for about 0.5 s an epoch here, once its worker is up; the second worker node and its worker
# start a few seconds after the first: enough epochs that both trials are still training then.
EPOCHS = 15
MAX_NODES = 2
# One worker of 1 CPU per trial: a trial takes a whole worker node, so two at once need both nodes.
# No max_concurrent_trials: its default (ray_cluster.default_concurrency) is under test.
RESOURCES = "{workers_per_trial: 1, cpus_per_worker: 1, use_gpu: false}"


def launcher_config(gcs_address: str) -> dict:
    """A cluster launcher config for the fake provider: the head of 0 CPUs and up to ``MAX_NODES`` worker
    nodes of 1 CPU, none at the start. Every key the v1 autoscaler reads is given (no defaults are merged)."""
    return {
        "cluster_name": "autoscale-test",
        "max_workers": MAX_NODES,
        "upscaling_speed": 1.0,
        # Longer than the run: a node idle between trials stays, and the State API still lists it alive.
        "idle_timeout_minutes": 30,
        "provider": {
            "type": "fake_multinode",
            # Every fake node has this machine's IP: the autoscaler tells them apart by node id.
            "use_node_id_as_ip": True,
            # The nodes are started by the provider itself: nothing to set up over SSH, no launch hash.
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            # Else the provider joins its nodes to port 6379, which another Ray on the machine may own.
            "gcs_address": gcs_address,
        },
        # The provider names its head node's type ray.head.default.
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "worker.cpu1": {"resources": {"CPU": 1, "object_store_memory": OBJECT_STORE}, "node_config": {},
                            "min_workers": 0, "max_workers": MAX_NODES},
        },
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def _nodes(address: str) -> list[dict]:
    from ray.util.state import list_nodes

    return [dict(vars(n)) for n in list_nodes(address=address, detail=True, timeout=30)]


@pytest.fixture(scope="module")
def autoscaled_run(tmp_path_factory):
    """The suite joined to a fresh fake-autoscaler cluster. Returns a dict: run (its folder), out (stdout),
    launch_nodes and nodes (the State API's nodes before the suite started and after it ended), launched
    (time.time() when run_suite.py was started), tree (the cluster's processes at the end), raylets (those of
    them that are raylets) and tree_left (those still alive after the head was stopped)."""
    work = tmp_path_factory.mktemp("autoscale")
    data_root = e2e_data(tmp_path_factory)
    config, port = work / "autoscaling.yaml", free_port()
    config.write_text(yaml.safe_dump(launcher_config(gcs_address(port))))
    # AUTOSCALER_UPDATE_INTERVAL_S: the autoscaler looks at the demand every second (default 5).
    with ray_head(work / "ray-head.log", "--num-cpus=0", f"--object-store-memory={OBJECT_STORE}",
                  f"--autoscaling-config={config}", port=port,
                  env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}) as head:
        wait_for_dashboard(head.address)
        launch_nodes = _nodes(head.address)
        launched = time.time()
        # The suite's concurrency comes from this config, as from ~/ray_bootstrap_config.yaml on a `ray up` head.
        suite = Suite(work, e2e_suite("autoscale-test", data_root, epochs=EPOCHS, resources=RESOURCES), head.address,
                      env={"AUTOWU_AUTOSCALING_CONFIG": str(config)})
        code, out, err = suite.wait(timeout=800)
        assert code == 0, f"run_suite.py exited {code}:\n{out[-4000:]}\n{err[-4000:]}"
        nodes = _nodes(head.address)
        tree = head.tree()
        raylets = {p for p in tree if _name(p[0]) == "raylet"}
    return {"run": suite.run_dir(), "out": out, "launch_nodes": launch_nodes, "nodes": nodes,
            "launched": launched, "tree": tree, "raylets": raylets, "tree_left": processes.alive(tree)}


def _name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None


def _trials(run_dir: Path) -> dict[str, dict]:
    """Per trial id: its summary, plus its rank-0 worker record under "worker"."""
    found = {}
    for spec in json.loads((run_dir / "trial_specs.json").read_text()):
        folder = run_dir / "trials" / spec["trial_id"]
        summary = json.loads((folder / "summary.json").read_text())
        summary["worker"] = json.loads((folder / WORKER_FILE.format(rank=0)).read_text())
        found[spec["trial_id"]] = summary
    return found


def test_the_run_waited_for_nodes_at_the_autoscalers_concurrency(autoscaled_run):
    (head,) = autoscaled_run["launch_nodes"]  # at launch the head alone, and it has no CPU
    assert head["is_head_node"] and head["resources_total"].get("CPU", 0) == 0, head
    # 2 worker nodes of 1 CPU can hold 2 trials of 1 CPU: the autoscaler's maximum, where the 0 CPUs up at
    # launch would have given 1.
    assert "running 2 trials, up to 2 at once" in autoscaled_run["out"], autoscaled_run["out"][-3000:]
    trials = _trials(autoscaled_run["run"])
    assert len(trials) == 2 and {t["status"] for t in trials.values()} == {"finished"}, trials
    assert all(t["epochs_done"] == EPOCHS and t["restarts"] == 0 for t in trials.values()), trials


def test_the_autoscaler_added_the_worker_nodes_while_the_trials_waited(autoscaled_run):
    head = [n for n in autoscaled_run["nodes"] if n["is_head_node"]]
    workers = [n for n in autoscaled_run["nodes"] if not n["is_head_node"]]
    assert len(head) == 1 and len(workers) == MAX_NODES, autoscaled_run["nodes"]
    assert all(n["state"] == "ALIVE" and n["resources_total"]["CPU"] == 1 for n in workers), workers
    started = {n["node_id"]: n["start_time_ms"] / 1000 for n in workers}
    for trial_id, trial in _trials(autoscaled_run["run"]).items():
        driver_start = trial["ended_at"] - trial["wall_seconds"]
        node = trial["worker"]["node_id"]
        # The trial's driver was running (waiting for cores) before the node its worker ran on existed,
        # and the worker group started once the node was up.
        assert autoscaled_run["launched"] < driver_start < started[node] < trial["worker"]["at"], (
            trial_id, autoscaled_run["launched"], driver_start, started, trial["worker"])


def test_two_trials_trained_at_once_on_different_worker_nodes(autoscaled_run):
    head = next(n["node_id"] for n in autoscaled_run["nodes"] if n["is_head_node"])
    a, b = _trials(autoscaled_run["run"]).values()
    assert a["worker"]["node_id"] != b["worker"]["node_id"], (a["worker"], b["worker"])
    assert head not in {a["worker"]["node_id"], b["worker"]["node_id"]}
    # The trials ran at the same time (their drivers' intervals overlap), and so did their training: both
    # worker groups had started before either trial ended.
    assert max(a["ended_at"] - a["wall_seconds"], b["ended_at"] - b["wall_seconds"]) < min(a["ended_at"], b["ended_at"])
    assert max(a["worker"]["at"], b["worker"]["at"]) < min(a["ended_at"], b["ended_at"]), (a, b)


def test_the_cluster_left_no_process_behind(autoscaled_run):
    # The worker nodes the autoscaler started are below `ray start --block` too (its monitor starts their
    # raylets): the head's raylet and theirs were all in the tree that was stopped.
    assert len(autoscaled_run["raylets"]) == 1 + MAX_NODES, autoscaled_run["tree"]
    assert autoscaled_run["tree_left"] == set()

