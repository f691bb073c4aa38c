"""What the end-to-end tests on Ray clusters of this machine share.

- :func:`ray_head`: a head started with ``ray start --head --block`` on free ports, its processes killed by
  PID afterwards (never ``ray stop``, which stops every Ray instance of the machine, other users' too).
- :func:`actors`: what a cluster's State API says every actor ran on.
- :func:`e2e_suite` and :func:`e2e_data`: the suite the several-node tests run (an AutoWU arm and an SGD
  baseline on a small Fashion-MNIST) and its data.

A several-node cluster on this machine and a suite that joins it (``LocalCluster``, ``Suite``,
``wait_for_dashboard``) are ``autowu_bench.local_cluster``'s, which the benchmarks use too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from autowu_bench.platform.execution import processes
from autowu_bench.platform.tracking.server import free_port
from tests.data_fixtures import write_fashion_mnist_idx

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


@dataclass
class RayHead:
    address: str  # the GCS, HOST:PORT (what --address joins)
    dashboard: str  # the dashboard's URL (Ray Jobs' server, the State API)
    proc: subprocess.Popen  # `ray start --block`: every process of the cluster is below it

    def tree(self) -> set[processes.Process]:
        """Its processes now: the head's and those of the worker nodes started since (all below it)."""
        return processes.descendants([self.proc.pid])


def gcs_address(port: int) -> str:
    """The address of the GCS that ``ray start --head --port=<port>`` starts here: the node's IP (what Ray
    finds for this machine), not loopback."""
    from ray._private.services import get_node_ip_address

    return f"{get_node_ip_address()}:{port}"


@contextmanager
def ray_head(log: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None,
             timeout: float = 180) -> Iterator[RayHead]:
    """A Ray head with the dashboard, its GCS on ``port`` and every other port free (another Ray on the
    machine keeps its own), ``args`` added to ``ray start`` (--num-cpus, --object-store-memory, ...) and
    ``env`` to its environment. On exit its process group is sent SIGTERM and whatever was below it and is
    still alive 30 s later is killed."""
    temp = tempfile.mkdtemp(prefix="rayhead", dir="/tmp")  # Ray's socket paths must stay short
    port, dashboard = port or free_port(), free_port()
    command = [str(RAY), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dashboard}",
               "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--temp-dir={temp}",
               "--disable-usage-stats", f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--node-manager-port={free_port()}",
               f"--object-manager-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", *args]
    out = open(log, "w")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    head = RayHead(gcs_address(port), f"http://127.0.0.1:{dashboard}", proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{head.dashboard}/api/version", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the Ray head's dashboard never answered"
                time.sleep(1)
        yield head
    finally:
        below = head.tree()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        processes.kill_survivors(below)
        out.close()
        shutil.rmtree(temp, ignore_errors=True)


def actors(address: str) -> list[dict]:
    """Every actor the cluster ran (dead ones too), as dicts with class_name, node_id, state, pid."""
    from ray.util.state import list_actors

    return [dict(vars(a)) for a in list_actors(address=address, limit=10000, detail=True, timeout=30,
                                               raise_on_missing_output=False)]


# The several-node tests' suite: fmnist-mlp at batch size 200 on 1000 training samples, seed 0, an AutoWU
# arm and a baseline, both SGD; what differs between the tests is given (``e2e_suite``).
E2E_SUITE = """
name: {name}
workloads: [fmnist-mlp]
batch_sizes: [200]
epochs: {epochs}
seeds: [0]
arms:
  - name: autowu
    kind: autowu
    decay: cosine
    optimizer: sgd
    autowu: {autowu}
  - name: baseline
    kind: baseline
    optimizer: sgd
    peak_lrs: {peak_lrs}
    warmup_epochs: [1]
    include_default: false
resources: {resources}
data: {{root: {root}, train_subset: 1000, val_size: 200}}
"""


def e2e_suite(name: str, data_root: Path, *, epochs: int, resources: str,
              autowu: str = "{test_interval: 2, lr_max: 0.2, max_warmup_fraction: 0.9}",
              peak_lrs: str = "[0.1]") -> str:
    """The several-node tests' suite as YAML text; ``resources``, ``autowu`` and ``peak_lrs`` as YAML flow
    text."""
    return E2E_SUITE.format(name=name, epochs=epochs, autowu=autowu, peak_lrs=peak_lrs, resources=resources,
                            root=data_root)


def e2e_data(tmp_path_factory) -> Path:
    """The Fashion-MNIST files those suites read (1200 training and 200 test images), in a new folder."""
    return write_fashion_mnist_idx(tmp_path_factory.mktemp("data"), n_train=1200, n_test=200, seed=0)
