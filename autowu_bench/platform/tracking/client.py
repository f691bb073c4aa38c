"""MLflow client calls: the suite's experiment and parent run, one nested child run per trial, their
params, tags, summaries and statuses. Each call here talks to MLflow at once; what a running trial or
the suite's end logs goes through a spool instead (``operations``, ``delivery``), whose operations call these.

Layout in MLflow: an experiment per suite (named after it), a parent run per ``run_suite.py``
invocation (provenance tags, the suite file as an artifact, at the end the table and the Parquet
files), and a child run per trial (``mlflow.parentRunId`` tag; params = the whole TrialSpec; tags
arm / kind / decay / optimizer / workload / batch_size / seed, ``group`` = "<workload> b<batch>",
``grid_point`` for baselines, and ``optimizer_label`` with, where the optimizer has one,
``optimizer_note``: "reconstruction" for CLARS).

Statuses are :class:`RunStatus` members (a ``StrEnum``: each equals, and is written to MLflow and the
spool as, MLflow's own string). A process that logs sets ``MLFLOW_ENV`` first (``apply_process_env``,
see ``tracking.env``): importing this module leaves the environment alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from autowu_bench.platform.records.spec import TrialKind, TrialSpec


class RunStatus(StrEnum):
    """An MLflow run's status; each member equals MLflow's string for it (``RunStatus.KILLED == "KILLED"``)."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


# The statuses a run can end with (``end_run``, ``close_trial``, ``spool_end``).
STATUSES = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)
TRIAL_TAGS = ("trial_id", "arm", "kind", "decay", "optimizer", "workload", "batch_size", "seed")
# MLflow 3's UI opens an experiment of unknown kind on its GenAI overview (traces); this kind opens the
# runs table and its charts, where trials are compared.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# MLflow's limits per log_batch request (mlflow.utils.validation): 1000 metrics, 100 params or tags.
METRICS_PER_CALL = 1000
PARAMS_PER_CALL = 100


def end_status(status: str) -> RunStatus:
    """``status`` as the :class:`RunStatus` a run ends with; ValueError unless it is one of ``STATUSES``."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r} must be one of {tuple(str(s) for s in STATUSES)}")
    return RunStatus(status)


def mlflow_client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- experiments and the parent run ------------------------------------------------------------------


def experiment_id(tracking_uri: str, name: str) -> str:
    """The id of the experiment ``name``, created when missing (safe when two processes race)."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, tags=EXPERIMENT_TAGS)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def provenance() -> dict[str, str]:
    """Versions and the code's git commit, as MLflow tags of the parent run."""
    import mlflow
    import pyarrow as pa
    import ray
    import torch

    tags = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "mlflow": mlflow.__version__,
        "pyarrow": pa.__version__,
        "cuda": str(torch.version.cuda),
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "None",
        "host": platform.node(),
        "platform": platform.platform(),
        "driver_device": (
            torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        ),
        "command": " ".join(sys.argv),
    }
    repo = Path(__file__).resolve().parents[3]
    commit = _git(repo, "rev-parse", "HEAD")
    tags["git_commit"] = commit or "unknown (not a git checkout)"
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git_dirty"] = str(bool(_git(repo, "status", "--porcelain", "--untracked-files=no")))
    return tags


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def start_parent_run(
    tracking_uri: str,
    suite_name: str,
    *,
    run_name: str,
    suite_file: str | os.PathLike | None = None,
    resolved_suite: str | None = None,
    params: dict[str, Any] | None = None,
) -> str:
    """The parent run of one suite invocation, with provenance tags and the suite as artifacts."""
    client = mlflow_client(tracking_uri)
    run = client.create_run(
        experiment_id(tracking_uri, suite_name), run_name=run_name,
        tags={"suite": suite_name, "role": "suite", **provenance()},
    )
    run_id = run.info.run_id
    if suite_file is not None:
        client.log_artifact(run_id, str(suite_file), "suite")
    if resolved_suite is not None:
        client.log_text(run_id, resolved_suite, "suite/resolved.yaml")
    if params:
        _log_params(client, run_id, params)
    return run_id


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[str | os.PathLike], artifact_path: str | None = None) -> None:
    """Upload files to a run (missing files are skipped)."""
    client = mlflow_client(tracking_uri)
    for path in paths:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path)


def run_experiment_id(tracking_uri: str, run_id: str) -> str:
    """The experiment a run belongs to (the report's links to trial runs need it)."""
    return mlflow_client(tracking_uri).get_run(run_id).info.experiment_id


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """A resumed suite's parent run, RUNNING again (its params, tags and artifacts stay as they were)."""
    mlflow_client(tracking_uri).update_run(run_id, status=str(RunStatus.RUNNING))


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    status = end_status(status)
    mlflow_client(tracking_uri).set_terminated(run_id, str(status))


