"""The report's numbers, from the Parquet tables alone. Every accuracy and cost comes from
``table.head_to_head`` and ``table.best_grid_point`` (the printed table's functions), never recomputed.

Rules:
- the answer compares each AutoWU arm with the baseline grid's best point (chosen on validation
  accuracy) at the same workload and batch size, on test accuracy, and the arm's device-hours with the
  whole grid's (the price of finding that point);
- a difference is "larger than the seed-to-seed spread" when it exceeds the larger of the two rows'
  standard deviations over seeds; with one seed there is no spread and the sentence says so;
- the grid's completion order is ``ended_at`` when every trial has one, else the order of
  ``trial_specs.json`` (the launch order), and the report says which;
- where an arm breaks down as the batch grows (``batch_limits``): it holds up to the largest batch
  size up to which every size is within ``BREAKDOWN_PP`` points of its best test accuracy, and breaks
  at the next one;
- the steps under each batch size are the planned steps (steps per epoch x epochs) of its trials.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autowu_bench.dashboards.paper import BASELINE, paper_cell
from autowu_bench.dashboards.table import best_grid_point, head_to_head, search_winners
from autowu_bench.platform.records import tables
from autowu_bench.platform.records.outcome import TrialStatus
from autowu_bench.platform.records.spec import TrialKind
from autowu_bench.schedulers.autowu import AUTOWU_DEFAULTS
from autowu_bench.workloads.optimizers import OPTIMIZER_INFO

SELECT_BY = "final_val_acc"
BREAKDOWN_PP = 1.0  # an arm "holds" at a batch size while within this many points of its best accuracy


class ReportError(Exception):
    """The run folder cannot give a report; the message names the folder and the fix."""


def load_tables(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The collected tables of ``run_dir``; trials.parquet is required, the others may be absent (empty)."""
    run_dir = Path(run_dir)
    if not (run_dir / "trials.parquet").is_file():
        if (run_dir / tables.SPECS_FILE).is_file() or (run_dir / "trials").is_dir():
            fix = (f"collect them first: python -c \"from autowu_bench.platform.records import tables; "
                   f"tables.collect('{run_dir}')\"")
        else:
            fix = "is this a run folder? It is <results>/<suite>/<timestamp>/, or a folder holding the collected tables"
        raise ReportError(f"{run_dir}: no trials.parquet; {fix}")
    frames = {}
    for name in tables.TABLES:
        path = run_dir / f"{name}.parquet"
        frames[name] = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["trial_id"])
    trials = frames["trials"]
    for column in ("mlflow_run_id", "ended_at", "error"):
        if column not in trials:
            trials[column] = None
    trials["ended_at"] = pd.to_numeric(trials["ended_at"], errors="coerce")
    return frames


def cost_ratio(autowu_hours: float, grid_hours: float) -> str:
    """AutoWU's device-hours as a share of the grid's: "1/6" below 2/3, else "0.8x"."""
    if not (grid_hours > 0) or math.isnan(autowu_hours):
        return "an unknown share"
    ratio = autowu_hours / grid_hours
    if 0 < ratio < 2 / 3:
        return f"1/{round(1 / ratio)}"
    return f"{ratio:.2g}x"


@dataclass
class Answer:
    workload: str
    batch_size: int
    arm: str
    text: str
    diff_pp: float  # AutoWU minus the grid's best, percentage points (NaN when either is missing)
    beyond_spread: bool | None  # None: no spread to compare with (fewer than 2 seeds)


def answers(table: pd.DataFrame, trials: pd.DataFrame) -> list[Answer]:
    """One sentence per workload, batch size and AutoWU arm, against that cell's grid best (the first
    baseline arm's, in the suite's order)."""
    autowu_arms = set(trials.loc[trials["kind"] == TrialKind.AUTOWU, "arm"])
    out = []
    for (workload, batch), cell in table.groupby(["workload", "batch_size"], sort=True):
        bests = cell[cell["row"].str.endswith(" best") & cell["grid_points"].notna()]  # grids, not searches
        for _, auto in cell[cell["row"].isin(autowu_arms)].iterrows():
            out.append(_answer(workload, int(batch), auto, bests.iloc[0] if len(bests) else None))
    return out


