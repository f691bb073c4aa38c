"""A several-node Ray cluster on this machine and a suite run that joins one, for the end-to-end tests
(tests/) and the benchmarks (bench/): neither the product nor a user needs it.

- :class:`LocalCluster`: a ``ray.cluster_utils.Cluster`` (a 0-CPU head, worker nodes added and lost at
  will) that leaves the machine's Ray address file as it found it.
- :func:`wait_for_dashboard`: the cluster's State API answers.
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
from pathlib import Path

from autowu_bench.platform.tracking.server import free_port

# The checkout's root, where run_suite.py is (the tests and benchmarks run from a checkout).
REPO = Path(__file__).resolve().parents[1]
OBJECT_STORE = 80 * 1024**2  # per node of a LocalCluster: trials pass little data, and the machine is shared


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
