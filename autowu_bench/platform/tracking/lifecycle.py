"""A run's start and end through its spool: the trial driver's ``open_trial`` / ``close_trial`` (a
trial's child run) and the suite's ``spool_artifacts`` / ``spool_summary`` / ``spool_end`` (the parent
run). Each appends operations (``operations``) to the spool and, for a trial, sends them waiting a
bounded time (``delivery.send_within``); what MLflow does not take by then stays spooled.

Only two kinds of process write a trial's run: the trial driver (``open_trial`` / ``close_trial``) and
rank 0's ``trial_logger.TrialLogger``; other ranks never log.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.tracking import operations
from autowu_bench.platform.tracking.client import end_status, summary_items
from autowu_bench.platform.tracking.operations import CloseChildren, CreateRun, LogArtifacts, SetStatus
from autowu_bench.platform.tracking.spool import Spool
from autowu_bench.platform.tracking.delivery import send_within

# How long the trial driver waits for MLflow at a trial's start and at its end; what is not sent by then
# stays spooled (the suite's end, --sync and --resume send it). A server that is down fails at once
# (seconds of retries); this bounds a slow one, as a busy 2-core machine's can be.
DRIVER_WAIT_SECONDS = 60.0


def open_trial(tracking_uri: str | None, parent_run_id: str | None, spec: TrialSpec,
               trial_dir: str | os.PathLike, *, wait: float = DRIVER_WAIT_SECONDS) -> str | None:
    """The trial driver's start: spool the creation of the trial's child run (``start_trial_run``: a
    restarted trial takes its run up again) and send it, waiting at most ``wait`` seconds. Returns the
    run id, or None without tracking or while MLflow is away (the run is then created when the spool
    is sent: by rank 0's trial logger, the trial's end, the suite's end or ``--sync``). Never raises for
    MLflow: a trial does not wait on tracking."""
    if tracking_uri is None:
        return None
    spool = Spool.of(trial_dir)
    spool.append([CreateRun(parent=parent_run_id, spec=spec.to_dict())])
    if not send_within(spool, tracking_uri, wait):
        warnings.warn(f"MLflow at {tracking_uri} did not create trial {spec.trial_id}'s run within {wait:.0f} s: the "
                      f"trial runs on, its tracking spooled in {spool.folder} and sent once MLflow answers")
    return spool.run_id


def close_trial(tracking_uri: str | None, trial_dir: str | os.PathLike, status: str, summary: dict, *,
                wait: float = DRIVER_WAIT_SECONDS) -> bool:
    """The trial driver's end: spool the summary (``summary_items``) and the final status,
    then send what the trial's spool holds, waiting at most ``wait`` seconds. True when all of it is in
    MLflow; what is left stays spooled. Never raises for MLflow: the trial's summary.json is already
    written and is what counts."""
    status = end_status(status)
    if tracking_uri is None:
        return True
    spool = Spool.of(trial_dir)
    if not spool.exists():
        return True  # the trial never opened tracking
    spool.append(operations.batches(*summary_items(summary)) + [SetStatus(status)])
    done = send_within(spool, tracking_uri, wait)
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
        [LogArtifacts(paths=[str(Path(p).absolute()) for p in paths], dir=artifact_path)])


def spool_summary(run_dir: str | os.PathLike, run_id: str, summary: dict) -> None:
    """Spool the parent run's summary (``summary_items``)."""
    _parent_spool(run_dir, run_id).append(operations.batches(*summary_items(summary)))


def spool_end(run_dir: str | os.PathLike, run_id: str, status: str, children_status: str) -> None:
    """Spool the parent run's end: its children still RUNNING closed with ``children_status``
    (``close_open_children``), then its own ``status``."""
    status, children_status = end_status(status), end_status(children_status)
    _parent_spool(run_dir, run_id).append([CloseChildren(children_status), SetStatus(status)])


def _parent_spool(run_dir: str | os.PathLike, run_id: str) -> Spool:
    spool = Spool.of(run_dir)
    spool.set_run_id(run_id)
    return spool