# -- trial runs --------------------------------------------------------------------------------------


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"autowu": {"test_interval": "auto"}}`` -> ``{"autowu.test_interval": "auto"}``; values as text."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return flat


def _log_params(client: Any, run_id: str, values: dict[str, Any]) -> None:
    from mlflow.entities import Param

    params = [Param(k, v[:6000]) for k, v in flatten(values).items()]
    for i in range(0, len(params), PARAMS_PER_CALL):
        client.log_batch(run_id, params=params[i : i + PARAMS_PER_CALL], synchronous=True)


def trial_group(spec: TrialSpec) -> str:
    """The ``group`` tag: the trials that compete with each other, ``"<workload> b<batch_size>"``."""
    return f"{spec.workload} b{spec.batch_size}"


def grid_point(spec: TrialSpec) -> str | None:
    """A baseline trial's ``grid_point`` tag, ``"lr 0.004, wu 2"`` (None for other trials)."""
    if spec.kind is not TrialKind.BASELINE or spec.peak_lr is None or spec.warmup_epochs is None:
        return None
    return f"lr {spec.peak_lr:.4g}, wu {spec.warmup_epochs:g}"


def trial_tags(spec: TrialSpec) -> dict[str, str]:
    """A child run's tags: the spec's ``TRIAL_TAGS``, ``group`` (workload and batch size: what to group
    by in the MLflow UI), the optimizer's ``optimizer_label`` and ``optimizer_note`` (if it has one) and, per kind, ``test_interval`` or ``grid_point`` / ``peak_lr`` /
    ``warmup_epochs`` / ``is_default``."""
    from autowu_bench.workloads.optimizers import OPTIMIZER_INFO

    tags = {name: str(getattr(spec, name)) for name in TRIAL_TAGS}
    tags["group"] = trial_group(spec)
    info = OPTIMIZER_INFO.get(spec.optimizer)
    if info is not None:
        tags["optimizer_label"] = info.label
        if info.note:
            tags["optimizer_note"] = info.note
    if spec.kind is TrialKind.AUTOWU:
        tags["test_interval"] = str(spec.test_interval)
    else:
        tags.update(peak_lr=f"{spec.peak_lr:g}", warmup_epochs=f"{spec.warmup_epochs:g}",
                    is_default=str(spec.is_default))
        point = grid_point(spec)
        if point is not None:
            tags["grid_point"] = point
    return tags


def start_trial_run(tracking_uri: str | None, parent_run_id: str | None, spec: TrialSpec) -> str | None:
    """The trial's child run under the parent (same experiment); None when there is no tracking.

    A restarted trial (Tune retry, resumed suite) gets its earlier child run back, set RUNNING again,
    so a trial never has two runs.
    """
    if tracking_uri is None:
        return None
    client = mlflow_client(tracking_uri)
    if parent_run_id is not None:
        exp_id = client.get_run(parent_run_id).info.experiment_id
        earlier = client.search_runs(
            [exp_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.trial_id = '{spec.trial_id}'",
            max_results=1,
        )
        if earlier:
            run_id = earlier[0].info.run_id
            client.update_run(run_id, status=str(RunStatus.RUNNING))
            return run_id
    else:
        exp_id = experiment_id(tracking_uri, spec.suite)
    tags = trial_tags(spec)
    if parent_run_id is not None:
        tags["mlflow.parentRunId"] = parent_run_id
    run_id = client.create_run(exp_id, run_name=spec.trial_id, tags=tags).info.run_id
    _log_params(client, run_id, spec.to_dict())
    return run_id


def summary_items(summary: dict) -> tuple[list[list], dict[str, str]]:
    """A summary as MLflow sees it: numbers (and booleans) as metrics ``[key, value, timestamp, 0]``,
    other non-empty values as ``summary.<key>`` tags (spooled by ``lifecycle.close_trial`` and
    ``spool_summary``)."""
    now = now_ms()
    points, tags = [], {}
    for key, value in summary.items():
        if isinstance(value, (bool, int, float)):
            points.append([metric_key(key), float(value), now, 0])
        elif value is not None:
            tags[f"summary.{key}"] = str(value)[:5000]
    return points, tags


def close_open_children(tracking_uri: str, parent_run_id: str, status: str = RunStatus.KILLED) -> list[str]:
    """Mark every child run of the parent still RUNNING (a trial killed before it could end its run)
    with ``status``; returns their run ids."""
    client = mlflow_client(tracking_uri)
    exp_id = client.get_run(parent_run_id).info.experiment_id
    open_runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = '{RunStatus.RUNNING}'",
    )
    for run in open_runs:
        client.set_terminated(run.info.run_id, str(status))
    return [run.info.run_id for run in open_runs]


def metric_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(key))
