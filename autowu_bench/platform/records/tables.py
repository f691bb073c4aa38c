"""Parquet results of one suite invocation, built from the per-trial files; no Ray or MLflow needed.

A run folder ``<results>/<suite>/<timestamp>/`` holds ``suite.yaml`` (the resolved suite),
``trial_specs.json`` (the expanded trials), ``trials/<trial_id>/`` (``summary.json``, the
``FragmentWriter``'s ``fragments/<kind>-<seq>.parquet``, ``lr_rank<r>.parquet``) and, after ``collect``:

trials.parquet, one row per trial:
    every ``TrialSpec`` field (``autowu`` as a JSON string), ``test_interval`` (AutoWU trials:
    "epoch", "auto" or a step count as text), and every field of the trial's outcome
    (``autowu_bench.platform.records.outcome.TrialOutcome``, its ``summary.json``; docs/results.md): status,
    epochs_done, steps, steps_per_epoch, final_val_acc, best_val_acc, final_val_loss, test_acc, test_loss, switch_step,
    switch_epoch, switch_reason ("test", "fallback" or "divergence"), decay_start_lr, rollbacks,
    wall_seconds, device_hours, the start-up breakdown, error.
    A trial without a summary has status "missing".
curves.parquet: trial_id, step, lr, train_loss; one row per optimizer step (``step`` = steps taken
    including this one); a step replayed after a rollback or resume keeps its last row.
epochs.parquet: trial_id, epoch, step, and the per-epoch metrics (val_loss, val_acc, epoch_seconds,
    images_per_second, ...); the last row per epoch.
tests.parquet: trial_id, step, epoch, p (list: per vote), votes (list of bool), positive, decision
    ("negative", "positive", "switch", "divergence"), n_finite, seconds, and for the deciding test
    mu, x_star (lists) and start_lr; the last row per step.
events.parquet: trial_id, name (e.g. "rollback"), step, info (JSON).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autowu_bench.platform.records.outcome import TrialOutcome, TrialStatus
from autowu_bench.platform.records.files import replacing, write_atomic, write_parquet_atomic
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.platform.records.trial_folder import TrialFolder

SPECS_FILE = "trial_specs.json"
TABLES = ("trials", "curves", "epochs", "tests", "events")
SUMMARY_COLUMNS = tuple(f.name for f in dataclasses.fields(TrialOutcome) if f.name not in ("trial_id", "arm", "kind"))
_KEYS = {"curves": ["step"], "epochs": ["epoch"], "tests": ["step"], "events": None}
_EMPTY = {
    "curves": pa.schema([("trial_id", pa.string()), ("step", pa.int64()), ("lr", pa.float64()),
                         ("train_loss", pa.float64())]),
    "epochs": pa.schema([("trial_id", pa.string()), ("epoch", pa.int64()), ("step", pa.int64())]),
    "tests": pa.schema([("trial_id", pa.string()), ("step", pa.int64()), ("epoch", pa.float64()),
                        ("p", pa.list_(pa.float64())), ("votes", pa.list_(pa.bool_())),
                        ("positive", pa.bool_()), ("decision", pa.string())]),
    "events": pa.schema([("trial_id", pa.string()), ("name", pa.string()), ("step", pa.int64()),
                         ("info", pa.string())]),
}


def write_specs(run_dir: str | os.PathLike, trials: Iterable[TrialSpec]) -> Path:
    """Record the expanded trials in the run folder (``collect`` joins them with the summaries)."""
    path = Path(run_dir) / SPECS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, json.dumps([t.to_dict() for t in trials], indent=1))


def read_specs(run_dir: str | os.PathLike) -> list[TrialSpec]:
    path = Path(run_dir) / SPECS_FILE
    if not path.is_file():
        return []
    return [TrialSpec.from_dict(d) for d in json.loads(path.read_text())]


def trials_frame(run_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per trial: its spec joined with its summary (every trial of ``trial_specs.json``, plus
    any trial folder with a summary but no spec)."""
    run_dir = Path(run_dir)
    rows: dict[str, dict[str, Any]] = {}
    for spec in read_specs(run_dir):
        row = spec.to_dict()
        row["autowu"] = json.dumps(row["autowu"], sort_keys=True)
        row["test_interval"] = str(spec.test_interval) if spec.kind is TrialKind.AUTOWU else None
        rows[spec.trial_id] = row
    for outcome in filter(None, (folder.summary() for folder in TrialFolder.all(run_dir))):
        summary = outcome.to_dict()
        row = rows.setdefault(summary["trial_id"], {"trial_id": summary["trial_id"]})
        for key, value in summary.items():
            if key not in row or key in SUMMARY_COLUMNS:
                row[key] = value
    frame = pd.DataFrame(list(rows.values()))
    if frame.empty:
        frame = pd.DataFrame(columns=["trial_id"])
    for column in SUMMARY_COLUMNS:
        if column not in frame:
            frame[column] = None
    frame["status"] = frame["status"].fillna(str(TrialStatus.MISSING))
    for column in ("final_val_acc", "best_val_acc", "final_val_loss", "test_acc", "test_loss", "switch_epoch",
                   "decay_start_lr", "wall_seconds", "device_hours"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


class FragmentWriter:
    """One trial's result rows, buffered per kind and appended as ``fragments/<kind>-<seq>.parquet``.

    ``seq`` numbers on from the fragments already in the folder (one counter for all kinds), so a
    resumed trial adds to them and :func:`fragments_frame`, reading them in that order, keeps the last
    row of a replayed key. Each fragment is written atomically: a crash leaves whole fragments only.

    Args:
        trial_dir: the trial's folder; the fragments go to ``trial_dir/fragments``.
    """

    KINDS = tuple(_KEYS)

    def __init__(self, trial_dir: str | os.PathLike) -> None:
        self.folder = TrialFolder(trial_dir).fragments
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in self.KINDS}
        seqs = [int(m.group(1)) for p in self.folder.iterdir() if (m := re.search(r"-(\d+)\.parquet$", p.name))]
        self._seq = max(seqs, default=0)

    def add(self, kind: str, row: dict[str, Any]) -> None:
        """Buffer one row of ``kind`` ("curves", "epochs", "tests" or "events"); values must be plain
        Python (see :func:`plain`)."""
        if kind not in self._rows:
            raise ValueError(f"kind={kind!r} must be one of {self.KINDS}")
        self._rows[kind].append(row)

    def flush(self) -> list[Path]:
        """Write one fragment per kind with buffered rows (none for a kind without); returns their paths."""
        written = []
        for kind, rows in self._rows.items():
            if rows:
                self._seq += 1
                written.append(write_parquet_atomic(_table(rows), self.folder / f"{kind}-{self._seq:06d}.parquet"))
                rows.clear()
        return written


