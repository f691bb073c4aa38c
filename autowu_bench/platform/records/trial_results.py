"""Rank 0's results of one trial as it trains: the rows of the results tables, appended as Parquet fragments
(``tables.FragmentWriter``), each also handed to a metrics logger (the MLflow one is
``tracking.trial_logger.TrialLogger``), and what a restarted worker group skips.

Rows: ``curves`` (per step: lr, train_loss), ``epochs`` (per epoch: val_loss, val_acc, ...), ``tests``
(AutoWU's test records) and ``events`` (a rollback, a restart...); see ``tables`` for the tables they make.

After a worker restart, :meth:`TrialResults.resume` skips the steps, epochs and tests at or below
``recorded_step`` (written after each flush: the highest step recorded), which the failed attempt had
already recorded, so that neither the fragments nor MLflow get a replayed step twice from a restart.
Events are not filtered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from autowu_bench.platform.records.files import write_atomic
from autowu_bench.platform.records.tables import FragmentWriter, plain
from autowu_bench.platform.records.trial_folder import TrialFolder
from autowu_bench.schedulers.switch_tests import SwitchTest


class MetricsLogger(Protocol):
    """Where :class:`TrialResults` hands each new row (``tracking.trial_logger.TrialLogger``)."""

    def log_steps(self, steps: Sequence[int], lrs: Sequence[float], losses: Sequence[float]) -> None: ...

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, float | None]) -> None: ...

    def log_tests(self, records: Sequence[SwitchTest]) -> None: ...

    def log_event(self, name: str, step: int, **info: Any) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> bool: ...


class TrialResults:
    """Rank 0's writer of one trial's result rows.

    Everything is buffered; ``flush()`` (every epoch) hands the logger's buffer on (it never waits on the
    network), appends the rows as fragments and notes the highest step recorded.

    Args:
        trial_dir: the trial's folder (its name is the trial id unless ``trial_id`` is given).
        logger: gets every row that is not skipped, as metrics; None: Parquet only.
    """

    def __init__(self, trial_dir: str | os.PathLike, trial_id: str | None = None,
                 logger: MetricsLogger | None = None) -> None:
        self.folder = TrialFolder(trial_dir)
        self.trial_id = trial_id or self.folder.trial_id
        self.writer = FragmentWriter(self.folder.path)
        self.logger = logger
        self._skip_through = 0  # steps at or below this were recorded by an earlier attempt (``resume``)
        self._recorded_through = 0

    def resume(self) -> int:
        """After a restart (from a checkpoint or from the start): skip what the failed attempts had recorded
        (the steps at or below ``recorded_step``); returns that step (0 when none was recorded)."""
        path = self.folder.recorded_step_path
        self._skip_through = int(path.read_text()) if path.is_file() else 0
        self._recorded_through = self._skip_through
        return self._skip_through

    def _new(self, step: int) -> bool:
        return int(step) > self._skip_through

    def log_steps(self, steps: Sequence[int], lrs: Sequence[float], losses: Sequence[float]) -> None:
        """Per-step ``lr`` and ``train_loss`` (the all-reduced mean loss of that step)."""
        if not len(steps) == len(lrs) == len(losses):
            raise ValueError(f"steps, lrs and losses differ in length: {len(steps)}, {len(lrs)}, {len(losses)}")
        new = [(int(s), float(lr), float(loss)) for s, lr, loss in zip(steps, lrs, losses) if self._new(s)]
        for step, lr, loss in new:
            self._recorded_through = max(self._recorded_through, step)
            self.writer.add("curves", {"trial_id": self.trial_id, "step": step, "lr": lr, "train_loss": loss})
        if new and self.logger is not None:
            kept_steps, kept_lrs, kept_losses = zip(*new)
            self.logger.log_steps(kept_steps, kept_lrs, kept_losses)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, float | None]) -> None:
        """Per-epoch metrics (val_loss, val_acc, epoch_seconds, images_per_second, ...) at ``step``."""
        if not self._new(step):
            return
        row = {"trial_id": self.trial_id, "epoch": int(epoch), "step": int(step)}
        row.update({key: None if value is None else float(value) for key, value in metrics.items()})
        self.writer.add("epochs", row)
        if self.logger is not None:
            self.logger.log_epoch(epoch, step, metrics)

    def log_tests(self, records: Iterable[SwitchTest]) -> None:
        """AutoWU test records (``AutoWUCore.tests`` entries)."""
        new = [record for record in records if self._new(record.step)]
        for record in new:
            self.writer.add("tests", {"trial_id": self.trial_id, **record.to_dict()})
        if new and self.logger is not None:
            self.logger.log_tests(new)

    def log_event(self, name: str, step: int, **info: Any) -> None:
        """An event such as ``rollback`` at ``step``: a row in events.parquet (``info`` as JSON)."""
        self.writer.add("events", {"trial_id": self.trial_id, "name": name, "step": int(step),
                                   "info": json.dumps(plain(info))})
        if self.logger is not None:
            self.logger.log_event(name, step, **info)

    def flush(self) -> None:
        """Hand the logger's buffer on, append the buffered rows as fragments and note the highest step."""
        if self.logger is not None:
            self.logger.flush()
        self.writer.flush()
        if self._recorded_through > self._skip_through:
            write_atomic(self.folder.recorded_step_path, str(self._recorded_through))

    def close(self) -> bool:
        """The trial's end on rank 0: flush, then close the logger (a bounded wait for MLflow). True when the
        logger took everything (always without one)."""
        self.flush()
        return True if self.logger is None else self.logger.close()
