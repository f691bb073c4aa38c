"""What a launch needs from this machine and its network, checked before anything starts: a results
folder it can write, with room for the trials' checkpoints; a Ray cluster and an MLflow tracking server
that answer (each within a few seconds, not after Ray's or MLflow's minutes of retries); a working folder
it can write when it starts its own MLflow server.

Each check returns problems, one line each, naming the value, what is wrong and the fix, like the suite's
own (``suite.errors``). ``run_suite.py`` prints them and exits with status 2 before it creates the run folder;
``--dry-run`` prints the local ones as warnings (the folders may exist on the cluster only) and skips
the network ones (``network=False``). Nothing here writes a file or starts a process.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.suite.schema import Suite, local_path

CONNECT_TIMEOUT_S = 5.0
RAY_CLIENT_PORT = 10001  # ray://HOST means ray://HOST:10001
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
_NAMED_URIS = ("databricks", "databricks-uc")  # tracking URIs without a scheme that are no local path
_RAY_FIX = ("start the cluster (`ray up cluster.yaml`, or `ray start --head` on this machine), fix --address "
            "(default: AUTOWU_RAY_ADDRESS), or leave it unset to start a local Ray instance")
_TRACKING_FIX = ("start the server, or fix --tracking-uri (default: MLFLOW_TRACKING_URI) or the suite's "
                 "tracking_uri; with neither set, run_suite.py starts a local MLflow server")


def environment_problems(suite: Suite, trials: list[TrialSpec], *, address: str | None, network: bool) -> list[str]:
    """Every problem this machine has with running ``trials`` of ``suite`` (``address``: ``--address``);
    ``network``: also whether the Ray cluster and the tracking server answer."""
    problems = results_problems(suite.results)
    if not problems:
        problems += checkpoint_disk_problems(trials, suite.results)
    problems += tracking_problems(suite.tracking_uri, network=network)
    problems += ray_job_problems(suite.results, None if suite.tracking_uri else Path.cwd())
    if network:
        problems += address_problems(address)
    return problems


# What Ray Jobs sets for a job's command (ray/_private/runtime_env/constants.py); its folder is then the
# job's copy of --working-dir, which Ray deletes with the job's runtime environment.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def ray_job_problems(results: str, server_store: str | Path | None) -> list[str]:
    """Run as a Ray job (``ray job submit``): what would be written inside the job's working_dir copy and
    lost with it: the results folder (a new run's, or the run folder being resumed) and ``server_store``,
    the folder of the suite's own MLflow server's ``mlflow.db`` (None: a tracking URI was given)."""
    if RAY_JOB_ENV not in os.environ:
        return []
    here = Path.cwd().resolve()
    problems = []
    if Path(results).expanduser().resolve().is_relative_to(here):
        problems.append(
            f"results {str(results)!r}: a Ray job's folder ({here}) is its copy of --working-dir, which Ray "
            "deletes after the job; pass --results with a folder outside it (on cluster.yaml's cluster: "
            "/mnt/shared/autowu-bench/runs)")
    if server_store is not None and Path(server_store).expanduser().resolve().is_relative_to(here):
        problems.append(
            f"tracking: with no tracking URI the suite's own MLflow server keeps its store in {server_store}, "
            f"inside a Ray job's copy of --working-dir ({here}), which Ray deletes after the job; pass "
            "--tracking-uri (on cluster.yaml's cluster: the head's server, http://<head private IP>:5000)")
    return problems


# -- folders and disk --------------------------------------------------------------------------------


def results_problems(results: str) -> list[str]:
    """Whether the run folder can be created under ``results`` (the suite's field, or ``--results``)."""
    why = unwritable(local_path(results).absolute())
    if why is None:
        return []
    return [(f"results {results!r}: cannot write there ({why}); give a writable folder with --results "
             "(default: AUTOWU_RESULTS) or the suite's results")]


def unwritable(path: Path) -> str | None:
    """Why a folder cannot be created or written at ``path``, or None; judged from the nearest folder
    that exists (on its permissions and file system), without writing anything."""
    existing = path
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    return None


@functools.cache
def checkpoint_bytes(workload: str, optimizer: str) -> int:
    """About the size of one checkpoint of a trial: the model's state dict plus the optimizer's state
    (``OptimizerInfo.state_tensors`` tensors of each parameter's size), counted on the meta device (no
    memory, no weights); the LR trace, RNG states and schedule state are small beside them."""
    import torch

    from autowu_bench.workloads import get_workload
    from autowu_bench.workloads.optimizers import OPTIMIZER_INFO

    with torch.device("meta"):
        model = get_workload(workload).build_model()
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return state + OPTIMIZER_INFO[optimizer].state_tensors * params


def checkpoint_disk_problems(trials: list[TrialSpec], results: str) -> list[str]:
    """Whether the disk of ``results`` has room for every trial's kept checkpoints (Ray Train stores
    them under the run folder, ``CHECKPOINTS_KEPT`` per trial, and a finished trial keeps its own)."""
    from autowu_bench.platform.records.trial_folder import CHECKPOINTS_KEPT

    if not trials:
        return []
    sizes = {(t.workload, t.optimizer): checkpoint_bytes(t.workload, t.optimizer) for t in trials}
    need = CHECKPOINTS_KEPT * sum(sizes[t.workload, t.optimizer] for t in trials)
    folder = local_path(results).absolute()
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need <= free:
        return []
    (workload, optimizer), biggest = max(sizes.items(), key=lambda item: item[1])
    return [(
        f"results {results!r}: the trials' checkpoints need about {_size(need)} ({len(trials)} trials x "
        f"{CHECKPOINTS_KEPT} kept, up to {_size(biggest)} each: {workload}'s model and {optimizer} state) but "
        f"{folder} has {_size(free)} free; free some space there, give --results on a larger disk, or run "
        "fewer trials (--only)"
    )]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


# -- the network -------------------------------------------------------------------------------------


def unreachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing accepts a TCP connection at ``host:port`` within ``timeout`` seconds, or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    except ValueError as exc:  # a host name socket cannot encode
        return str(exc)


def address_endpoint(address: str) -> tuple[str, int] | None:
    """The (host, port) that an ``--address`` names; None for "auto" (found when the launch checks);
    ValueError saying what a Ray address looks like otherwise."""
    if address == "auto":
        return None
    client = address.startswith("ray://")
    try:
        parts = urlsplit(address if client else f"//{address}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    else:
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            host = None
    if not host or (port is None and not client):
        raise ValueError(
            "not a Ray address; give 'auto' (the cluster this machine belongs to), HOST:PORT (its GCS, "
            "port 6379 by default) or ray://HOST:10001 (Ray Client)"
        )
    return host, port or RAY_CLIENT_PORT


def address_problems(address: str | None, *, timeout: float = CONNECT_TIMEOUT_S) -> list[str]:
    """Whether the Ray cluster ``address`` (None: a new local instance, nothing to check) answers."""
    if address is None:
        return []
    try:
        endpoint = address_endpoint(address)
    except ValueError as exc:
        return [f"--address {address!r}: {exc}"]
    if endpoint is None:
        endpoint, problem = _running_cluster()
        if problem is not None:
            return [f"--address 'auto': {problem}; {_RAY_FIX}"]
        if endpoint is None:
            return []  # Ray's lookup is not there: ray.init reports what it finds
    why = unreachable(*endpoint, timeout=timeout)
    if why is None:
        return []
    return [f"--address {address!r}: nothing answers at {endpoint[0]}:{endpoint[1]} ({why}); {_RAY_FIX}"]


def _running_cluster() -> tuple[tuple[str, int] | None, str | None]:
    """(host, port) of the GCS that ``ray.init(address="auto")`` would join, or why there is none. Ray's
    own lookup, a private API: (None, None) when it is not there."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:
        return None, None
    try:
        found = canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as exc:
        return None, " ".join(str(exc).split())
    host, _, port = found.rpartition(":")
    return (host.strip("[]"), int(port)), None


def tracking_problems(tracking_uri: str | None, *, network: bool, timeout: float = CONNECT_TIMEOUT_S) -> list[str]:
    """Whether MLflow can log to ``tracking_uri``: a server that answers (``network``), a store whose
    folder can be written, or, with none (None), the working folder for the local server's mlflow.db."""
    if tracking_uri is None:
        why = unwritable(Path.cwd())
        if why is None:
            return []
        return [(f"tracking_uri: none given, so a local MLflow server would keep mlflow.db in the working "
                 f"folder, but {why}; run from a writable folder or give --tracking-uri")]
    try:
        parts = urlsplit(tracking_uri)
        scheme = parts.scheme.lower().split("+")[0]
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        return [f"tracking_uri {tracking_uri!r}: not a URI ({exc}); {_TRACKING_FIX}"]
    if scheme in _DEFAULT_PORTS:
        if not host:
            return [f"tracking_uri {tracking_uri!r}: names no host; give {scheme}://HOST:PORT"]
        port = port or _DEFAULT_PORTS[scheme]
        why = unreachable(host, port, timeout=timeout) if network else None
        if why is None:
            return []
        return [f"tracking_uri {tracking_uri!r}: nothing answers at {host}:{port} ({why}); {_TRACKING_FIX}"]
    if scheme == "sqlite":
        path = tracking_uri.split(":///", 1)[1] if ":///" in tracking_uri else ""
        store = str(Path(path).parent) if path and path != ":memory:" else None
    elif scheme == "file" or (not scheme and tracking_uri not in _NAMED_URIS):
        store = parts.path if scheme == "file" else tracking_uri  # MLflow's file store: a folder
    else:
        return []  # databricks, uc, ...: their own login; MLflow reports what fails
    try:
        why = None if store is None else unwritable(local_path(store).absolute())
    except ValueError as exc:
        why = str(exc)
    if why is None:
        return []
    return [f"tracking_uri {tracking_uri!r}: the store cannot be written ({why}); {_TRACKING_FIX}"]