def _answer(workload: str, batch: int, auto: pd.Series, best: pd.Series | None) -> Answer:
    name = f"AutoWU {auto['row']} ({auto['setting']})"
    head = f"batch {batch}: {name}"
    if best is None:
        return Answer(workload, batch, auto["row"], f"{head}: no baseline grid to compare with.", math.nan, None)
    if math.isnan(auto["test_acc_mean"]):
        return Answer(workload, batch, auto["row"],
                      f"{head}: no result ({auto['trials']} trial(s), none with a test accuracy).", math.nan, None)
    if math.isnan(best["test_acc_mean"]):
        return Answer(workload, batch, auto["row"], f"{head} {auto['test_acc_mean']:.3f}; no grid point has a result.",
                      math.nan, None)
    diff = float(auto["test_acc_mean"] - best["test_acc_mean"]) * 100
    seeds = {int(auto["seeds"]), int(best["seeds"])}
    seed_text = f"{min(seeds)} seed" + ("s" if min(seeds) > 1 else "") if len(seeds) == 1 else \
        f"{int(auto['seeds'])} and {int(best['seeds'])} seeds"
    stds = [s for s in (auto["test_acc_std"], best["test_acc_std"]) if not math.isnan(s)]
    if min(seeds) < 2 or len(stds) < 2:
        beyond, spread = None, "no seed-to-seed spread to judge the difference by"
    else:
        beyond = bool(abs(diff) > max(stds) * 100)
        spread = (f"the difference is {'larger than' if beyond else 'within'} the seed-to-seed spread "
                  f"(std up to {max(stds):.3f})")
    points = f"{int(best['grid_points'])} grid points"
    if best["grid_points_without_result"]:
        points += f" ({int(best['grid_points_without_result'])} without a result)"
    text = (f"{head} {auto['test_acc_mean']:.3f} vs best of {points} {best['test_acc_mean']:.3f} "
            f"({diff:+.2f} pp) for {cost_ratio(auto['device_hours'], best['device_hours'])} of the grid's "
            f"device-hours; {seed_text}, {'so ' if beyond is None else ''}{spread}.")
    return Answer(workload, batch, auto["row"], text, diff, beyond)


def arm_rows(table: pd.DataFrame, trials: pd.DataFrame, workload: str) -> pd.DataFrame:
    """The paper's Table 1 layout for one workload: one row per table row name, one column per batch
    size; each cell a dict with ``mean``, ``std``, ``seeds`` and ``paper`` ((mean, std, source) or None)."""
    cells = table[table["workload"] == workload]
    batches = sorted(cells["batch_size"].unique())
    rows = list(dict.fromkeys(cells["row"]))
    frame = pd.DataFrame(index=rows, columns=batches, dtype=object)
    for _, r in cells.iterrows():
        schedule, optimizer = _schedule(trials, workload, r["row"])
        paper = paper_cell(workload, optimizer, schedule, r["batch_size"]) if schedule and optimizer else None
        frame.at[r["row"], r["batch_size"]] = {
            "mean": r["test_acc_mean"], "std": r["test_acc_std"], "seeds": int(r["seeds"]),
            "trials": int(r["trials"]), "paper": paper,
        }
    return frame


def _schedule(trials: pd.DataFrame, workload: str, row: str) -> tuple[str | None, str | None]:
    """The paper's schedule name for a table row: the decay of an AutoWU arm, "baseline" for a default row."""
    mine = trials[trials["workload"] == workload]
    arm = mine[mine["arm"] == row]
    if len(arm) and arm["kind"].iloc[0] == TrialKind.AUTOWU:
        if not _paper_autowu(arm.iloc[0]):
            return None, None  # an ablation or another test interval: the paper has no number for it
        return str(arm["decay"].iloc[0]), str(arm["optimizer"].iloc[0])
    if row.endswith(" default"):
        base = mine[mine["arm"] == row.removesuffix(" default")]
        if len(base):
            return BASELINE, str(base["optimizer"].iloc[0])
    return None, None


