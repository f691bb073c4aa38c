"""MLflow tracking: the suite's parent run, one nested child run per trial, rank 0's recorder.

Layout in MLflow: an experiment per suite (named after it), a parent run per ``run_suite.py``
invocation (provenance tags, the suite file as an artifact, at the end the table and the Parquet
files), and a child run per trial (``mlflow.parentRunId`` tag; params = the whole TrialSpec; tags
arm / kind / decay / optimizer / workload / batch_size / seed, ``group`` = "<workload> b<batch>",
``grid_point`` for baselines, and ``optimizer_label`` with, where the optimizer has one,
``optimizer_note``: "reconstruction" for CLARS). Only two kinds of process write a
trial's run: the trial driver (``open_trial`` / ``close_trial``) and rank 0's ``TrialRecorder``;
other ranks never log.

Tracking never holds training up and drops nothing while MLflow is away: a trial's operations (its run's
creation, metric batches, tags, its summary and final status) and the parent run's end (artifacts,
summary, closing the children, its status) are appended to a spool on disk (``spool.Spool``:
``<trial>/mlflow-spool``, ``<run>/mlflow-spool``) and sent from there in order: by rank 0's sender
thread during the trial, by the trial driver at the start and end (each a bounded wait), by the
suite's end, ``run_suite.py --sync`` and ``--resume`` (:func:`send_spools`). MLflow's HTTP client
gives up after seconds (``tracking.env``); the spool tries again later.

Metrics of a child run (MLflow ``step`` = optimizer steps taken, so every chart shares one x axis):
  lr, train_loss                    every step, sent in batches (``log_batch``), never one call a step
  epoch, val_loss, val_acc, ...     every epoch: whatever the trial passes to ``log_epoch``
  autowu_p_<i>                      every AutoWU test: the probability of vote i that the minimum is behind
  autowu_positive_votes, autowu_positive (0/1), autowu_decision (0 negative, 1 positive, 2 switch,
                                    3 divergence)
  event_<name>                      1 at the step of an event such as a rollback
  replay<n>/<key>                   a step logged again for ``key`` (after an AutoWU rollback): each
                                    key holds each step once, ``lr`` the value first logged
  summary metrics                   at the end (test_acc, best_val_acc, switch_epoch, device_hours, ...)

The local server is ``tracking.server.LocalMlflowServer``; the Parquet fragments that ``TrialRecorder``
writes beside its metrics are ``records.tables.FragmentWriter``'s. A process that logs sets ``MLFLOW_ENV``
first (``apply_process_env``, see ``tracking.env``): importing this module leaves the environment alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autowu_bench.platform.records.files import write_atomic
from autowu_bench.platform.records.tables import FragmentWriter, plain
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.platform.tracking.spool import REJECTED_FILE, SPOOL_DIR, Spool
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
    points, tags = _summary_items(summary)
    metrics = [Metric(*point) for point in points]
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, len(metrics), _METRICS_PER_CALL):
        client.log_batch(run_id, metrics=metrics[i : i + _METRICS_PER_CALL], synchronous=True)
    for i in range(0, len(tag_list), _PARAMS_PER_CALL):
        client.log_batch(run_id, tags=tag_list[i : i + _PARAMS_PER_CALL], synchronous=True)


def _summary_items(summary: dict) -> tuple[list[list], dict[str, str]]:
    """``log_summary``'s metrics as ``[key, value, timestamp, 0]`` and its tags."""
    now = _now_ms()
    points, tags = [], {}
    for key, value in summary.items():
        if isinstance(value, (bool, int, float)):
            points.append([_metric_key(key), float(value), now, 0])
        elif value is not None:
            tags[f"summary.{key}"] = str(value)[:5000]
    return points, tags


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


# -- the spool: what goes to MLflow goes through a trial's (or the run's) spool --------------------------

