"""One trial's folder, ``<run_dir>/trials/<trial_id>/``: the name of every file in it, and the one writer of
its summary (``summary.json``).

What a trial folder holds, and who writes it:

    summary.json            how the trial ended (:class:`~autowu_bench.platform.records.outcome.TrialOutcome`):
                            :meth:`TrialFolder.end` only, for every end (see :class:`EndedBy`)
    driver.json             the trial driver's start and fit start (:meth:`TrialFolder.note_driver`): what a
                            search's callback needs to time a trial that Tune stopped
    attempts / restarts     rank 0's counts of worker-group starts, and of those that followed a failure
    worker-rank<r>.json     where each rank of the latest worker group runs (pid, host, Ray node)
    lr_rank<r>.parquet      each rank's applied LRs
    fragments/              the results' Parquet fragments (``records.tables.FragmentWriter``)
    recorded_step           the highest step rank 0 has recorded: what a restarted worker group skips
    mlflow-spool/           the trial's MLflow operations (``tracking.spool``; the run folder has one too)

The checkpoints are not in it: Ray Train keeps ``CHECKPOINTS_KEPT`` of them per trial under
``<run_dir>/ray/train/<trial_id>``, each a folder holding ``CHECKPOINT_FILE``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from autowu_bench.platform.records.files import write_atomic
from autowu_bench.platform.records.outcome import TrialOutcome, TrialStatus

TRIALS_DIR = "trials"
SUMMARY_FILE = "summary.json"
DRIVER_FILE = "driver.json"
ATTEMPTS_FILE = "attempts"  # worker-group starts of the trial (rank 0)
RESTARTS_FILE = "restarts"  # those of them that followed a failure (rank 0)
WORKER_FILE = "worker-rank{rank}.json"
LR_TRACE_FILE = "lr_rank{rank}.parquet"
FRAGMENTS_DIR = "fragments"
RECORDED_STEP_FILE = "recorded_step"
SPOOL_DIR = "mlflow-spool"
CHECKPOINT_FILE = "state.pt"  # in each of Ray Train's checkpoint folders of the trial
CHECKPOINTS_KEPT = 2  # per trial, in Ray Train's storage under the run folder (the free-disk check counts them)


class EndedBy(StrEnum):
    """Who records a trial's end. It decides whether the end replaces a summary already in the folder
    (:meth:`TrialFolder.end`)."""

    DRIVER = "driver"  # the trial driver, however its fit ended: always written
    TUNE_COMPLETED = "tune-completed"  # Tune completed the trial (a search's callback): replaces a failure only
    PROCESS_DIED = "process-died"  # Tune saw the trial's process die: replaces an earlier run's summary only
    SUITE_END = "suite-end"  # the suite's end, for a trial Tune recorded an error of: written where none is


@dataclass(frozen=True)
class DriverNote:
    """``driver.json``: ``time.time()`` when the trial driver started and when it started the fit."""

    started: float | None = None
    fit_started: float | None = None


@dataclass(frozen=True)
class TrialFolder:
    """The folder ``path`` of one trial (its name is the trial id)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of(cls, run_dir: str | os.PathLike, trial_id: str) -> "TrialFolder":
        """The folder of trial ``trial_id`` in the run folder ``run_dir``."""
        return cls(Path(run_dir) / TRIALS_DIR / trial_id)

    @classmethod
    def all(cls, run_dir: str | os.PathLike) -> list["TrialFolder"]:
        """Every trial folder of ``run_dir``, by trial id."""
        trials = Path(run_dir) / TRIALS_DIR
        return [cls(p) for p in sorted(trials.iterdir()) if p.is_dir()] if trials.is_dir() else []

    @property
    def trial_id(self) -> str:
        return self.path.name

    def create(self) -> "TrialFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # -- the files ------------------------------------------------------------------------------------

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def attempts_path(self) -> Path:
        return self.path / ATTEMPTS_FILE

    @property
    def restarts_path(self) -> Path:
        return self.path / RESTARTS_FILE

    @property
    def recorded_step_path(self) -> Path:
        return self.path / RECORDED_STEP_FILE

    @property
    def fragments(self) -> Path:
        return self.path / FRAGMENTS_DIR

    @property
    def spool_dir(self) -> Path:
        return self.path / SPOOL_DIR

    def worker_path(self, rank: int) -> Path:
        return self.path / WORKER_FILE.format(rank=rank)

    def lr_trace_path(self, rank: int) -> Path:
        return self.path / LR_TRACE_FILE.format(rank=rank)

    # -- driver.json ----------------------------------------------------------------------------------

    def note_driver(self, **times: float) -> None:
        """Add ``started`` / ``fit_started`` to ``driver.json`` (atomically; the driver is its one writer)."""
        note = asdict(self.driver_note()) | times
        write_atomic(self.path / DRIVER_FILE, json.dumps({k: v for k, v in note.items() if v is not None}))

    def driver_note(self) -> DriverNote:
        """What the trial driver noted; empty when it noted nothing (or the file cannot be read)."""
        try:
            values = json.loads((self.path / DRIVER_FILE).read_text())
        except (OSError, ValueError):
            return DriverNote()
        return DriverNote(values.get("started"), values.get("fit_started"))

    # -- summary.json ---------------------------------------------------------------------------------

    def summary(self) -> TrialOutcome | None:
        """The trial's summary; None when it has none yet."""
        path = self.summary_path
        return TrialOutcome.from_dict(json.loads(path.read_text())) if path.is_file() else None

    def end(self, outcome: TrialOutcome, by: EndedBy) -> bool:
        """Record how the trial ended as its summary, written atomically (a reader never sees half a file),
        unless the summary already there stands (:meth:`replaces`). True when written; an ``OSError`` (a
        full disk) is raised."""
        if not self.replaces(self.summary(), by):
            return False
        self.create()
        write_atomic(self.summary_path, json.dumps(outcome.to_dict(), indent=2, default=str))
        return True

    def replaces(self, written: TrialOutcome | None, by: EndedBy) -> bool:
        """Whether an end recorded ``by`` replaces the summary ``written`` (None: there is none).

        The driver's end always does: it saw the fit end. A search's callback for a trial Tune completed
        replaces only a failure (the driver may take the teardown of Tune's stop, ASHA's, for a failure:
        a trial Tune completed did not fail); for a trial whose process died, only an earlier run's summary
        (one that ended before this run's driver started: it was interrupted then), since a summary this
        run's driver wrote is the better record. The suite's end writes only where there is none."""
        if written is None or by is EndedBy.DRIVER:
            return True
        if by is EndedBy.TUNE_COMPLETED:
            return written.status is TrialStatus.FAILED
        if by is EndedBy.PROCESS_DIED:
            started = self.driver_note().started
            return (written.ended_at or 0.0) < (time.time() if started is None else started)
        return False
