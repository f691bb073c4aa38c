"""The suite's Ray session on a machine whose Ray is minimal (``pip install ray``, no ``[default]``)."""

from __future__ import annotations

import ray
from ray._private import utils

from autowu_bench.platform.execution import ray_cluster


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


def test_trial_drivers_ask_for_no_cpu_and_a_sliver_of_the_head_node():
    """A trial's driver (and so its Train and AutoWU controllers) runs on the head node, never on a worker
    node that can go away (tests/test_multinode.py runs it on a real cluster); the Tune API's trainable
    asks the same. The head node has 1.0 of the resource: room for many trials at once."""
    from autowu_bench import tune

    resources = ray_cluster.TRIAL_DRIVER_RESOURCES
    assert resources["CPU"] == 0 and resources["memory"] > 0
    assert 0 < resources["node:__internal_head__"] <= 0.001
    assert tune.RESOURCES == resources