def _paper_autowu(trial: pd.Series) -> bool:
    """An AutoWU arm run as in the paper: every option it sets equals AutoWU's default (the paper's)."""
    defaults = AUTOWU_DEFAULTS.to_dict()
    options = json.loads(trial["autowu"]) if isinstance(trial.get("autowu"), str) else {}
    return all(k == "seed" or defaults.get(k) == v for k, v in options.items())


def grid_cells(trials: pd.DataFrame) -> pd.DataFrame:
    """One baseline arm's grid at one batch size: peak_lr, warmup_epochs, val_acc (mean over seeds),
    trials, and the count of diverged / failed / missing trials per point."""
    rows = []
    for (lr, wu), point in trials.groupby(["peak_lr", "warmup_epochs"], sort=True):
        status = point["status"].astype(str)
        rows.append({"peak_lr": lr, "warmup_epochs": wu, "val_acc": point[SELECT_BY].mean(),
                     "test_acc": point["test_acc"].mean(), "trials": len(point),
                     **{str(s): int((status == s).sum()) for s in (TrialStatus.DIVERGED, TrialStatus.FAILED,
                                                                  TrialStatus.MISSING)}})
    return pd.DataFrame(rows, columns=["peak_lr", "warmup_epochs", "val_acc", "test_acc", "trials", "diverged",
                                       "failed", "missing"])