# How long the trial driver waits for MLflow at a trial's start and at its end; what is not sent by then
# stays spooled (the suite's end, --sync and --resume send it). A server that is down fails at once
# (seconds of retries); this bounds a slow one, as a busy 2-core machine's can be.
DRIVER_WAIT_SECONDS = 60.0
# How long rank 0 waits at the trial's end for its sender to empty the spool, only while MLflow answers.
RECORDER_CLOSE_SECONDS = 10.0
# The sender's pause between tries while MLflow is away: from the first, doubling up to the last.
_RETRY_PAUSE = (1.0, 30.0)
# Buffered metrics beyond this go to the spool before the epoch ends: rank 0 never holds more.
_SPILL_METRICS = 10 * _METRICS_PER_CALL


class MlflowAway(Exception):
    """MLflow could not be reached (no answer, a timeout, a 5xx or 429 answer): try again later."""


@dataclass
class SyncReport:
    """What a sending pass did (``send_spools``).

    Attributes:
        sent: operations MLflow took (metric batches, tags, statuses, artifacts, run creations).
        points: metric values among them.
        rejected: operations MLflow refused outright (a 4xx answer); kept in the spool's rejected.jsonl.
        left: operations still spooled.
        spools_left: whose they are: trial ids, and ``"suite"`` for the parent run's.
        error: the error that left them (None when none is left, or another sender held a spool).
    """

    sent: int = 0
    points: int = 0
    rejected: int = 0
    left: int = 0
    spools_left: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.left == 0

    def describe(self) -> str:
        text = f"sent {self.sent} tracking operations ({self.points} metric values)"
        if self.rejected:
            text += f"; MLflow refused {self.rejected} (kept in their spool's {REJECTED_FILE})"
        if self.left:
            whose = ", ".join(self.spools_left[:5]) + (", ..." if len(self.spools_left) > 5 else "")
            text += f"; {self.left} left in {len(self.spools_left)} spools ({whose})"
            if self.error:
                text += f": {self.error}"
        return text


