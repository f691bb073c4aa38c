"""Ray for a suite: a private local instance or a joined cluster, its environment for every Ray process,
and what the cluster can hold (the trials it cannot run, how many run at once)."""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from autowu_bench.platform.execution import processes
from autowu_bench.platform.execution.ray_logs import route_ray_output
from autowu_bench.platform.tracking.env import MLFLOW_ENV
from autowu_bench.platform.records.spec import TrialSpec

# Less start-up work per trial and less noise: no Train/Tune metrics exporters, no state tracking.
_RAY_ENV = {
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune's per-trial JSON/CSV/TensorBoard result files: the platform writes its own results.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_DEDUP_LOGS": "0",
    # run_suite.py handles SIGINT and SIGTERM itself (stop the trials, write the tables, exit 130);
    # Tune's own handler would end the run quietly, as if it had finished.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # The Train controller polls its workers this often (default 2 s): it paces start-up and the end.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # A busy 2-core machine can take more than the default 60 s to start a worker group.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600",
    # The local instance's dashboard waits this long for each of its modules (default 30 s): on a busy
    # machine one (MetricsHead) took longer and ray.init failed. Read by the dashboard's process.
    "RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT": "300",
    # Trial drivers and workers log to MLflow: they need its environment before they import it.
    **MLFLOW_ENV,
}

_SETUP_HOOK = "autowu_bench.platform.execution.ray_cluster.quiet_ray_logs"

# AutoWU's warnings about a trial's schedule that ``checks.autowu_density.schedule_warnings`` prints once at planning,
# with the arms and batch sizes they concern; each trial's controller would repeat them through Ray's log
# forwarding. Regexes of ``warnings.filterwarnings`` (matched at the start of the message).
PLANNING_WARNINGS = (r"test_interval=.* lets the LR grow",)


def quiet_ray_logs() -> None:
    """Ray worker setup hook: Train's INFO lines would drown the progress line; warnings and errors
    still show, except
    :data:`PLANNING_WARNINGS`, which ``run_suite.py`` already printed once at planning (AutoWU used
    directly, outside these Ray processes, still warns).

    It also pins RAY_ADDRESS to this worker's own cluster: Ray Train's placement-group cleaner looks the
    cluster up by address and fails ("multiple active Ray instances") when another Ray runs on the machine.
    """
    import ray

    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    silence_planning_warnings()
    logging.getLogger("ray.train").setLevel(logging.WARNING)


def silence_planning_warnings() -> None:
    """Ignore :data:`PLANNING_WARNINGS` in this process (a Ray worker: the setup hook calls it)."""
    for message in PLANNING_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


class RaySession:
    """The Ray a suite started or joined; :meth:`close` ends it (idempotent), at the latest when the
    ``with ray_session(...)`` block exits. An interrupted suite closes it early, so that no trial writes
    to the run folder while the tables of what finished are collected. ``restore_console``: what gives
    Ray's output back to the console after shutdown (``ray_logs.route_ray_output``), or None."""

    def __init__(self, address: str | None, restore_console: Callable[[], None] | None = None) -> None:
        self.address = address
        self.restore_console = restore_console
        self.closed = False

    def close(self) -> None:
        import ray

        if self.closed:
            return
        self.closed = True
        # Noted before shutdown, while they are still below the local instance's processes.
        started = processes.descendants(_local_ray_pids()) if self.address is None else set()
        ray.shutdown()
        if self.restore_console is not None:
            self.restore_console()
        killed = processes.kill_survivors(started)
        if killed:
            print(f"stopped {len(killed)} Ray process(es) left running after shutdown: pids "
                  f"{sorted(pid for pid, _ in killed)}", file=sys.stderr, flush=True)

    def kill(self) -> None:
        """At once, no clean-up: SIGKILL every process of the local instance (a joined cluster's are not
        this driver's to kill: they end their work when the driver's job goes)."""
        if self.address is None:
            processes.kill_now(processes.descendants(_local_ray_pids()))


