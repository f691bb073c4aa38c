"""The head-to-head table: AutoWU arms against the baseline grid, per workload and batch size.

Pure functions of the trials table (``results.trials_frame`` / trials.parquet). Rows, per workload and
batch size:

- one per AutoWU arm;
- ``<baseline arm> best``: the grid point (peak LR, warmup epochs) with the highest validation accuracy
  averaged over seeds; its test accuracy is reported, so the choice never sees test data. Its
  device-hours are those of the whole grid: the price of finding that point;
- ``<baseline arm> default``: the point the scaling rule gives untuned (the recipe's base LR scaled to
  the batch size, the recipe's warmup epochs);
- ``<search arm> best`` (an arm searched by a Ray Tune job, ``platform/execution/search.py``; baseline or AutoWU):
  per seed, the search's winner, the completed trial (finished or diverged; a trial stopped early by
  ASHA has no test accuracy and cannot win) with the highest final validation accuracy (ties: the
  earlier trial); its test accuracy is reported, mean (std) over seeds (each seed its own search). Its
  device-hours are those of every trial the searches ran, stopped ones for the epochs they ran; the
  setting says how many trials ran, completed and were stopped early (also the columns
  ``search_trials``, ``search_completed``, ``search_stopped``).

Columns (``head_to_head`` names, then the printed header):
    test_acc_mean / test_acc_std  "test acc": mean (std) over seeds of the final model's test accuracy
    val_acc_mean                  "val acc": mean final validation accuracy (what "best" selects on)
    seeds / trials / diverged     "seeds": trials with a test accuracy / trials of the row (for
                                  "best": of the chosen point), "(N diverged)" when some diverged: a
                                  diverged trial counts in the means at what its final weights give
    device_hours                  "device-h": GPU-hours (CPU-hours on CPUs) spent on the row's trials
    switch_epoch                  "switch ep": AutoWU's mean switch epoch, with the commonest reason
                                  (test = the GP test fired, fallback = longest warmup reached,
                                  divergence = a non-finite or exploding loss)
    decay_start_lr                "decay LR": AutoWU's mean LR at the start of the decay
    setting                       "setting": the AutoWU decay and test interval, or the baseline's
                                  peak LR and warmup epochs (and its decay when not the paper's
                                  cosine); the optimizer's note in brackets where it has one, such as
                                  "[clars-chunked: reconstruction]" (optimizers.OPTIMIZER_INFO)
    restarts                      "restarts": worker-group restarts of the row's trials (for "best":
                                  of the whole grid); printed only when some trial restarted
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from autowu_bench.platform.records.outcome import TrialStatus
from autowu_bench.platform.records.spec import TrialKind
from autowu_bench.schedulers.autowu import AUTOWU_DEFAULTS
from autowu_bench.workloads.optimizers import optimizer_note

COLUMNS = (
    "workload", "batch_size", "row", "setting", "test_acc_mean", "test_acc_std", "val_acc_mean", "seeds",
    "trials", "diverged", "device_hours", "switch_epoch", "switch_reason", "decay_start_lr", "restarts", "grid_points",
    "grid_points_without_result", "search", "search_trials", "search_completed", "search_stopped",
)
COMPLETED = (TrialStatus.FINISHED, TrialStatus.DIVERGED)


def _stats(group: pd.DataFrame, select_by: str) -> dict[str, Any]:
    test = group["test_acc"].dropna()
    return {
        "test_acc_mean": test.mean() if len(test) else math.nan,
        "test_acc_std": test.std(ddof=1) if len(test) > 1 else math.nan,
        "val_acc_mean": group[select_by].mean(),
        "seeds": int(len(test)),
        "trials": int(len(group)),
        "diverged": int((group["status"].astype(str) == TrialStatus.DIVERGED).sum()) if "status" in group else 0,
        "device_hours": group["device_hours"].sum(min_count=1),
        "restarts": _restarts(group),
    }


def _restarts(group: pd.DataFrame) -> int:
    if "restarts" not in group:
        return 0
    return int(pd.to_numeric(group["restarts"], errors="coerce").fillna(0).sum())


def best_grid_point(grid: pd.DataFrame, select_by: str = "final_val_acc") -> tuple[float, float] | None:
    """(peak_lr, warmup_epochs) with the highest ``select_by`` averaged over seeds; None if none has one.

    Ties go to the smaller peak LR, then the shorter warmup (the cheaper, safer point).
    """
    means = grid.groupby(["peak_lr", "warmup_epochs"])[select_by].mean().dropna()
    if means.empty:
        return None
    best = means[means == means.max()].sort_index()
    return tuple(float(v) for v in best.index[0])


def is_search(trials: pd.DataFrame) -> pd.Series:
    """Which trials a Tune search proposed (their ``search`` is set; tables from before searches: none)."""
    if "search" not in trials:
        return pd.Series(False, index=trials.index)
    return trials["search"].notna() & (trials["search"].astype(str) != "")


def search_winners(group: pd.DataFrame, select_by: str = "final_val_acc") -> pd.DataFrame:
    """One search arm's winners, one row per seed: the completed trial with the highest ``select_by``
    (ties: the lower trial id, i.e. the earlier proposal). A seed with no completed trial has none."""
    done = group[group["status"].astype(str).isin(COMPLETED) & group[select_by].notna()]
    if done.empty:
        return done
    ranked = done.sort_values([select_by, "trial_id"], ascending=[False, True], kind="stable")
    return ranked.groupby("seed", sort=True).head(1).sort_values("seed", kind="stable")


def search_setting(trial: pd.Series) -> str:
    """The point of a search trial: peak LR and warmup (baseline), or the searched AutoWU options."""
    if trial["kind"] != TrialKind.AUTOWU:
        return _baseline_setting(trial["peak_lr"], trial["warmup_epochs"], trial)
    options = trial.get("autowu")
    options = json.loads(options) if isinstance(options, str) else dict(options or {})
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(options.items())) or "defaults"


def _search_row(key: dict[str, Any], arm: str, group: pd.DataFrame, select_by: str) -> dict[str, Any] | None:
    status = group["status"].astype(str)
    counts = {"search": str(group["search"].dropna().iloc[0]), "search_trials": len(group),
              "search_completed": int(status.isin(COMPLETED).sum()),
              "search_stopped": int((status == TrialStatus.STOPPED).sum())}
    winners = search_winners(group, select_by)
    stats = _stats(winners, select_by) if len(winners) else {
        "test_acc_mean": math.nan, "test_acc_std": math.nan, "val_acc_mean": math.nan, "seeds": 0, "trials": 0,
        "diverged": 0, "restarts": 0}
    stats["device_hours"] = group["device_hours"].sum(min_count=1)  # the whole search's cost
    stats["restarts"] = _restarts(group)
    point = search_setting(winners.iloc[0]) if len(winners) else "no completed trial"
    seeds = group["seed"].nunique()
    note = (f"{counts['search']}: {counts['search_trials']} trials, {counts['search_completed']} completed, "
            f"{counts['search_stopped']} stopped early" + (f"; seed {int(winners.iloc[0]['seed'])}'s winner of "
                                                             f"{seeds} searches" if seeds > 1 and len(winners) else ""))
    return {**key, "row": f"{arm} best", "setting": f"{point} ({note})" + _note(group.iloc[0]), **stats, **counts}


def head_to_head(trials: pd.DataFrame, select_by: str = "final_val_acc") -> pd.DataFrame:
    """The table as a DataFrame with ``COLUMNS``, one row per (workload, batch size, row)."""
    rows: list[dict[str, Any]] = []
    arms = list(dict.fromkeys(trials["arm"]))  # the suite's order
    for (workload, batch), cell in trials.groupby(["workload", "batch_size"], sort=True):
        for arm in arms:
            group = cell[cell["arm"] == arm]
            if group.empty:
                continue
            key = {"workload": workload, "batch_size": int(batch)}
            if is_search(group).any():
                rows.append(_search_row(key, arm, group[is_search(group)], select_by))
                continue
            if group["kind"].iloc[0] == TrialKind.AUTOWU:
                reasons = group["switch_reason"].dropna()
                rows.append({
                    **key, "row": arm, "setting": _autowu_setting(group.iloc[0]) + _note(group.iloc[0]),
                    **_stats(group, select_by),
                    "switch_epoch": group["switch_epoch"].mean(),
                    "switch_reason": reasons.mode().iloc[0] if len(reasons) else None,
                    "decay_start_lr": group["decay_start_lr"].mean(),
                })
                continue
            point = best_grid_point(group, select_by)
            if point is not None:
                chosen = group[(group["peak_lr"] == point[0]) & (group["warmup_epochs"] == point[1])]
                # A point whose trials all failed or are missing took no part in the choice: say so.
                means = group.groupby(["peak_lr", "warmup_epochs"])[select_by].mean()
                scored, unscored = int(means.notna().sum()), int(means.isna().sum())
                stats = _stats(chosen, select_by)
                stats["device_hours"] = group["device_hours"].sum(min_count=1)  # the whole grid's cost
                stats["restarts"] = _restarts(group)
                rows.append({**key, "row": f"{arm} best",
                             "setting": _baseline_setting(*point, group.iloc[0]) + f" (best of {scored} point"
                             + ("s" if scored != 1 else "") + (f"; {unscored} without a result)" if unscored else ")")
                             + _note(group.iloc[0]),
                             **stats, "grid_points": scored, "grid_points_without_result": unscored})
            default = group[group["is_default"].fillna(False).astype(bool)]
            if not default.empty:
                first = default.iloc[0]
                rows.append({**key, "row": f"{arm} default",
                             "setting": _baseline_setting(first["peak_lr"], first["warmup_epochs"], first)
                             + _note(first),
                             **_stats(default, select_by)})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table


def _autowu_setting(trial: pd.Series) -> str:
    interval = trial.get("test_interval")
    interval = AUTOWU_DEFAULTS.test_interval if _missing(interval) else interval
    return f"{trial['decay']}, test/{interval}"


def _baseline_setting(peak_lr: float, warmup_epochs: float, trial: pd.Series | None = None) -> str:
    """``lr 0.004, wu 2``, then the decay when it is not the paper's cosine (``poly2``, ``constant``)."""
    text = f"lr {peak_lr:.3g}, wu {warmup_epochs:g}"
    decay = None if trial is None else trial.get("decay")
    if _missing(decay) or decay == "cosine":
        return text
    if decay == "polynomial":
        power = trial.get("decay_power")
        return text + f", poly{2.0 if _missing(power) else power:g}"
    return text + f", {decay}"


