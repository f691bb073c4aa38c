"""Ray clusters on this machine for the end-to-end tests, and a suite that joins one.

- :func:`ray_head`: a head started with ``ray start --head --block`` on free ports, its processes killed by
  PID afterwards (never ``ray stop``, which stops every Ray instance of the machine, other users' too).
- :func:`wait_for_dashboard`: the State API answers.
- :class:`LocalCluster`: a several-node ``ray.cluster_utils.Cluster`` (a 0-CPU head, worker nodes added
  and lost at will), and :func:`actors`: what its State API says every actor ran on.
- :class:`Suite`: ``run_suite.py --address <cluster>`` in a work folder, its output in files.
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

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
OBJECT_STORE = 80 * 1024**2  # per node of a LocalCluster: trials pass little data, and the machine is shared


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


def wait_for_dashboard(address: str, timeout: float = 180) -> None:
    """The State API answers and lists the head node (the head's dashboard starts after its GCS, slowly on a
    busy machine, and its first answers can list no node yet)."""
    from ray.util.state import list_nodes

    deadline, error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            if any(node.is_head_node for node in list_nodes(address=address, timeout=10)):
                return
            error = "no head node listed"
        except Exception as exc:  # noqa: BLE001 - not up yet
            error = exc
        time.sleep(1)
    raise TimeoutError(f"the cluster's State API did not answer in {timeout} s: {error}")


class Suite:
    """``run_suite.py --suite <suite> --address <cluster>`` in ``work`` (its MLflow: a local server over
    ``work/mlflow.db``), its output in files (a pipe nobody reads while the test waits could fill). ``suite``
    is the suite's YAML text; ``env`` is added to the environment, from which the defaults of --address,
    --tracking-uri and --results that this machine may set are removed."""

    def __init__(self, work: Path, suite: str, address: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.work = work
        path = work / "suite.yaml"
        path.write_text(suite)
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "AUTOWU_RAY_ADDRESS", "AUTOWU_RESULTS")}
        self._out, self._err = open(work / "stdout.txt", "w"), open(work / "stderr.txt", "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "run_suite.py"), "--suite", str(path), "--results", str(work / "runs"),
             "--address", address, *args],
            cwd=work, env={**environ, **(env or {})}, text=True, stdout=self._out, stderr=self._err,
            start_new_session=True,
        )

    def run_dir(self) -> Path | None:
        """The run folder (runs/<suite name>/<stamp>), once the run has made it."""
        found = sorted((self.work / "runs").glob("*/*"))
        return found[0] if found else None

    def wait(self, timeout: float = 1200) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        return code, (self.work / "stdout.txt").read_text(), (self.work / "stderr.txt").read_text()

    def stop(self) -> None:
        """SIGKILL what is left of the run (its session: run_suite.py, its MLflow server) and close the files."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self._out.close()
        self._err.close()


class LocalCluster:
    """A ``ray.cluster_utils.Cluster``, a head with 0 CPUs and the dashboard (for the State API) and
    ``workers`` worker nodes of 1 CPU, that leaves the machine as it found it: ``Cluster`` writes its
    address to Ray's ``ray_current_cluster`` file (what ``address="auto"`` joins), which other Ray users of
    this machine may own; it is put back."""

    def __init__(self, workers: int = 2) -> None:
        from ray._common.utils import get_ray_address_file
        from ray.cluster_utils import Cluster

        self._address_file = get_ray_address_file(None)
        self._saved = Path(self._address_file).read_text() if os.path.isfile(self._address_file) else None
        # Short: the nodes' unix sockets live under it (a socket path has at most 107 characters).
        self.temp_dir = tempfile.mkdtemp(prefix="rmn-", dir="/tmp")
        # The dashboard gets 60 s to start, and each of its modules 30 s, by default: not always enough on a
        # busy 2-core machine. (The first is read from this process's Ray, the second by the dashboard.)
        from ray._private import ray_constants

        ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S = max(ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S, 300)
        os.environ.setdefault("RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT", "300")
        self.cluster, self.workers = None, []
        try:
            self.cluster = Cluster(
                initialize_head=True, shutdown_at_exit=True,
                head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE, "include_dashboard": True,
                                "dashboard_host": "127.0.0.1", "dashboard_port": free_port(),
                                "temp_dir": self.temp_dir},
            )
            self._restore_address_file()
            for _ in range(workers):
                self.add_worker()
        except BaseException:
            self.shutdown()
            raise

    def add_worker(self, num_cpus: int = 1):
        node = self.cluster.add_node(num_cpus=num_cpus, object_store_memory=OBJECT_STORE)
        self.workers.append(node)
        return node

    def lose_worker(self, node) -> None:
        """Every process of the worker node SIGKILLed at once, as a node that is lost."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def head_id(self) -> str:
        return self.cluster.head_node.node_id

    def _restore_address_file(self) -> None:
        if self._saved is None:
            try:
                os.remove(self._address_file)
            except OSError:
                pass
        else:
            Path(self._address_file).write_text(self._saved)

    def shutdown(self) -> None:
        try:
            if self.cluster is not None:
                self.cluster.shutdown()
        finally:
            self._restore_address_file()
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def actors(address: str) -> list[dict]:
    """Every actor the cluster ran (dead ones too), as dicts with class_name, node_id, state, pid."""
    from ray.util.state import list_actors

    return [dict(vars(a)) for a in list_actors(address=address, limit=10000, detail=True, timeout=30,
                                               raise_on_missing_output=False)]
