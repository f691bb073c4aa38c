"""MLflow tracking: the suite's parent run, one nested child run per trial, rank 0's recorder.

Layout in MLflow: an experiment per suite (named after it), a parent run per ``run_suite.py``
invocation (provenance tags, the suite file as an artifact, at the end the table and the Parquet
files), and a child run per trial (``mlflow.parentRunId`` tag; params = the whole TrialSpec; tags
arm / kind / decay / optimizer / workload / batch_size / seed, ``group`` = "<workload> b<batch>",
``grid_point`` for baselines, and ``optimizer_label`` with, where the optimizer has one,
``optimizer_note``: "reconstruction" for CLARS). Only two kinds of process write a
trial's run: the trial driver (``start_trial_run`` / ``end_trial_run``) and rank 0's
``TrialRecorder``; other ranks never log.

Metrics of a child run (MLflow ``step`` = optimizer steps taken, so every chart shares one x axis):
  lr, train_loss                    every step, sent in batches (``log_batch``), never one call a step
  epoch, val_loss, val_acc, ...     every epoch: whatever the trial passes to ``log_epoch``
  autowu_p_<i>                      every AutoWU test: the probability of vote i that the minimum is behind
  autowu_positive_votes, autowu_positive (0/1), autowu_decision (0 negative, 1 positive, 2 switch,
                                    3 divergence)
  event_<name>                      1 at the step of an event such as a rollback
  summary metrics                   at the end (test_acc, best_val_acc, switch_epoch, device_hours, ...)

The local server is ``mlflow_server.LocalMlflowServer``; the Parquet fragments that ``TrialRecorder``
writes beside its metrics are ``results.FragmentWriter``'s. A process that logs sets ``MLFLOW_ENV``
first (``apply_process_env``, see ``mlflow_env``): importing this module leaves the environment alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from autowu_bench.platform.files import write_atomic
from autowu_bench.platform.results import FragmentWriter, plain
from autowu_bench.platform.spec import TrialSpec
from autowu_bench.schedulers.autowu import Decision

TRIAL_TAGS = ("trial_id", "arm", "kind", "decay", "optimizer", "workload", "batch_size", "seed")
STATUSES = ("FINISHED", "FAILED", "KILLED")
# MLflow 3's UI opens an experiment of unknown kind on its GenAI overview (traces); this kind opens the
# runs table and its charts, where trials are compared.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
DECISION_CODES = {Decision.NEGATIVE: 0, Decision.POSITIVE: 1, Decision.SWITCH: 2, Decision.DIVERGENCE: 3}
# MLflow's limits per log_batch request (mlflow.utils.validation): 1000 metrics, 100 params or tags.
_METRICS_PER_CALL = 1000
_PARAMS_PER_CALL = 100
RECORDED_STEP_FILE = "recorded_step"  # TrialRecorder: the highest step it has sent, for a restart


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- experiments and the parent run ------------------------------------------------------------------


def experiment_id(tracking_uri: str, name: str) -> str:
    """The id of the experiment ``name``, created when missing (safe when two processes race)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
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
    repo = Path(__file__).resolve().parents[2]
    commit = _git(repo, "rev-parse", "HEAD")
    tags["git_commit"] = commit or "unknown (not a git checkout)"
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git_dirty"] = str(bool(_git(repo, "status", "--porcelain", "--untracked-files=no")))
    return tags


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
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
    client = _client(tracking_uri)
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
    client = _client(tracking_uri)
    for path in paths:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path)


def run_experiment_id(tracking_uri: str, run_id: str) -> str:
    """The experiment a run belongs to (the report's links to trial runs need it)."""
    return _client(tracking_uri).get_run(run_id).info.experiment_id


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """A resumed suite's parent run, RUNNING again (its params, tags and artifacts stay as they were)."""
    _client(tracking_uri).update_run(run_id, status="RUNNING")


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status={status!r} must be one of {STATUSES}")
    _client(tracking_uri).set_terminated(run_id, status)


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
    for i in range(0, len(params), _PARAMS_PER_CALL):
        client.log_batch(run_id, params=params[i : i + _PARAMS_PER_CALL], synchronous=True)


def trial_group(spec: TrialSpec) -> str:
    """The ``group`` tag: the trials that compete with each other, ``"<workload> b<batch_size>"``."""
    return f"{spec.workload} b{spec.batch_size}"


