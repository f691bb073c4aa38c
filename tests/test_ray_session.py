"""The suite's Ray session: a minimal Ray (``pip install ray``, no ``[default]``), and what a joined
cluster needs of the tracking URI (the trials on its other machines log to it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import ray.util
from ray._private import utils

from autowu_bench.platform.execution import ray_cluster
from autowu_bench.platform.tracking.server import LocalMlflowServer

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_a_minimal_ray_starts_without_the_dashboard_and_says_what_that_costs(monkeypatch, capsys):
    # What Ray's check answers where the dashboard's packages are missing (the GPU machine's bundle).
    monkeypatch.setattr(utils, "get_dashboard_dependency_error", lambda: "No module named 'aiohttp_cors'")
    with ray_cluster.ray_session(None, num_cpus=1, object_store_memory=80 * 1024**2):
        assert ray.is_initialized()
        assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
    err = capsys.readouterr().err
    assert "Ray's dashboard cannot start (No module named 'aiohttp_cors'" in err
    assert "pip install 'ray[default]'" in err and "keeps its cores" in err
    assert not ray.is_initialized()


def test_the_dashboard_is_asked_for_where_it_can_start(monkeypatch):
    monkeypatch.setattr(utils, "get_dashboard_dependency_error", lambda: None)
    assert ray_cluster._dashboard_installed()


@pytest.fixture
def cluster_of(monkeypatch):
    """Stands the joined cluster in: this machine at 10.0.0.5 and the nodes at the given addresses."""
    def make(*addresses: str, autoscaler: bool = False) -> None:
        monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.0.0.5")
        monkeypatch.setattr(ray, "nodes", lambda: [{"NodeManagerAddress": a, "Alive": True} for a in addresses]
                            + [{"NodeManagerAddress": "10.0.0.99", "Alive": False}])  # a dead node counts not
        monkeypatch.setenv("AUTOWU_AUTOSCALING_CONFIG", str(CLUSTER_YAML) if autoscaler else "/nonexistent")
    return make


def test_a_loopback_tracking_uri_is_refused_on_a_cluster_with_nodes_elsewhere(cluster_of):
    cluster_of("10.0.0.5", "10.0.0.7")
    problem = ray_cluster.tracking_reach_problem("http://127.0.0.1:5000")
    assert "loopback" in problem and "nodes at 10.0.0.7" in problem and "http://10.0.0.5:5000" in problem
    assert ray_cluster.tracking_reach_problem("http://10.0.0.5:5000") is None  # an address they reach
    assert ray_cluster.tracking_reach_warning("http://127.0.0.1:5000") is None


def test_a_loopback_tracking_uri_is_refused_where_the_autoscaler_adds_nodes(cluster_of):
    cluster_of("10.0.0.5", autoscaler=True)  # only the head up yet, as after `ray up cluster.yaml`
    assert "nodes its autoscaler adds" in ray_cluster.tracking_reach_problem("http://localhost:5000")


def test_every_uri_serves_a_cluster_on_one_machine(cluster_of):
    cluster_of("10.0.0.5", "10.0.0.5")  # ray.cluster_utils.Cluster: all nodes are this machine
    for uri in ("http://127.0.0.1:5000", "sqlite:////tmp/mlflow.db", "/tmp/mlruns"):
        assert ray_cluster.tracking_reach_problem(uri) is None and ray_cluster.tracking_reach_warning(uri) is None


def test_a_path_tracking_uri_is_a_warning_since_only_the_user_knows_whether_it_is_shared(cluster_of):
    cluster_of("10.0.0.5", "10.0.0.8")
    for uri in ("sqlite:////mnt/shared/mlflow.db", "/mnt/shared/mlruns", "file:///mnt/shared/mlruns"):
        assert ray_cluster.tracking_reach_problem(uri) is None
        assert "nodes at 10.0.0.8 write it on their own disks" in ray_cluster.tracking_reach_warning(uri)
    assert ray_cluster.tracking_reach_warning("postgresql://db:5432/mlflow") is None


def test_the_suites_own_server_on_a_joined_cluster_answers_at_the_address_the_nodes_use(tmp_path):
    from mlflow import MlflowClient

    host = ray_cluster.tracking_host("auto")
    assert host == ray.util.get_node_ip_address() and ray_cluster.tracking_host(None) == "127.0.0.1"
    # MLflow answers only Host headers of loopback and private ranges unless told otherwise: this
    # machine's address may be neither (192.0.2.2 on the CI machine).
    with LocalMlflowServer(tmp_path, host=host) as server:
        assert server.uri.startswith(f"http://{host}:")
        client = MlflowClient(tracking_uri=server.uri)
        experiment = client.create_experiment("reach")
        assert client.get_experiment(experiment).name == "reach"


def test_trial_drivers_ask_for_no_cpu_and_a_sliver_of_the_head_node():
    """A trial's driver (and so its Train and AutoWU controllers) runs on the head node, never on a worker
    node that can go away (tests/test_multinode.py runs it on a real cluster); the Tune API's trainable
    asks the same. The head node has 1.0 of the resource: room for many trials at once."""
    from autowu_bench import tune
    from autowu_bench.platform.execution.tuner_builder import RESOURCES

    resources = RESOURCES
    assert resources["CPU"] == 0 and resources["memory"] > 0
    assert 0 < resources["node:__internal_head__"] <= 0.001
    assert tune.RESOURCES == resources