@contextmanager
def ray_session(
    address: str | None, *, num_cpus: int | None = None, object_store_memory: int | None = None,
    log_path: Path | None = None,
) -> Iterator[RaySession]:
    """Ray for the duration of a suite.

    Args:
        address: None starts a new local Ray instance, never attaching to another one on the machine
            (the object store bounded, the dashboard on 127.0.0.1: see below); "auto" or "ray://..."
            joins a cluster.
        num_cpus: CPUs of the local instance (default: all of the machine's).
        object_store_memory: bytes of the local object store (default 300 MB: trials pass little data).
        log_path: the file that Ray's output (its processes', the raylet's, the ``ray`` logger's) goes to
            while the session lasts (``ray_logs``); None leaves it on the console.
    """
    import ray

    restore_console = route_ray_output(log_path) if log_path is not None else None
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    # A value already in the environment wins, so each of these can be tuned per run.
    runtime_env = {"env_vars": {k: os.environ[k] for k in _RAY_ENV}, "worker_process_setup_hook": _SETUP_HOOK}
    try:
        _init(ray, address, num_cpus=num_cpus, object_store_memory=object_store_memory, runtime_env=runtime_env)
    except BaseException:
        if restore_console is not None:
            restore_console()
        raise
    session = RaySession(address, restore_console)
    try:
        yield session
    finally:
        session.close()


def _init(ray, address: str | None, *, num_cpus: int | None, object_store_memory: int | None,
          runtime_env: dict) -> None:
    if address is None:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            object_store_memory=object_store_memory or 300 * 1024**2,
            # The dashboard serves Ray's State API, which Ray Train's placement-group cleaner asks
            # whether a trial's Train controller is still alive. A controller killed from outside (Tune
            # stopping a trial ASHA cut short, a trial's process dying) leaves its worker group's
            # placement group, and the cores it holds, to that cleaner: without the State API it never
            # learns the controller died, and the next trials wait for those cores forever.
            include_dashboard=_dashboard_installed(),
            dashboard_host="127.0.0.1",
            log_to_driver=True,
            configure_logging=True,
            logging_level="WARNING",
            runtime_env=runtime_env,
        )
    else:
        ray.init(address=address, logging_level="WARNING", runtime_env=runtime_env)


def _dashboard_installed() -> bool:
    """Whether Ray's dashboard can start here: a minimal Ray (``pip install ray`` without ``[default]``)
    lacks its packages, and ``include_dashboard=True`` then fails ``ray.init``. Without it a trial whose
    Train controller is killed from outside keeps its cores (see ``ray_session``): said, not refused."""
    from ray._private import utils

    error = getattr(utils, "get_dashboard_dependency_error", lambda: None)()  # Ray's private API
    if error is not None:
        print(f"warning: Ray's dashboard cannot start ({error}; pip install 'ray[default]'): a trial whose Train "
              "controller is killed from outside (a search's scheduler stopping it, a crash) keeps its cores "
              "until the suite ends", file=sys.stderr, flush=True)
    return error is None


def _local_ray_pids() -> list[int]:
    """The processes this driver's local Ray instance started (raylet, GCS, ...): Ray's private API, so
    nothing when it changes."""
    import ray

    try:
        infos = ray._private.worker._global_node.all_processes.values()
        return [info.process.pid for group in infos for info in group]
    except AttributeError:
        return []


def cluster_problems(trials: list[TrialSpec], *, can_grow: bool = False) -> list[str]:
    """What the running cluster cannot give the trials (call inside :func:`ray_session`).

    A GPU trial on a cluster with no GPU at all is always a problem. ``can_grow`` (a joined cluster,
    whose autoscaler may add nodes while trials wait) skips the checks against what it holds now.
    """
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    problems = []
    for spec in trials:
        need_cpu = spec.num_workers * spec.cpus_per_worker
        need_gpu = spec.num_workers * (spec.gpus_per_worker or (1.0 if spec.use_gpu else 0.0))
        if spec.use_gpu and gpus == 0:
            problems.append(
                f"trial {spec.trial_id}: use_gpu=true but the cluster has no GPUs; set resources.use_gpu "
                "to false or join a cluster with GPUs (--address; if its GPU nodes are still starting, "
                "wait until `ray status` lists them)"
            )
            continue
        if can_grow:
            continue
        if need_gpu > gpus:
            problems.append(
                f"trial {spec.trial_id}: needs {need_gpu:g} GPUs ({spec.num_workers} workers) but the "
                f"cluster has {gpus:g}; lower resources.workers_per_trial"
            )
        if need_cpu > cpus:
            problems.append(
                f"trial {spec.trial_id}: needs {need_cpu:g} CPUs ({spec.num_workers} workers x "
                f"{spec.cpus_per_worker:g}) but the cluster has {cpus:g}; lower resources.workers_per_trial or "
                "resources.cpus_per_worker"
            )
    return problems


def default_concurrency(trials: list[TrialSpec]) -> int:
    """How many trials the cluster holds at once, by the largest trial's CPUs (or GPUs): what it holds now
    or, on a joined cluster with an autoscaler, what it can grow to (:func:`autoscaler_max_resources`), so
    that trials wait for nodes the autoscaler adds instead of running one at a time on the nodes up now."""
    import ray

    resources = dict(ray.cluster_resources())
    if not _local_ray_pids():  # a joined cluster (a local instance this driver started cannot grow)
        for key, value in (autoscaler_max_resources() or {}).items():
            resources[key] = max(resources.get(key, 0.0), value)
    return concurrency_for(trials, resources)