def _away(exc: BaseException) -> bool:
    """Whether ``exc`` means "MLflow is not there now" (retry) rather than "MLflow refuses this" (drop it
    into rejected.jsonl): network errors, timeouts and 5xx or 429 answers are the former."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return status >= 500 or status == 429
    return isinstance(exc, OSError)


def _apply(tracking_uri: str, client: Any, spool: Spool, op: dict[str, Any]) -> int:
    """Carry out one spooled operation; returns the metric values it logged."""
    from mlflow.entities import Metric, RunTag

    kind = op.get("op")
    run_id = spool.run_id
    if kind == "create":
        if run_id is None:
            spool.set_run_id(start_trial_run(tracking_uri, op.get("parent"), TrialSpec.from_dict(op["spec"])))
        else:  # the trial's run exists: a restarted trial takes it up again
            client.update_run(run_id, status="RUNNING")
        return 0
    if run_id is None:
        raise ValueError("the spool names no MLflow run and has no 'create' operation before this one")
    if kind == "metrics":
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in op["m"]], synchronous=True)
        return len(op["m"])
    if kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["t"].items()], synchronous=True)
    elif kind == "status":
        if op["status"] == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:
            end_run(tracking_uri, run_id, op["status"])
    elif kind == "artifacts":
        log_artifacts(tracking_uri, run_id, [Path(p) for p in op["paths"]], op.get("dir"))
    elif kind == "close_children":
        close_open_children(tracking_uri, run_id, op["status"])
    else:
        raise ValueError(f"unknown spooled operation {kind!r}")
    return 0


def _send_spool(spool: Spool, tracking_uri: str, report: SyncReport, *, hold: tuple[str, ...] = (),
                stop: threading.Event | None = None) -> bool:
    """Send ``spool``'s operations in order, acknowledging each; stops before an operation whose kind is
    in ``hold``. True when it got to the end (or to a held operation); False when another sender holds
    the spool or ``stop`` was set. Raises :class:`MlflowAway` (what is left stays spooled)."""
    with spool.sending() as mine:
        if not mine:
            return False
        client = None
        for end, op in spool.pending():
            if stop is not None and stop.is_set():
                return False
            if op is not None and op.get("op") in hold:
                return True
            if op is None:
                spool.reject({"ends_at_byte": end}, "a line that does not parse (a write cut short by a crash)")
                report.rejected += 1
            else:
                client = client or _client(tracking_uri)
                try:
                    report.points += _apply(tracking_uri, client, spool, op)
                    report.sent += 1
                except Exception as exc:  # sorted into "away" and "refused" below
                    if _away(exc):
                        raise MlflowAway(f"{type(exc).__name__}: {exc}"[:500]) from exc
                    spool.reject(op, f"{type(exc).__name__}: {exc}"[:2000])
                    report.rejected += 1
                    warnings.warn(f"MLflow refused a spooled {op.get('op')!r} operation of {spool.folder} ({exc}); "
                                  f"it is kept in {REJECTED_FILE} there")
            spool.ack(end)
        spool.compact()
        return True


def send_spools(run_dir: str | os.PathLike, tracking_uri: str, *, patience: float = 0.0) -> SyncReport:
    """Send what every trial's spool and the parent run's spool in ``run_dir`` still hold to MLflow at
    ``tracking_uri``; returns what was sent and what is left.

    Each spool is sent in order and each operation is acknowledged once MLflow took it, so calling this
    again (after a crash, from another command) sends only what is left, and what was sent twice is
    taken once (see ``spool``). The trials go first; the parent run's ``close_children`` and final
    status wait until no trial has anything left, so a finished trial is never closed as FAILED
    because its own end was still spooled. A pass stops at the first sign that MLflow is away; with
    ``patience`` (seconds) passes are retried every 2 s until everything is sent or the time is up.
    Used by the suite's end, ``run_suite.py --sync RUN_DIR`` and ``--resume``."""
    run_dir = Path(run_dir)
    trials = sorted(p.parent for p in (run_dir / "trials").glob(f"*/{SPOOL_DIR}") if p.is_dir())
    parent = Spool.of(run_dir)
    report = SyncReport()
    deadline = time.monotonic() + patience
    while True:
        report.error = None
        try:
            for folder in trials:
                _send_spool(Spool.of(folder), tracking_uri, report)
            if parent.exists():
                held = any(not Spool.of(folder).empty() for folder in trials)
                _send_spool(parent, tracking_uri, report, hold=("close_children",) if held else ())
        except MlflowAway as exc:
            report.error = str(exc)
        left = [(folder.name, Spool.of(folder).left()) for folder in trials]
        if parent.exists():
            left.append(("suite", parent.left()))
        left = [(name, n) for name, n in left if n]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(2.0, deadline - time.monotonic())))
    report.left = sum(n for _, n in left)
    report.spools_left = [name for name, _ in left]
    return report


