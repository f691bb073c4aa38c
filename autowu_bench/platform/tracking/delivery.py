"""Sending spools to MLflow: what a trial's spool (``<trial>/mlflow-spool``) or the suite's
(``<run>/mlflow-spool``) holds, in order, each operation acknowledged once MLflow took it.

Tracking never holds training up and drops nothing while MLflow is away: a trial's operations (its
run's creation, metric batches, tags, its summary and final status) and the parent run's end
(artifacts, summary, closing the children, its status) are appended to a spool on disk
(``spool.Spool``, the operations of ``operations``) and sent from there in order: by rank 0's sender
thread during the trial (``trial_logger``), by the trial driver at the start and end (each a bounded wait,
``lifecycle``), by the suite's end, ``run_suite.py --sync`` and ``--resume`` (:func:`send_spools`).
MLflow's HTTP client gives up after seconds (``tracking.env``); the spool tries again later.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from autowu_bench.platform.tracking import operations
from autowu_bench.platform.tracking.client import mlflow_client
from autowu_bench.platform.records.trial_folder import TrialFolder
from autowu_bench.platform.tracking.spool import REJECTED_FILE, Spool

# How often ``send_spools`` tries again within its ``patience``.
PATIENCE_PAUSE = 2.0


class MlflowAway(Exception):
    """MLflow could not be reached (no answer, a timeout, a 5xx or 429 answer): try again later."""


@dataclass
class DeliveryReport:
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


def send_spool(spool: Spool, tracking_uri: str, report: DeliveryReport, *,
               hold: tuple[type[operations.Operation], ...] = (), stop: threading.Event | None = None) -> bool:
    """Send ``spool``'s operations in order, acknowledging each; stops before an operation of a kind in
    ``hold``. True when it got to the end (or to a held operation); False when another sender holds
    the spool or ``stop`` was set. Raises :class:`MlflowAway` (what is left stays spooled)."""
    with spool.sending() as mine:
        if not mine:
            return False
        mlflow = None
        for end, op in spool.pending():
            if stop is not None and stop.is_set():
                return False
            if isinstance(op, hold):
                return True
            if isinstance(op, operations.Unreadable):
                spool.reject(op, op.reason)
                report.rejected += 1
            else:
                mlflow = mlflow or mlflow_client(tracking_uri)
                try:
                    report.points += op.send(tracking_uri, mlflow, spool)
                    report.sent += 1
                except Exception as exc:  # sorted into "away" and "refused" below
                    if _away(exc):
                        raise MlflowAway(f"{type(exc).__name__}: {exc}"[:500]) from exc
                    spool.reject(op, f"{type(exc).__name__}: {exc}"[:2000])
                    report.rejected += 1
                    warnings.warn(f"MLflow refused a spooled {op.KIND!r} operation of {spool.folder} ({exc}); "
                                  f"it is kept in {REJECTED_FILE} there")
            spool.ack(end)
        spool.compact()
        return True


def send_spools(run_dir: str | os.PathLike, tracking_uri: str, *, patience: float = 0.0) -> DeliveryReport:
    """Send what every trial's spool and the parent run's spool in ``run_dir`` still hold to MLflow at
    ``tracking_uri``; returns what was sent and what is left.

    Each spool is sent in order and each operation is acknowledged once MLflow took it, so calling this
    again (after a crash, from another command) sends only what is left, and what was sent twice is
    taken once (see ``spool``). The trials go first; the parent run's ``close_children`` and final
    status wait until no trial has anything left, so a finished trial is never closed as FAILED
    because its own end was still spooled. A pass stops at the first sign that MLflow is away; with
    ``patience`` (seconds) passes are retried every ``PATIENCE_PAUSE`` s until everything is sent or
    the time is up.
    Used by the suite's end, ``run_suite.py --sync RUN_DIR`` and ``--resume``."""
    run_dir = Path(run_dir)
    trials = [folder.path for folder in TrialFolder.all(run_dir) if folder.spool_dir.is_dir()]
    parent = Spool.of(run_dir)
    report = DeliveryReport()
    deadline = time.monotonic() + patience
    while True:
        report.error = None
        try:
            for folder in trials:
                send_spool(Spool.of(folder), tracking_uri, report)
            if parent.exists():
                held = any(not Spool.of(folder).empty() for folder in trials)
                send_spool(parent, tracking_uri, report, hold=(operations.CloseChildren,) if held else ())
        except MlflowAway as exc:
            report.error = str(exc)
        left = [(folder.name, Spool.of(folder).left()) for folder in trials]
        if parent.exists():
            left.append(("suite", parent.left()))
        left = [(name, n) for name, n in left if n]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(PATIENCE_PAUSE, deadline - time.monotonic())))
    report.left = sum(n for _, n in left)
    report.spools_left = [name for name, _ in left]
    return report


def send_within(spool: Spool, tracking_uri: str, seconds: float) -> bool:
    """Send ``spool`` on a helper thread for at most ``seconds`` (one HTTP request can outlast any
    check between requests); True when it is empty by then. Never raises."""
    failed: list[BaseException] = []

    def send() -> None:
        try:
            send_spool(spool, tracking_uri, DeliveryReport())
        except Exception as exc:  # noqa: BLE001 - the caller only learns "not everything was sent"
            failed.append(exc)

    thread = threading.Thread(target=send, name=f"mlflow-spool {spool.folder.parent.name}", daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive() and not failed and spool.empty()
