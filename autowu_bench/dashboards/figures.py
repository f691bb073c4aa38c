"""The report's figures, one workload each, saved as PNG (Agg backend: no display needed).

Rules: one panel per batch size; where an arm has several seeds the curves show its lowest seed (the
tables give the means); the AutoWU switch is a dotted line; values come from the Parquet tables and
``report_data`` only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from autowu_bench.dashboards import report_data as rd  # noqa: E402
from autowu_bench.platform.records.spec import TrialKind  # noqa: E402
from autowu_bench.schedulers.autowu import AUTOWU_DEFAULTS  # noqa: E402
from autowu_bench.schedulers.switch_tests import Decision  # noqa: E402

DPI = 150  # sharp on a high-density screen and in print; 72 made the report's text blurry
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _panels(n_rows: int, n_cols: int, w: float = 4.6, h: float = 3.2) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows), squeeze=False)
    return fig, axes


def _first_seed(trials: pd.DataFrame) -> pd.Series | None:
    return None if trials.empty else trials.sort_values("seed", kind="stable").iloc[0]


def compared_trials(trials: pd.DataFrame, batch: int) -> list[tuple[str, pd.Series]]:
    """(label, trial) for Figure 2 at one batch size: each AutoWU arm, then each baseline arm's best
    point and its default, lowest seed each."""
    cell = trials[trials["batch_size"] == batch]
    out = []
    for arm in dict.fromkeys(cell["arm"]):
        group = cell[cell["arm"] == arm]
        if group["kind"].iloc[0] == TrialKind.AUTOWU:
            trial = _first_seed(group)
            out += [(arm, trial)] if trial is not None else []
            continue
        point = rd.best_grid_point(group, rd.SELECT_BY)
        if point is not None:
            best = _first_seed(group[(group["peak_lr"] == point[0]) & (group["warmup_epochs"] == point[1])])
            out.append((f"{arm} best", best))
        default = _first_seed(group[group["is_default"].fillna(False).astype(bool)])
        if default is not None:
            out.append((f"{arm} default", default))
    return out


def _epochs(curve: pd.DataFrame, trial: pd.Series) -> np.ndarray:
    per_epoch = trial.get("steps_per_epoch")
    per_epoch = per_epoch if per_epoch and not pd.isna(per_epoch) else max(1, len(curve) / max(1, trial["epochs"]))
    return curve["step"].to_numpy() / float(per_epoch)


def schedules(trials: pd.DataFrame, curves: pd.DataFrame, path: Path) -> Path | None:
    """The paper's Figure 2: LR (top) and smoothed training loss (bottom) against epochs per batch size."""
    batches = sorted(trials["batch_size"].unique())
    if curves.empty:
        return None
    fig, axes = _panels(2, len(batches))
    for col, batch in enumerate(batches):
        lr_ax, loss_ax = axes[0, col], axes[1, col]
        for i, (label, trial) in enumerate(compared_trials(trials, batch)):
            curve = curves[curves["trial_id"] == trial["trial_id"]].sort_values("step")
            if curve.empty:
                continue
            x, color = _epochs(curve, trial), COLORS[i % len(COLORS)]
            style = "-" if trial["kind"] == TrialKind.AUTOWU else "--"
            lr_ax.plot(x, curve["lr"], style, color=color, label=label, lw=1.3)
            loss = curve["train_loss"].where(np.isfinite(curve["train_loss"]))
            window = max(1, int(trial.get("steps_per_epoch") or 1) // 4)
            loss_ax.plot(x, loss.rolling(window, min_periods=1).mean(), style, color=color, lw=1.1)
            if not pd.isna(trial.get("switch_epoch")):
                for ax in (lr_ax, loss_ax):
                    ax.axvline(trial["switch_epoch"], color=color, ls=":", lw=1)
        lr_ax.set_yscale("log")
        lr_ax.set_title(f"batch {batch}: learning rate")
        loss_ax.set_title(f"batch {batch}: training loss (smoothed)")
        loss_ax.set_xlabel("epoch")
        lr_ax.legend(fontsize=7)
    return _save(fig, path)


def _autowu_trials(trials: pd.DataFrame) -> list[tuple[int, str, pd.Series]]:
    """(batch, arm, lowest-seed trial) for every AutoWU arm and batch size."""
    out = []
    auto = trials[trials["kind"] == TrialKind.AUTOWU]
    for batch in sorted(auto["batch_size"].unique()):
        for arm in dict.fromkeys(auto["arm"]):
            trial = _first_seed(auto[(auto["batch_size"] == batch) & (auto["arm"] == arm)])
            if trial is not None:
                out.append((int(batch), arm, trial))
    return out


def _confidence(trial: pd.Series) -> float:
    options = json.loads(trial["autowu"]) if isinstance(trial.get("autowu"), str) else {}
    value = options.get("confidence")
    return AUTOWU_DEFAULTS.confidence if value is None else float(value)


def vote_record(trials: pd.DataFrame, tests: pd.DataFrame, path: Path) -> Path | None:
    """AutoWU's tests: p of every vote at every test (dots), the confidence line, positive tests (their
    streak up to the switch) marked at the top, the switch and its reason."""
    cases = _autowu_trials(trials)
    if not cases or tests.empty:
        return None
    batches = sorted({b for b, _, _ in cases})
    arms = list(dict.fromkeys(a for _, a, _ in cases))
    fig, axes = _panels(len(arms), len(batches), h=2.6)
    for batch, arm, trial in cases:
        ax = axes[arms.index(arm), batches.index(batch)]
        rows = tests[tests["trial_id"] == trial["trial_id"]].sort_values("step")
        ax.set_title(f"{arm}, batch {batch}", fontsize=9)
        ax.set_ylim(-0.05, 1.1)
        if rows.empty:
            ax.text(0.5, 0.5, "no tests recorded", ha="center", transform=ax.transAxes)
            continue
        for _, r in rows.iterrows():
            p = list(r["p"]) if r["p"] is not None else []
            ax.plot([r["epoch"]] * len(p), p, ".", color=COLORS[0], ms=3, alpha=0.6)
        positive = rows[rows["positive"].fillna(False).astype(bool)]
        ax.plot(positive["epoch"], [1.05] * len(positive), "^", color=COLORS[2], ms=4, label="positive test")
        ax.axhline(_confidence(trial), color="k", lw=0.8, ls="--", label="confidence")
        if not pd.isna(trial.get("switch_epoch")):
            ax.axvline(trial["switch_epoch"], color=COLORS[3], ls=":", label=f"switch: {trial['switch_reason']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("p per vote")
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def gp_at_switch(trials: pd.DataFrame, tests: pd.DataFrame, curves: pd.DataFrame, path: Path) -> Path | None:
    """The GP posterior mean at the deciding test over the loss history it saw (x = i / n, x = 1 now),
    the votes' x* and the start LR of the decay."""
    if tests.empty or "mu" not in tests:
        return None
    cases = []
    for batch, arm, trial in _autowu_trials(trials):
        rows = tests[(tests["trial_id"] == trial["trial_id"]) & tests["decision"].isin([Decision.SWITCH, Decision.DIVERGENCE])]
        rows = rows[rows["mu"].notna()]
        if len(rows):
            cases.append((batch, arm, trial, rows.iloc[-1]))
    if not cases:
        return None
    batches = sorted({c[0] for c in cases})
    arms = list(dict.fromkeys(c[1] for c in cases))
    fig, axes = _panels(len(arms), len(batches), h=2.6)
    for batch, arm, trial, row in cases:
        ax = axes[arms.index(arm), batches.index(batch)]
        history = curves[(curves["trial_id"] == trial["trial_id"]) & (curves["step"] <= row["step"])].sort_values("step")
        loss = history["train_loss"].to_numpy()
        if len(loss):
            ax.plot(np.arange(len(loss)) / len(loss), loss, ".", ms=2, color="0.6", label="loss history")
        mu = np.asarray(row["mu"], dtype=float)
        ax.plot(np.linspace(0, 1, len(mu)), mu, color=COLORS[0], label="GP mean")
        for j, x in enumerate(row["x_star"] if row["x_star"] is not None else []):
            ax.axvline(x, color=COLORS[3], lw=0.8, ls=":", label="x* per vote" if j == 0 else None)
        ax.set_title(f"{arm}, batch {batch}: {row['decision']} at epoch {row['epoch']:.2f}, "
                     f"start LR {row['start_lr']:.3g}", fontsize=8)
        ax.set_xlabel("x (position in the warmup history)")
        finite = loss[np.isfinite(loss)] if len(loss) else mu
        if len(finite):
            ax.set_ylim(min(finite.min(), mu.min()) * 0.95, max(np.percentile(finite, 99), mu.max()) * 1.05)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _edges(values: np.ndarray) -> np.ndarray:
    if len(values) == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    mids = (values[1:] + values[:-1]) / 2
    return np.concatenate([[values[0] - (mids[0] - values[0])], mids, [values[-1] + (values[-1] - mids[-1])]])


def grid_heatmaps(trials: pd.DataFrame, path: Path) -> Path | None:
    """Per batch size and baseline arm with a grid (two points or more): peak LR (log) x warmup epochs ->
    mean validation accuracy, diverged / failed / missing cells labelled; AutoWU's decay start LR and
    switch epoch as markers. None when no arm has a grid."""
    base = trials[trials["kind"] == TrialKind.BASELINE]
    if base.empty:
        return None

    def points(batch: int, arm: str) -> int:
        cell = base[(base["batch_size"] == batch) & (base["arm"] == arm)]
        return len(cell.groupby(["peak_lr", "warmup_epochs"]))

    panels = [(b, a) for b in sorted(base["batch_size"].unique()) for a in dict.fromkeys(base["arm"])
              if points(b, a) > 1]
    if not panels:
        return None
    fig, axes = _panels(1, len(panels), h=3.6)
    for col, (batch, arm) in enumerate(panels):
        ax = axes[0, col]
        cells = rd.grid_cells(base[(base["batch_size"] == batch) & (base["arm"] == arm)])
        lrs = np.log10(np.sort(cells["peak_lr"].unique()))
        wus = np.sort(cells["warmup_epochs"].unique())
        acc = np.full((len(wus), len(lrs)), np.nan)
        for _, c in cells.iterrows():
            i, j = np.searchsorted(wus, c["warmup_epochs"]), np.searchsorted(lrs, np.log10(c["peak_lr"]))
            acc[i, j] = c["val_acc"]
            mark = [f"{c[k]} {k}" for k in ("diverged", "failed", "missing") if c[k]]
            label = ("-" if math.isnan(c["val_acc"]) else f"{c['val_acc']:.3f}") + ("\n" + ", ".join(mark) if mark else "")
            ax.text(np.log10(c["peak_lr"]), c["warmup_epochs"], label, ha="center", va="center", fontsize=7,
                    color="red" if mark else "white")
        mesh = ax.pcolormesh(_edges(lrs), _edges(wus), np.ma.masked_invalid(acc), cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label="val acc (mean over seeds)")
        auto = trials[(trials["kind"] == TrialKind.AUTOWU) & (trials["batch_size"] == batch)]
        for k, auto_arm in enumerate(dict.fromkeys(auto["arm"])):
            group = auto[auto["arm"] == auto_arm]
            ok = group["decay_start_lr"].notna() & group["switch_epoch"].notna() & (group["decay_start_lr"] > 0)
            ax.plot(np.log10(group.loc[ok, "decay_start_lr"]), group.loc[ok, "switch_epoch"], "o^sDv"[k % 5],
                    mfc="none", mec=COLORS[(k + 1) % len(COLORS)], mew=2, ms=9, label=f"{auto_arm}")
        ax.set_title(f"{arm} grid, batch {batch}", fontsize=9)
        ax.set_xlabel("peak LR (log10); AutoWU: decay start LR")
        ax.set_ylabel("warmup epochs; AutoWU: switch epoch")
        if len(auto):
            ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def accuracy_vs_batch(table: pd.DataFrame, path: Path, steps: dict[int, int] | None = None,
                      chance: float | None = None) -> Path | None:
    """Test accuracy (mean, std error bars) against batch size per table row, the optimizer steps of a
    trial under each size (``steps``: ``report_data.planned_steps``) and the accuracy of guessing
    (``chance``) as a dotted line; None with one batch size."""
    if table["batch_size"].nunique() < 2:
        return None
    rows = list(dict.fromkeys(table["row"]))
    fig, axes = _panels(1, 1, w=7.0 if len(rows) <= 8 else 8.5, h=4.2)
    ax = axes[0, 0]
    markers = "o^sDvP*Xh"
    for i, (row, group) in enumerate(table.groupby("row", sort=False)):
        group = group.sort_values("batch_size")
        ax.errorbar(group["batch_size"], group["test_acc_mean"], yerr=group["test_acc_std"].fillna(0),
                    marker=markers[i % len(markers)], ms=4, capsize=3, label=row, color=COLORS[i % len(COLORS)],
                    ls="--" if " " in row else "-")
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    batches = sorted(int(b) for b in table["batch_size"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([f"{b}" + (f"\n{steps[b]} steps" if steps and b in steps else "") for b in batches],
                       fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("batch size (under it: optimizer steps of a trial)")
    ax.set_ylabel("test acc")
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def cost(trials: pd.DataFrame, table: pd.DataFrame, path: Path) -> tuple[Path | None, str]:
    """Top: device-hours per table row ("best" = the whole grid). Bottom: best test accuracy so far
    against cumulative device-hours as the grid completes, AutoWU arms as points; returns the order used."""
    batches = sorted(table["batch_size"].unique())
    fig, axes = _panels(2, len(batches), h=3.0)
    order = ""
    for col, batch in enumerate(batches):
        rows = table[table["batch_size"] == batch]
        bar = axes[0, col]
        bar.barh(rows["row"], rows["device_hours"].fillna(0), color=[COLORS[i % len(COLORS)] for i in range(len(rows))])
        bar.invert_yaxis()
        bar.set_title(f"batch {batch}: device-hours (best = the whole grid)", fontsize=9)
        ax = axes[1, col]
        cell = trials[trials["batch_size"] == batch]
        for arm in dict.fromkeys(cell.loc[cell["kind"] == TrialKind.BASELINE, "arm"]):
            curve, order = rd.cost_curve(cell[cell["arm"] == arm])
            ax.step(curve["device_hours"], curve["best_test_acc"], where="post", label=f"{arm}: best so far")
        for i, (_, r) in enumerate(rows[rows["row"].isin(set(cell.loc[cell["kind"] == TrialKind.AUTOWU, "arm"]))].iterrows()):
            ax.plot(r["device_hours"], r["test_acc_mean"], "o^sDv"[i % 5], color=COLORS[(i + 1) % len(COLORS)],
                    ms=8, label=r["row"])
        ax.set_xlabel("cumulative device-hours")
        ax.set_ylabel("test acc")
        ax.set_title(f"batch {batch}: the grid as it completes", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path), order


def search_progress(trials: pd.DataFrame, table: pd.DataFrame, path: Path) -> Path | None:
    """Per batch size, one set of axes: test accuracy of the best so far (chosen on validation accuracy
    among the completed trials) against cumulative device-hours as each grid and each Tune search
    completes its trials (lowest seed); AutoWU's one-run arms as points. None without searches."""
    from autowu_bench.dashboards.table import is_search

    if not is_search(trials).any():
        return None
    batches = sorted(trials["batch_size"].unique())
    fig, axes = _panels(1, len(batches), w=5.6, h=3.8)
    for col, batch in enumerate(batches):
        ax = axes[0, col]
        cell = trials[trials["batch_size"] == batch]
        searched = is_search(cell)
        for i, arm in enumerate(dict.fromkeys(cell.loc[(cell["kind"] == TrialKind.BASELINE) | searched, "arm"])):
            mine = cell[cell["arm"] == arm]
            curve = rd.search_curve(mine)
            label = f"{arm} ({mine['search'].dropna().iloc[0]})" if is_search(mine).any() else f"{arm} (full grid)"
            ax.step(curve["device_hours"], curve["best_test_acc"], where="post", color=COLORS[i % len(COLORS)],
                    marker=".", label=label)
        rows = table[(table["batch_size"] == batch) & table["row"].isin(set(cell.loc[cell["kind"] == TrialKind.AUTOWU, "arm"]))]
        for i, (_, r) in enumerate(rows.iterrows()):
            ax.plot(r["device_hours"], r["test_acc_mean"], "*^sDv"[i % 5], color="black", ms=10 if i == 0 else 7,
                    label=f"{r['row']} (one run)")
        ax.set_xlabel("cumulative device-hours")
        ax.set_ylabel("test acc of the best so far")
        ax.set_title(f"batch {batch}: accuracy against device-hours", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def sensitivity(trials: pd.DataFrame, path: Path) -> Path | None:
    """Per batch size: every completed trial's test accuracy of each arm that explores a space (a
    baseline grid or search, an AutoWU search over its own options), as dots over a box: AutoWU's
    spread across its knobs beside the baseline's across its space. None without an AutoWU search."""
    from autowu_bench.dashboards.table import COMPLETED, is_search

    searched = is_search(trials)
    if not (searched & (trials["kind"] == TrialKind.AUTOWU)).any():
        return None
    batches = sorted(trials["batch_size"].unique())
    fig, axes = _panels(1, len(batches), w=5.6, h=3.8)
    for col, batch in enumerate(batches):
        ax = axes[0, col]
        cell = trials[(trials["batch_size"] == batch) & trials["status"].astype(str).isin(COMPLETED)]
        spread = is_search(cell) | (cell["kind"] == TrialKind.BASELINE)
        arms = list(dict.fromkeys(cell.loc[spread, "arm"]))
        values = [cell.loc[cell["arm"] == arm, "test_acc"].dropna().to_numpy() for arm in arms]
        if not arms:
            continue
        ax.boxplot(values, widths=0.5, showfliers=False)
        rng = np.random.default_rng(0)
        for i, (arm, v) in enumerate(zip(arms, values), start=1):
            kind = cell.loc[cell["arm"] == arm, "kind"].iloc[0]
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=14, zorder=3,
                       color=COLORS[0] if kind == TrialKind.AUTOWU else COLORS[1])
        ax.set_xticks(range(1, len(arms) + 1), [f"{a}\n({len(v)} trials)" for a, v in zip(arms, values)], fontsize=7)
        ax.set_ylabel("test acc (completed trials)")
        ax.set_title(f"batch {batch}: spread across each arm's space (blue: AutoWU's knobs)", fontsize=9)
    return _save(fig, path)