def grid_point(spec: TrialSpec) -> str | None:
    """A baseline trial's ``grid_point`` tag, ``"lr 0.004, wu 2"`` (None for other trials)."""
    if spec.kind != "baseline" or spec.peak_lr is None or spec.warmup_epochs is None:
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
    if spec.kind == "autowu":
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
    client = _client(tracking_uri)
    if parent_run_id is not None:
        exp_id = client.get_run(parent_run_id).info.experiment_id
        earlier = client.search_runs(
            [exp_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.trial_id = '{spec.trial_id}'",
            max_results=1,
        )
        if earlier:
            run_id = earlier[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return run_id
    else:
        exp_id = experiment_id(tracking_uri, spec.suite)
    tags = trial_tags(spec)
    if parent_run_id is not None:
        tags["mlflow.parentRunId"] = parent_run_id
    run_id = client.create_run(exp_id, run_name=spec.trial_id, tags=tags).info.run_id
    _log_params(client, run_id, spec.to_dict())
    return run_id


def end_trial_run(tracking_uri: str | None, run_id: str | None, status: str, summary: dict) -> None:
    """Summary numbers as metrics, summary text as ``summary.<key>`` tags, then the final status."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r} must be one of {STATUSES}")
    if tracking_uri is None or run_id is None:
        return
    log_summary(tracking_uri, run_id, summary)
    _client(tracking_uri).set_terminated(run_id, status)


def log_summary(tracking_uri: str, run_id: str, summary: dict) -> None:
    """Numbers (and booleans) as metrics at step 0, other non-empty values as ``summary.<key>`` tags."""
    from mlflow.entities import Metric, RunTag

    client = _client(tracking_uri)
    now = _now_ms()
    metrics, tags = [], []
    for key, value in summary.items():
        if isinstance(value, (bool, int, float)):
            metrics.append(Metric(_metric_key(key), float(value), now, 0))
        elif value is not None:
            tags.append(RunTag(f"summary.{key}", str(value)[:5000]))
    for i in range(0, len(metrics), _METRICS_PER_CALL):
        client.log_batch(run_id, metrics=metrics[i : i + _METRICS_PER_CALL], synchronous=True)
    for i in range(0, len(tags), _PARAMS_PER_CALL):
        client.log_batch(run_id, tags=tags[i : i + _PARAMS_PER_CALL], synchronous=True)


def close_open_children(tracking_uri: str, parent_run_id: str, status: str = "KILLED") -> list[str]:
    """Mark every child run of the parent still RUNNING (a trial killed before it could end its run)
    with ``status``; returns their run ids."""
    client = _client(tracking_uri)
    exp_id = client.get_run(parent_run_id).info.experiment_id
    open_runs = client.search_runs(
        [exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'"
    )
    for run in open_runs:
        client.set_terminated(run.info.run_id, status)
    return [run.info.run_id for run in open_runs]


def _metric_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(key))


# -- the per-trial recorder ----------------------------------------------------------------------------


class TrialRecorder:
    """Rank 0's writer for one trial: MLflow metrics in batches, and the same rows as Parquet fragments
    (``results.FragmentWriter``) for the results tables.

    Everything is buffered; ``flush()`` (every epoch) sends the buffered metrics with as few
    ``log_batch`` calls as MLflow's 1000-metric limit allows, then writes the buffered rows as fragments
    under ``trial_dir/fragments``. An MLflow error only warns: the fragments still hold every row.
    After each flush the highest step sent so far is written to ``trial_dir/recorded_step``; a worker
    that resumed from a checkpoint calls :meth:`resume`, and the steps, epochs and tests at or below
    that step (sent before the failure, now replayed) are not sent again. Events are not filtered.
    Outside ``run_suite.py`` (whose processes get it), call ``apply_process_env()`` before logging.

    Args:
        tracking_uri: MLflow URI; None (or ``run_id`` None) writes Parquet only.
        run_id: the trial's child run from ``start_trial_run``.
        trial_dir: the trial's folder (its name is the trial id unless ``trial_id`` is given).
    """

    def __init__(
        self, tracking_uri: str | None, run_id: str | None, trial_dir: str | os.PathLike, trial_id: str | None = None
    ) -> None:
        self.run_id = run_id
        self.trial_dir = Path(trial_dir)
        self.trial_id = trial_id or self.trial_dir.name
        self.writer = FragmentWriter(self.trial_dir)
        self.fragments = self.writer.folder
        self._client = _client(tracking_uri) if tracking_uri and run_id else None
        self._metrics: list[Any] = []
        self._skip_through = 0  # steps at or below this were sent by an earlier attempt (``resume``)
        self._sent_through = 0

    def resume(self) -> int:
        """After a restart (from a checkpoint or from the start): skip what the failed attempts had sent (the
        steps at or below ``recorded_step``); returns that step (0 when none was recorded)."""
        path = self.trial_dir / RECORDED_STEP_FILE
        self._skip_through = int(path.read_text()) if path.is_file() else 0
        self._sent_through = self._skip_through
        return self._skip_through

    def _new(self, step: int) -> bool:
        return int(step) > self._skip_through

    def _metric(self, key: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self._metrics.append(Metric(key, float(value), _now_ms(), int(step)))

    def log_steps(self, steps: Sequence[int], lrs: Sequence[float], losses: Sequence[float]) -> None:
        """Per-step ``lr`` and ``train_loss`` (the all-reduced mean loss of that step)."""
        if not len(steps) == len(lrs) == len(losses):
            raise ValueError(f"steps, lrs and losses differ in length: {len(steps)}, {len(lrs)}, {len(losses)}")
        for step, lr, loss in zip(steps, lrs, losses):
            step, lr, loss = int(step), float(lr), float(loss)
            if not self._new(step):
                continue
            self._sent_through = max(self._sent_through, step)
            self.writer.add("curves", {"trial_id": self.trial_id, "step": step, "lr": lr, "train_loss": loss})
            self._metric("lr", lr, step)
            self._metric("train_loss", loss, step)
        if len(self._metrics) >= 10 * _METRICS_PER_CALL:
            self._send()  # a long epoch must not hold unbounded metrics in memory

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        """Per-epoch metrics (val_loss, val_acc, epoch_seconds, images_per_second, ...) at ``step``."""
        if not self._new(step):
            return
        row = {"trial_id": self.trial_id, "epoch": int(epoch), "step": int(step)}
        self._metric("epoch", epoch, step)
        for key, value in metrics.items():
            row[key] = None if value is None else float(value)
            if value is not None:
                self._metric(_metric_key(key), value, step)
        self.writer.add("epochs", row)

    def log_tests(self, records: Iterable[dict[str, Any]]) -> None:
        """AutoWU test records (``AutoWUCore.tests`` entries): p per vote, positive votes, the decision."""
        for record in records:
            step = int(record["step"])
            if not self._new(step):
                continue
            self.writer.add("tests", {"trial_id": self.trial_id, **plain(record)})
            for i, p in enumerate(record.get("p") or []):
                self._metric(f"autowu_p_{i}", p, step)
            votes = record.get("votes")
            if votes is not None:
                self._metric("autowu_positive_votes", sum(bool(v) for v in votes), step)
            self._metric("autowu_positive", bool(record.get("positive")), step)
            if record.get("decision") in DECISION_CODES:
                self._metric("autowu_decision", DECISION_CODES[record["decision"]], step)

    def log_event(self, name: str, step: int, **info: Any) -> None:
        """An event such as ``rollback``: metric ``event_<name>`` = 1 at ``step``, a row in events.parquet."""
        self.writer.add("events", {"trial_id": self.trial_id, "name": name, "step": int(step),
                                   "info": json.dumps(plain(info))})
        self._metric(f"event_{_metric_key(name)}", 1.0, step)
        if self._client is not None:
            self._safely(lambda: self._client.set_tag(self.run_id, f"event.{name}", json.dumps({"step": step, **plain(info)})[:5000]))

    def flush(self) -> None:
        """Send the buffered metrics to MLflow and append the buffered rows as Parquet fragments."""
        self._send()
        self.writer.flush()
        if self._sent_through > self._skip_through:
            write_atomic(self.trial_dir / RECORDED_STEP_FILE, str(self._sent_through))

    def _send(self) -> None:
        metrics, self._metrics = self._metrics, []
        if self._client is None:
            return
        for i in range(0, len(metrics), _METRICS_PER_CALL):
            chunk = metrics[i : i + _METRICS_PER_CALL]
            self._safely(lambda: self._client.log_batch(self.run_id, metrics=chunk, synchronous=True))

    def _safely(self, call: Any) -> None:
        # Training outlives a tracking hiccup: the Parquet fragments still hold every row.
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - any client/network error
            warnings.warn(f"MLflow logging for trial {self.trial_id} failed ({exc}); the Parquet results keep the data")
