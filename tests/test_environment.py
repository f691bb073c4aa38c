"""What a launch needs from the machine, checked before anything starts (environment.py): writable
folders, free disk for the checkpoints, a Ray cluster and a tracking server that answer within seconds."""

from __future__ import annotations

import io
import os
import socket
import time
from collections import namedtuple

import pytest
import torch

from autowu_bench.platform.checks import environment
from autowu_bench.platform.checks.environment import (
    address_endpoint,
    address_problems,
    checkpoint_bytes,
    checkpoint_disk_problems,
    results_problems,
    tracking_problems,
    unreachable,
    unwritable,
)
from autowu_bench.platform.suite.expansion import expand
from autowu_bench.platform.suite.loader import load_suite
from autowu_bench.workloads import build_optimizer, get_workload
from autowu_bench.workloads.optimizers import OPTIMIZER_INFO, OPTIMIZERS


def closed_port() -> int:
    """A local port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_state_table_counts_the_tensors_each_optimizer_keeps(name):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    optimizer = build_optimizer(name, model, lr=0.1, weight_decay=0.01)
    if hasattr(optimizer, "train"):
        optimizer.train()  # Schedule-Free steps in its train mode
    model(torch.randn(8, 5)).square().mean().backward()
    if hasattr(optimizer, "set_gradient_norms"):  # CLARS takes the layers' mean gradient norms first
        optimizer.set_gradient_norms([p.grad.norm() for p in optimizer.ordered_params()])
    optimizer.step()
    for p in model.parameters():
        kept = [v for v in optimizer.state[p].values() if torch.is_tensor(v) and v.numel() == p.numel()]
        assert len(kept) == OPTIMIZER_INFO[name].state_tensors


@pytest.mark.parametrize(("workload", "optimizer"), [("fmnist-mlp", "adamp"), ("fmnist-cnn", "sgd")])
def test_the_checkpoint_estimate_is_the_size_of_a_saved_model_and_optimizer(workload, optimizer):
    wl = get_workload(workload)
    model = wl.build_model()
    opt = build_optimizer(optimizer, model, lr=1e-3, weight_decay=0.0)
    model(torch.rand(4, *wl.input_shape)).sum().backward()
    opt.step()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    assert checkpoint_bytes(workload, optimizer) == pytest.approx(buffer.tell(), rel=0.02)


def test_too_little_free_disk_for_the_checkpoints_gives_the_numbers(tmp_path, monkeypatch):
    trials = expand(load_suite("smoke"))  # 6 fmnist-mlp trials with AdamP
    each = checkpoint_bytes("fmnist-mlp", "adamp")
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(environment.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 10**6, 10**6))
    (problem,) = checkpoint_disk_problems(trials, str(tmp_path / "runs"))
    assert problem.startswith(f"results '{tmp_path / 'runs'}': the trials' checkpoints need about ")
    assert f"{environment._size(6 * 2 * each)} (6 trials x 2 kept, up to {environment._size(each)} each" in problem
    assert f"but {tmp_path} has 1 MB free" in problem and "--only" in problem
    monkeypatch.setattr(environment.shutil, "disk_usage", lambda path: Usage(10**12, 0, 10**12))
    assert checkpoint_disk_problems(trials, str(tmp_path / "runs")) == []


def test_a_folder_that_cannot_be_written_says_why(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert unwritable(tmp_path / "new" / "deeper") is None
    assert unwritable(tmp_path / "file" / "runs") == f"{tmp_path / 'file'} is a file, not a folder"
    (problem,) = results_problems(str(tmp_path / "file" / "runs"))
    assert problem.startswith(f"results '{tmp_path / 'file' / 'runs'}': cannot write there (")
    assert "--results (default: AUTOWU_RESULTS)" in problem
    # root may write anywhere: permissions and a read-only mount are simulated
    monkeypatch.setattr(environment.os, "access", lambda path, mode: False)
    assert unwritable(tmp_path / "new") == f"{tmp_path} is not writable by this user"
    monkeypatch.setattr(environment.os, "access", lambda path, mode: True)
    monkeypatch.setattr(environment.os, "statvfs", lambda path: namedtuple("S", "f_flag")(os.ST_RDONLY))
    assert unwritable(tmp_path / "new") == f"{tmp_path} is on a read-only file system"


@pytest.mark.parametrize(("address", "endpoint"), [
    ("auto", None), ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10001", ("head", 10001)),
    ("ray://head", ("head", 10001)), ("[::1]:6379", ("::1", 6379)),
])
def test_ray_addresses_and_the_endpoint_they_name(address, endpoint):
    assert address_endpoint(address) == endpoint


@pytest.mark.parametrize("address", ["", "head", "local", "http://head:8265", "head:port", "head:99999",
                                     "ray://", "ray://head:10001/x", "ray://u@head:1"])
def test_what_is_not_a_ray_address(address):
    with pytest.raises(ValueError, match="not a Ray address; give 'auto'"):
        address_endpoint(address)


def test_a_port_nobody_listens_on_is_unreachable_at_once_and_a_listening_one_answers():
    port = closed_port()
    started = time.monotonic()
    assert unreachable("127.0.0.1", port, timeout=2.0) == "Connection refused"
    assert time.monotonic() - started < 2.0
    assert unreachable("no-such-host.invalid", 80, timeout=2.0) is not None
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert unreachable("127.0.0.1", server.getsockname()[1]) is None


def test_an_address_that_does_not_answer_names_it_and_the_fix(monkeypatch):
    port = closed_port()
    (problem,) = address_problems(f"127.0.0.1:{port}", timeout=2.0)
    assert problem.startswith(f"--address '127.0.0.1:{port}': nothing answers at 127.0.0.1:{port} (Connection refused)")
    assert "ray up cluster.yaml" in problem and "AUTOWU_RAY_ADDRESS" in problem
    assert address_problems(None) == []
    monkeypatch.setattr(environment, "_running_cluster", lambda: (None, "Could not find any running Ray instance."))
    (problem,) = address_problems("auto")
    assert problem.startswith("--address 'auto': Could not find any running Ray instance.; start the cluster")
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(environment, "_running_cluster", lambda: (("127.0.0.1", server.getsockname()[1]), None))
        assert address_problems("auto") == []


def test_a_tracking_uri_is_checked_for_what_it_names(tmp_path, monkeypatch):
    port = closed_port()
    uri = f"http://127.0.0.1:{port}"
    (problem,) = tracking_problems(uri, network=True, timeout=2.0)
    assert problem.startswith(f"tracking_uri '{uri}': nothing answers at 127.0.0.1:{port} (Connection refused)")
    assert "MLFLOW_TRACKING_URI" in problem
    assert tracking_problems(uri, network=False) == []  # a dry run does not reach out
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert tracking_problems(f"http://127.0.0.1:{server.getsockname()[1]}", network=True) == []
    (tmp_path / "file").write_text("x")
    assert tracking_problems(f"sqlite:///{tmp_path}/mlflow.db", network=True) == []
    (problem,) = tracking_problems(f"sqlite:///{tmp_path}/file/mlflow.db", network=True)
    assert "the store cannot be written" in problem and f"{tmp_path / 'file'} is a file" in problem
    assert tracking_problems(f"file://{tmp_path}/file/mlruns", network=True) != []
    assert tracking_problems("databricks", network=True) == tracking_problems("databricks://profile", network=True) == []
    assert "names no host" in tracking_problems("http:///x", network=True)[0]
    monkeypatch.chdir(tmp_path)
    assert tracking_problems(None, network=True) == []
    monkeypatch.setattr(environment.os, "access", lambda path, mode: False)
    (problem,) = tracking_problems(None, network=False)
    assert problem.startswith("tracking_uri: none given, so a local MLflow server would keep mlflow.db in the working")
    assert "--tracking-uri" in problem


def test_a_ray_job_refuses_to_write_its_results_and_mlflow_store_where_ray_deletes_them(tmp_path, monkeypatch):
    """`ray job submit` runs the command in the job's copy of --working-dir, which Ray deletes afterwards."""
    from autowu_bench.platform.checks.environment import RAY_JOB_ENV, ray_job_problems

    job_copy = tmp_path / "working_dir_files" / "_ray_pkg_0123"
    job_copy.mkdir(parents=True)
    monkeypatch.chdir(job_copy)
    assert ray_job_problems("runs", job_copy) == []  # not a job: ./runs and ./mlflow.db are the user's folder
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    results, tracking = ray_job_problems("runs", job_copy)
    assert results.startswith("results 'runs': a Ray job's folder") and str(job_copy) in results
    assert "--results" in results and tracking.startswith("tracking: with no tracking URI") and "--tracking-uri" in tracking
    assert ray_job_problems(str(tmp_path / "shared" / "runs"), None) == []  # outside the copy, a tracking URI
    assert ray_job_problems(str(tmp_path / "shared" / "runs"), tmp_path / "shared") == []  # a store outside it
    # A new run's checks ask it with the suite's results and, with no tracking URI, this folder as the store.
    (problem,) = [p for p in environment.environment_problems(load_suite("smoke", results=str(tmp_path / "r")), [],
                                                               address=None, network=False) if "Ray job" in p]
    assert problem.startswith("tracking: with no tracking URI")