def completion_order(grid: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The grid's trials in completion order, and how that order was known."""
    if len(grid) and grid["ended_at"].notna().all():
        return grid.sort_values("ended_at", kind="stable"), "trials' end times"
    return grid, "launch order (no end times recorded)"


def cost_curve(grid: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Best test accuracy so far against cumulative device-hours as the grid's trials complete: after
    each trial, the point ``best_grid_point`` chooses among the trials done so far, and its mean test
    accuracy over them. Trials without a result add their hours (they were paid for)."""

    def best_point(done: pd.DataFrame) -> dict[str, Any]:
        point = best_grid_point(done, SELECT_BY)
        acc = math.nan
        if point is not None:
            chosen = done[(done["peak_lr"] == point[0]) & (done["warmup_epochs"] == point[1])]
            acc = chosen["test_acc"].mean()
        return {"best_test_acc": acc, "best_point": point}

    ordered, source = completion_order(grid)
    return _best_so_far(ordered, best_point, ["best_test_acc", "best_point"]), source


def _best_so_far(ordered: pd.DataFrame, best: Callable[[pd.DataFrame], dict[str, Any]],
                 columns: list[str]) -> pd.DataFrame:
    """One row after each trial of ``ordered`` (in completion order): its ``trial_id``, the
    ``device_hours`` paid so far (a trial without hours adds none) and ``best`` of the trials done
    (its ``columns``)."""
    rows, hours = [], 0.0
    for i in range(len(ordered)):
        done = ordered.iloc[: i + 1]
        trial = done.iloc[-1]
        hours += 0.0 if math.isnan(trial["device_hours"]) else float(trial["device_hours"])
        rows.append({"trial_id": trial["trial_id"], "device_hours": hours, **best(done)})
    return pd.DataFrame(rows, columns=["trial_id", "device_hours", *columns])


def problem_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that did not run to their end: diverged, stopped early by a search's scheduler (ASHA), failed,
    missing or still running, each with its status and error (never dropped)."""
    status = trials["status"].astype(str)
    return trials[status.isin([TrialStatus.DIVERGED, TrialStatus.STOPPED, TrialStatus.FAILED, TrialStatus.MISSING,
                               TrialStatus.RUNNING])]


def search_curve(trials: pd.DataFrame, select_by: str = SELECT_BY) -> pd.DataFrame:
    """Best so far against cumulative device-hours as one arm's trials complete (grid or search; the
    lowest seed): after each trial, the completed trial with the best ``select_by`` among those done
    (``table.search_winners``'s rule) and its test accuracy. Stopped and failed trials add their hours."""
    if trials.empty:
        return pd.DataFrame(columns=["trial_id", "device_hours", "best_test_acc"])
    first = trials[trials["seed"] == trials["seed"].min()]

    def winner_acc(done: pd.DataFrame) -> dict[str, Any]:
        winner = search_winners(done, select_by)
        acc = float(winner["test_acc"].iloc[0]) if len(winner) and pd.notna(winner["test_acc"].iloc[0]) else math.nan
        return {"best_test_acc": acc}

    return _best_so_far(completion_order(first)[0], winner_acc, ["best_test_acc"])


def mlflow_link(run_id: object, tracking_ui: str | None, experiment_id: str | None) -> str | None:
    """The MLflow UI page of a run, when the UI address, experiment and run id are all known."""
    if not tracking_ui or experiment_id is None or not isinstance(run_id, str) or not run_id:
        return None
    return f"{tracking_ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def head_to_head_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return head_to_head(tables["trials"], SELECT_BY)


def row_arm(row: str) -> str:
    """The arm of a table row: ``baseline best`` -> ``baseline``; an AutoWU row is its arm."""
    for suffix in (" best", " default"):
        if row.endswith(suffix):
            return row.removesuffix(suffix)
    return row


def row_optimizers(trials: pd.DataFrame) -> dict[str, str]:
    """Each arm's optimizer (the first trial's), by arm name."""
    return {str(arm): str(group["optimizer"].iloc[0]) for arm, group in trials.groupby("arm", sort=False)}


def optimizer_notes(trials: pd.DataFrame) -> list[tuple[str, str, str, str | None]]:
    """(optimizer, label, source, note) of every optimizer the trials used, in the order first used."""
    out = []
    for name in dict.fromkeys(trials["optimizer"].dropna().astype(str)):
        info = OPTIMIZER_INFO.get(name)
        if info is not None:
            out.append((name, info.label, info.source, info.note))
    return out


def planned_steps(trials: pd.DataFrame) -> dict[int, int]:
    """Optimizer steps per trial at each batch size (steps per epoch x epochs; the most among its trials)."""
    known = trials[pd.to_numeric(trials["steps_per_epoch"], errors="coerce").notna()]
    steps = pd.to_numeric(known["steps_per_epoch"]) * pd.to_numeric(known["epochs"])
    return {int(b): int(v) for b, v in steps.groupby(known["batch_size"]).max().items()}


def batch_limits(table: pd.DataFrame, tolerance_pp: float = BREAKDOWN_PP) -> pd.DataFrame:
    """Per table row: its best test accuracy and batch size, the largest batch size it holds up to
    (every size up to it within ``tolerance_pp`` points of its best) and the size it breaks at (None:
    it held at every size run)."""
    rows = []
    for row, group in table.groupby("row", sort=False):
        group = group.dropna(subset=["test_acc_mean"]).sort_values("batch_size")
        if group.empty:
            continue
        best = group.loc[group["test_acc_mean"].idxmax()]
        holds, breaks = None, None
        for _, r in group.iterrows():
            if (best["test_acc_mean"] - r["test_acc_mean"]) * 100 > tolerance_pp:
                breaks = int(r["batch_size"])
                break
            holds = int(r["batch_size"])
        rows.append({"row": row, "best_acc": float(best["test_acc_mean"]), "best_batch": int(best["batch_size"]),
                     "holds_to": holds, "breaks_at": breaks,
                     "acc_at_largest": float(group["test_acc_mean"].iloc[-1]),
                     "largest_batch": int(group["batch_size"].iloc[-1])})
    return pd.DataFrame(rows, columns=["row", "best_acc", "best_batch", "holds_to", "breaks_at", "acc_at_largest",
                                       "largest_batch"])


def chance_accuracy(workload: str) -> float | None:
    """1 / classes of a registered workload (the accuracy of guessing), None for an unknown one."""
    from autowu_bench.workloads import get_workload

    try:
        return 1.0 / get_workload(workload).num_classes
    except ValueError:
        return None