def _send_within(spool: Spool, tracking_uri: str, seconds: float) -> bool:
    """Send ``spool`` on a helper thread for at most ``seconds`` (one HTTP request can outlast any
    check between requests); True when it is empty by then. Never raises."""
    failed: list[BaseException] = []

    def send() -> None:
        try:
            _send_spool(spool, tracking_uri, SyncReport())
        except Exception as exc:  # noqa: BLE001 - the caller only learns "not everything was sent"
            failed.append(exc)

    thread = threading.Thread(target=send, name=f"mlflow-spool {spool.folder.parent.name}", daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive() and not failed and spool.empty()


def open_trial(tracking_uri: str | None, parent_run_id: str | None, spec: TrialSpec,
               trial_dir: str | os.PathLike, *, wait: float = DRIVER_WAIT_SECONDS) -> str | None:
    """The trial driver's start: spool the creation of the trial's child run (``start_trial_run``: a
    restarted trial takes its run up again) and send it, waiting at most ``wait`` seconds. Returns the
    run id, or None without tracking or while MLflow is away (the run is then created when the spool
    is sent: by rank 0's recorder, the trial's end, the suite's end or ``--sync``). Never raises for
    MLflow: a trial does not wait on tracking."""
    if tracking_uri is None:
        return None
    spool = Spool.of(trial_dir)
    spool.append([{"op": "create", "parent": parent_run_id, "spec": spec.to_dict()}])
    if not _send_within(spool, tracking_uri, wait):
        warnings.warn(f"MLflow at {tracking_uri} did not create trial {spec.trial_id}'s run within {wait:.0f} s: the "
                      f"trial runs on, its tracking spooled in {spool.folder} and sent once MLflow answers")
    return spool.run_id


def close_trial(tracking_uri: str | None, trial_dir: str | os.PathLike, status: str, summary: dict, *,
                wait: float = DRIVER_WAIT_SECONDS) -> bool:
    """The trial driver's end: spool the summary (as ``end_trial_run`` logs it) and the final status,
    then send what the trial's spool holds, waiting at most ``wait`` seconds. True when all of it is in
    MLflow; what is left stays spooled. Never raises for MLflow: the trial's summary.json is already
    written and is what counts."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r} must be one of {STATUSES}")
    if tracking_uri is None:
        return True
    spool = Spool.of(trial_dir)
    if not spool.exists():
        return True  # the trial never opened tracking
    points, tags = _summary_items(summary)
    spool.append(_batch_ops(points, tags) + [{"op": "status", "status": status}])
    done = _send_within(spool, tracking_uri, wait)
    if not done:
        warnings.warn(f"MLflow at {tracking_uri} did not take trial {Path(trial_dir).name}'s end: {spool.left()} "
                      f"operations stay spooled in {spool.folder} (run_suite.py --sync sends them)")
    return done


def spooled_run_id(trial_dir: str | os.PathLike) -> str | None:
    """The MLflow run of a trial's spool, once MLflow created it."""
    return Spool.of(trial_dir).run_id


def spool_artifacts(run_dir: str | os.PathLike, run_id: str, paths: Iterable[str | os.PathLike],
                    artifact_path: str | None = None) -> None:
    """Spool the upload of ``paths`` (as they are when sent) to the parent run ``run_id``."""
    _parent_spool(run_dir, run_id).append(
        [{"op": "artifacts", "paths": [str(Path(p).absolute()) for p in paths], "dir": artifact_path}])


def spool_summary(run_dir: str | os.PathLike, run_id: str, summary: dict) -> None:
    """Spool ``log_summary`` of the parent run."""
    _parent_spool(run_dir, run_id).append(_batch_ops(*_summary_items(summary)))


def spool_end(run_dir: str | os.PathLike, run_id: str, status: str, children_status: str) -> None:
    """Spool the parent run's end: its children still RUNNING closed with ``children_status``
    (``close_open_children``), then its own ``status``."""
    for value in (status, children_status):
        if value not in STATUSES:
            raise ValueError(f"status={value!r} must be one of {STATUSES}")
    _parent_spool(run_dir, run_id).append([{"op": "close_children", "status": children_status},
                                           {"op": "status", "status": status}])


def _parent_spool(run_dir: str | os.PathLike, run_id: str) -> Spool:
    spool = Spool.of(run_dir)
    spool.set_run_id(run_id)
    return spool


def _batch_ops(points: list[list], tags: dict[str, str]) -> list[dict[str, Any]]:
    """Spool operations for metric points ``[key, value, timestamp, step]`` and tags, each within
    MLflow's per-request limits."""
    ops = [{"op": "metrics", "m": points[i : i + _METRICS_PER_CALL]} for i in range(0, len(points), _METRICS_PER_CALL)]
    items = list(tags.items())
    ops += [{"op": "tags", "t": dict(items[i : i + _PARAMS_PER_CALL])} for i in range(0, len(items), _PARAMS_PER_CALL)]
    return ops


class _Sender:
    """A recorder's background thread: sends the trial's spool whenever it is nudged and, while MLflow
    is away, tries again after a pause that doubles from 1 s to 30 s. It warns once when MLflow goes
    away and once when it is back."""

    def __init__(self, spool: Spool, tracking_uri: str, name: str) -> None:
        self.spool, self.tracking_uri, self.name = spool, tracking_uri, name
        self.healthy = True  # the last pass reached MLflow
        self.error: str | None = None
        self.report = SyncReport()
        self._lock = threading.Lock()
        self._asked = 0
        self._wake, self._drained, self._stopping = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mlflow-spool {name}", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        with self._lock:
            self._asked += 1
            self._drained.clear()
        self._wake.set()

    def wait(self, timeout: float | None, *, while_reachable: bool = False) -> bool:
        """Wait until everything nudged so far is sent; False when ``timeout`` passed first or, with
        ``while_reachable``, as soon as a pass finds MLflow away."""
        if not while_reachable:
            return self._drained.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._drained.wait(0.05):
            if not self.healthy or (deadline is not None and time.monotonic() >= deadline):
                return False
        return True

    def stop(self) -> None:
        """Stop after the request in flight, if any (not waited for: it is a daemon thread)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(0.2)

    def _loop(self) -> None:
        pause = None
        while not self._stopping.is_set():
            self._wake.wait(pause)
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._lock:
                asked = self._asked
            try:
                finished = _send_spool(self.spool, self.tracking_uri, self.report, stop=self._stopping)
            except Exception as exc:  # noqa: BLE001 - MlflowAway, or a bug: the thread must live on
                if self.healthy:
                    warnings.warn(f"MLflow at {self.tracking_uri} is away ({exc}); trial {self.name} trains on, its "
                                  f"metrics are spooled in {self.spool.folder} and sent when MLflow answers")
                self.healthy, self.error = False, str(exc)
                pause = min(2 * pause, _RETRY_PAUSE[1]) if pause else _RETRY_PAUSE[0]
                continue
            if not finished:  # another sender held the spool, or stopping
                pause = _RETRY_PAUSE[0]
                continue
            if not self.healthy:
                warnings.warn(f"MLflow at {self.tracking_uri} answers again: trial {self.name}'s spool is sent")
            self.healthy, self.error, pause = True, None, None
            with self._lock:
                if asked == self._asked and self.spool.empty():
                    self._drained.set()


# -- the per-trial recorder ----------------------------------------------------------------------------


class TrialRecorder:
    """Rank 0's writer for one trial: MLflow metrics through the trial's spool, and the same rows as
    Parquet fragments (``records.tables.FragmentWriter``) for the results tables.

    Everything is buffered; ``flush()`` (every epoch) appends the buffered metrics to the trial's spool
    (``<trial_dir>/mlflow-spool``) in ``log_batch``-sized operations, wakes the recorder's sender thread
    and returns: training never waits on the network. The sender sends the spool in the background and,
    while MLflow is away, keeps it and tries again (see ``_Sender``); a long epoch spills to the spool
    every 10,000 metrics. ``close()`` (the trial's end) waits a bounded time for the sender; what is
    left is sent by the trial driver's end, the suite's end or ``run_suite.py --sync``.

    Each MLflow key holds each step once. A step logged again for a key (an AutoWU rollback replays the
    steps after the snapshot it restored) goes to a series of its own, ``replay<n>/<key>`` (n = 1 for the
    first replay of that step), so ``lr`` keeps the values first logged; the Parquet tables keep the
    last row of a step. After a worker restart, the recorder ``resume`` skips the steps, epochs and
    tests at or below ``recorded_step`` (written after each flush: the highest step spooled), which the
    failed attempt had already spooled. Events are not filtered. Outside ``run_suite.py`` (whose
    processes get it), call ``apply_process_env()`` before logging.

    Args:
        tracking_uri: MLflow URI; None writes Parquet only.
        run_id: the trial's child run (``open_trial``). None with a spool already opened by ``open_trial``
            (MLflow was away at the trial's start) logs into the run the spool creates; None without one
            writes Parquet only.
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
        self.tracking_uri = tracking_uri
        spool = Spool.of(self.trial_dir) if tracking_uri else None
        if spool is not None and run_id:
            spool.set_run_id(run_id)
        self.spool = spool if spool is not None and spool.exists() else None
        self._sender: _Sender | None = None
        self._points: list[list] = []  # [key, value, timestamp ms, step], not yet spooled
        self._tags: dict[str, str] = {}
        self._high: dict[str, int] = {}  # per MLflow key, the highest step logged to it
        self._skip_through = 0  # steps at or below this were spooled by an earlier attempt (``resume``)
        self._sent_through = 0

    def resume(self) -> int:
        """After a restart (from a checkpoint or from the start): skip what the failed attempts had spooled
        (the steps at or below ``recorded_step``); returns that step (0 when none was recorded)."""
        path = self.trial_dir / RECORDED_STEP_FILE
        self._skip_through = int(path.read_text()) if path.is_file() else 0
        self._sent_through = self._skip_through
        return self._skip_through

    def _new(self, step: int) -> bool:
        return int(step) > self._skip_through

    def _metric(self, key: str, value: float, step: int, *, replayable: bool = True) -> None:
        if self.spool is None:
            return
        step = int(step)
        if replayable:
            key = self._series(key, step)
        self._points.append([key, float(value), _now_ms(), step])

    def _series(self, key: str, step: int) -> str:
        """``key``, or ``replay<n>/<key>`` for the n-th time ``step`` comes to ``key`` again."""
        name, n = key, 0
        while name in self._high and step <= self._high[name]:
            n += 1
            name = f"replay{n}/{key}"
        self._high[name] = step
        return name

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
        if len(self._points) >= _SPILL_METRICS:
            self._spool_buffered()  # a long epoch must not hold unbounded metrics in memory

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
        """An event such as ``rollback``: metric ``event_<name>`` = 1 at ``step``, tag ``event.<name>``, a row
        in events.parquet."""
        self.writer.add("events", {"trial_id": self.trial_id, "name": name, "step": int(step),
                                   "info": json.dumps(plain(info))})
        self._metric(f"event_{_metric_key(name)}", 1.0, step, replayable=False)
        if self.spool is not None:
            self._tags[f"event.{name}"] = json.dumps({"step": step, **plain(info)})[:5000]

    def flush(self) -> None:
        """Spool the buffered metrics (the sender sends them) and append the buffered rows as Parquet
        fragments; never waits on MLflow."""
        self._spool_buffered()
        self.writer.flush()
        if self._sent_through > self._skip_through:
            write_atomic(self.trial_dir / RECORDED_STEP_FILE, str(self._sent_through))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the spool is sent; False when ``timeout`` (seconds) passed first (it stays spooled)."""
        return True if self._sender is None else self._sender.wait(timeout)

    def close(self, timeout: float = RECORDER_CLOSE_SECONDS) -> bool:
        """The trial's end on rank 0: flush, wait up to ``timeout`` seconds for the sender (not at all while
        MLflow is away) and stop it. True when everything reached MLflow; the rest stays spooled."""
        self.flush()
        sender, self._sender = self._sender, None
        if sender is None:
            return self.spool is None or self.spool.empty()
        done = sender.wait(timeout, while_reachable=True)
        sender.stop()
        return done

    def _spool_buffered(self) -> None:
        points, self._points = self._points, []
        tags, self._tags = self._tags, {}
        if self.spool is None or not (points or tags):
            return
        try:
            self.spool.append(_batch_ops(points, tags))
        except OSError as exc:  # a full disk: the fragments will fail too and say so
            warnings.warn(f"trial {self.trial_id}: {len(points)} metrics could not be spooled ({exc})")
            return
        if self._sender is None:
            self._sender = _Sender(self.spool, self.tracking_uri, self.trial_id)
        self._sender.nudge()