def plain(value: Any) -> Any:
    """Numpy/torch scalars and tuples -> plain Python, so rows go to Parquet and JSON alike."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows with different keys (a switch record adds mu, x_star, start_lr) as one table: every key
    becomes a column, missing values null. ``from_pylist`` alone would keep only the first row's keys."""
    names = list(dict.fromkeys(key for row in rows for key in row))
    return pa.Table.from_pylist([{name: row.get(name) for name in names} for row in rows])


def fragments_frame(run_dir: str | os.PathLike, kind: str, trial_id: str | None = None) -> pd.DataFrame:
    """Every trial's (or only ``trial_id``'s) fragments of ``kind`` ("curves", "epochs", "tests" or
    "events"), in the order they were written, with replayed keys deduplicated (the last row wins)."""
    if kind not in _KEYS:
        raise ValueError(f"kind={kind!r} must be one of {sorted(_KEYS)}")
    frames = []
    folders = [TrialFolder.of(run_dir, trial_id)] if trial_id else TrialFolder.all(run_dir)
    for fragments in (folder.fragments for folder in folders if folder.fragments.is_dir()):
        paths = sorted(fragments.glob(f"{kind}-*.parquet"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        frames += [pq.read_table(p).to_pandas() for p in paths]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return _EMPTY[kind].empty_table().to_pandas()
    frame = pd.concat(frames, ignore_index=True)
    keys = _KEYS[kind]
    if keys:
        frame = frame.drop_duplicates(["trial_id", *keys], keep="last")
        frame = frame.sort_values(["trial_id", *keys], kind="stable")
    return frame.reset_index(drop=True)


def collect(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Write trials / curves / epochs / tests / events ``.parquet`` into ``run_dir``; returns the paths."""
    run_dir = Path(run_dir)
    frames = {"trials": trials_frame(run_dir)}
    frames.update({kind: fragments_frame(run_dir, kind) for kind in _KEYS})
    paths = {}
    for name in TABLES:
        path = run_dir / f"{name}.parquet"
        with replacing(path) as tmp:
            frames[name].to_parquet(tmp, index=False)
        paths[name] = path
    return paths


def load(run_dir: str | os.PathLike, name: str) -> pd.DataFrame:
    """A collected table of ``run_dir`` by name ("trials", "curves", "epochs", "tests", "events")."""
    if name not in TABLES:
        raise ValueError(f"name={name!r} must be one of {TABLES}")
    path = Path(run_dir) / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run tables.collect({str(run_dir)!r}) first")
    return pd.read_parquet(path)