def _note(trial: pd.Series) -> str:
    """`` [clars: reconstruction]`` for an optimizer with a note, else empty."""
    note = optimizer_note(trial.get("optimizer"))
    return f" [{trial['optimizer']}: {note}]" if note else ""


# -- rendering ------------------------------------------------------------------------------------------

_HEADERS = (
    ("workload", "workload"), ("batch_size", "batch"), ("row", "arm"), ("test", "test acc"),
    ("val_acc_mean", "val acc"), ("seeds", "seeds"), ("device_hours", "device-h"),
    ("switch", "switch ep"), ("decay_start_lr", "decay LR"), ("setting", "setting"),
)


def _show_restarts(table: pd.DataFrame) -> bool:
    return "restarts" in table and bool((pd.to_numeric(table["restarts"], errors="coerce").fillna(0) > 0).any())


def _headers(table: pd.DataFrame) -> list[str]:
    """The printed headers; "restarts" (before "setting") only when some trial restarted, so a table of
    runs without restarts reads as before the column existed."""
    headers = [h for _, h in _HEADERS]
    return headers[:-1] + ["restarts", headers[-1]] if _show_restarts(table) else headers


def _cells(table: pd.DataFrame) -> list[list[str]]:
    out = []
    restarts = _show_restarts(table)
    for _, r in table.iterrows():
        row = [
            str(r["workload"]), str(r["batch_size"]), str(r["row"]),
            _mean_std(r["test_acc_mean"], r["test_acc_std"]), _num(r["val_acc_mean"], "{:.4f}"),
            f"{r['seeds']}/{r['trials']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else ""),
            _num(r["device_hours"], "{:.3f}"),
            _switch(r["switch_epoch"], r["switch_reason"]), _num(r["decay_start_lr"], "{:.3g}"), str(r["setting"]),
        ]
        if restarts:
            row.insert(-1, _num(r["restarts"], "{:.0f}"))
        out.append(row)
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value: Any, fmt: str) -> str:
    return "-" if _missing(value) else fmt.format(value)


def _mean_std(mean: Any, std: Any) -> str:
    if _missing(mean):
        return "-"
    return f"{mean:.4f} ({'-' if _missing(std) else f'{std:.4f}'})"


def _switch(epoch: Any, reason: Any) -> str:
    if _missing(epoch):
        return "-"
    return f"{epoch:.2f}" + ("" if _missing(reason) else f" {reason}")


def format_text(table: pd.DataFrame, title: str = "") -> str:
    """Fixed-width text, the numbers right-aligned; what ``run_suite.py`` prints and saves as table.txt."""
    headers = _headers(table)
    rows = _cells(table)
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    left = {0, 2, len(headers) - 1}

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = ([title] if title else []) + [line(headers), line(["-" * w for w in widths])]
    previous = None
    for row, (_, r) in zip(rows, table.iterrows()):
        group = (r["workload"], r["batch_size"])
        if previous is not None and group != previous:
            lines.append("")
        previous = group
        lines.append(line(row))
    return "\n".join(lines) + "\n"


def format_markdown(table: pd.DataFrame) -> str:
    """The same table as GitHub markdown."""
    headers = _headers(table)
    rows = _cells(table)
    aligns = ["---", "---:", "---"] + ["---:"] * (len(headers) - 4) + ["---"]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"