def concurrency_for(trials: list[TrialSpec], resources: dict[str, float]) -> int:
    """How many of the largest of ``trials`` fit in ``resources`` at once (at least 1)."""
    fits = []
    for spec in trials:
        if spec.use_gpu:
            per_trial = spec.num_workers * (spec.gpus_per_worker or 1.0)
            fits.append(resources.get("GPU", 0.0) / per_trial)
        per_trial = spec.num_workers * spec.cpus_per_worker
        if per_trial > 0:
            fits.append(resources.get("CPU", 0.0) / per_trial)
    return max(1, int(math.floor(min(fits)))) if fits else 1


# Where `ray up` leaves the cluster's launcher config on the head node (the --autoscaling-config its
# head_start_ray_commands give); AUTOWU_AUTOSCALING_CONFIG names another one.
AUTOSCALING_CONFIG = "~/ray_bootstrap_config.yaml"


def autoscaler_max_resources(path: str | None = None) -> dict[str, float] | None:
    """The resources a cluster can grow to under its autoscaler: the head node's plus each worker node
    type's times its ``max_workers`` (each capped by the cluster's ``max_workers``), from a cluster
    launcher config (``cluster.yaml``'s form). None when there is no such file or it gives no node types."""
    import yaml

    path = os.path.expanduser(path or os.environ.get("AUTOWU_AUTOSCALING_CONFIG") or AUTOSCALING_CONFIG)
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    types = (config or {}).get("available_node_types") if isinstance(config, dict) else None
    if not isinstance(types, dict):
        return None
    cap = config.get("max_workers")
    total: dict[str, float] = {}
    for name, node_type in types.items():
        resources = node_type.get("resources") or {}
        if name == config.get("head_node_type"):
            count = 1
        else:
            count = node_type.get("max_workers", node_type.get("min_workers", 0))
            count = min(count, cap) if isinstance(cap, int) else count
        for key, value in resources.items():
            total[key] = total.get(key, 0.0) + float(value) * count
    return total


def tracking_host(address: str | None) -> str:
    """Where the suite's own MLflow server listens: 127.0.0.1 for a local Ray; on a joined cluster (call
    it after joining) the address Ray knows this node by, since the trials on other nodes log to it."""
    if address is None:
        return "127.0.0.1"
    import ray.util

    return ray.util.get_node_ip_address()


def tracking_reach_problem(tracking_uri: str) -> str | None:
    """Why trials on other machines of the joined cluster can never log to ``tracking_uri``, or None
    (call inside :func:`ray_session`): a server on this machine's loopback address while the cluster
    has, or its autoscaler can add, nodes on other machines."""
    import ray.util
    from urllib.parse import urlparse

    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    nodes = _nodes_elsewhere()
    if nodes is None:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return (f"the tracking URI {tracking_uri} is this machine's loopback address: the trials on the cluster's "
            f"{nodes} cannot log to it; use an address they reach "
            f"({parsed.scheme}://{ray.util.get_node_ip_address()}:{port}), or leave the tracking URI unset "
            "and the suite's own MLflow server listens where they reach it")


def tracking_reach_warning(tracking_uri: str) -> str | None:
    """A warning when ``tracking_uri`` is a path (a sqlite file, a folder) on a joined cluster with nodes
    on other machines: their trials log to the same path on their own disks unless a file system every
    node mounts holds it, which only the user knows. None otherwise (call inside :func:`ray_session`)."""
    from urllib.parse import urlparse

    if urlparse(tracking_uri).scheme not in ("", "file", "sqlite"):
        return None
    nodes = _nodes_elsewhere()
    if nodes is None:
        return None
    return (f"the tracking URI {tracking_uri} is a path: the trials on the cluster's {nodes} write it on their "
            "own disks unless every node mounts it (a shared file system); otherwise use an MLflow server "
            "they reach, or leave the tracking URI unset")


def _nodes_elsewhere() -> str | None:
    """The cluster's nodes on other machines than this one, in words ("nodes at 10.0.0.7, ...", or "the
    nodes its autoscaler adds"); None when every node is this machine and none can be added."""
    import ray
    import ray.util

    here = ray.util.get_node_ip_address()
    elsewhere = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")} - {here})
    if elsewhere:
        return f"nodes at {', '.join(elsewhere)}"
    return None if autoscaler_max_resources() is None else "nodes its autoscaler adds"
