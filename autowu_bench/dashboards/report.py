"""The HTML report of one run: ``<run_dir>/report/index.html`` and its PNG figures, from the Parquet
tables alone (no Ray, no MLflow).

Rules: self-contained (no scripts, styles or fonts from the network; images beside the page), so it
opens from ``file://``; per workload in this order: the answer, the Table 1 layout (a note such as
"reconstruction" beside the rows of an optimizer that has one) and the optimizers used, Figure 2,
AutoWU's tests, the grid, accuracy against batch size (the steps under each size) with where each row
breaks down, cost, and every trial that did not finish (never
dropped), with missing trials named at the top. A small inline script marks the page
``data-images="ok"`` once every image has loaded, for the browser test.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from autowu_bench.dashboards import figures
from autowu_bench.dashboards import report_data as rd
from autowu_bench.dashboards.table import is_search
from autowu_bench.platform.records.outcome import TrialStatus
from autowu_bench.workloads.optimizers import optimizer_note

REPORT_DIR = "report"

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.paper{color:#777;font-size:.85em}
.answer li{margin:.3em 0}.warn{background:#fff3cd;padding:.5em;border:1px solid #e0c060}
img{max-width:100%;border:1px solid #eee}code{font-size:.9em}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.documentElement.setAttribute('data-images', (ok ? 'ok ' : 'broken ') + imgs.length);
});
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _acc(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f} ({'-' if math.isnan(std) else f'{std:.4f}'})"


def _arm_table(table: pd.DataFrame, trials: pd.DataFrame, workload: str) -> str:
    frame = rd.arm_rows(table, trials, workload)
    head = "".join(f"<th>batch {b}</th>" for b in frame.columns)
    body = []
    optimizers = rd.row_optimizers(trials)
    for row, cells in frame.iterrows():
        optimizer = optimizers.get(rd.row_arm(str(row)))
        note = optimizer_note(optimizer)
        label = _e(row) + (f" <small>({_e(optimizer)}, {_e(note)})</small>" if note else "")
        tds = []
        for cell in cells:
            if not isinstance(cell, dict):
                tds.append("<td>-</td>")
                continue
            text = _e(_acc(cell["mean"], cell["std"])) + f" <small>{cell['seeds']}/{cell['trials']}</small>"
            if cell["paper"] is not None:
                mean, std, source = cell["paper"]
                text += f'<br><span class="paper" title="{_e(source)}">paper {_e(_acc(mean, std))}, {_e(source)}</span>'
            tds.append(f"<td>{text}</td>")
        body.append(f"<tr><th>{label}</th>{''.join(tds)}</tr>")
    return (f"<table class=\"arms\"><tr><th>arm</th>{head}</tr>{''.join(body)}</table>"
            "<p><small>Test accuracy, mean (std) over seeds, then seeds with a result / trials. "
            "<i>best</i>: the grid point with the best mean validation accuracy; its test accuracy is shown. "
            "<i>default</i>: the scaling rule's untuned point, which is what the paper's Baseline is.</small></p>")


def _limits_table(table: pd.DataFrame) -> str:
    limits = rd.batch_limits(table)
    body = "".join(
        f"<tr><td>{_e(r.row)}</td><td>{r.best_acc:.4f} at {r.best_batch}</td>"
        f"<td>{'-' if pd.isna(r.holds_to) else int(r.holds_to)}</td>"
        f"<td>{'held at every size' if pd.isna(r.breaks_at) else int(r.breaks_at)}</td>"
        f"<td>{r.acc_at_largest:.4f} at {r.largest_batch}</td></tr>" for r in limits.itertuples())
    return ("<table class=\"limits\"><tr><th>row</th><th>best test acc</th><th>holds up to batch</th>"
            f"<th>breaks at batch</th><th>at the largest batch</th></tr>{body}</table>"
            f"<p><small>An arm holds while every batch size up to it is within {rd.BREAKDOWN_PP:g} point of its "
            "best test accuracy; it breaks at the first size that is not.</small></p>")


def _optimizer_notes(trials: pd.DataFrame) -> str:
    items = [f"<li><b>{_e(name)}</b>: {_e(label)}; {_e(source)}"
             + (f' <span class="warn">{_e(note)}</span>' if note else "") + "</li>"
             for name, label, source, note in rd.optimizer_notes(trials)]
    return "<h3>Optimizers</h3><ul>" + "".join(items) + "</ul>"


def _trial_table(trials: pd.DataFrame, tracking_ui: str | None, experiment_id: str | None) -> str:
    rows = []
    for _, t in trials.iterrows():
        link = rd.mlflow_link(t.get("mlflow_run_id"), tracking_ui, experiment_id)
        run_id = t.get("mlflow_run_id")
        run = (f'<a href="{_e(link)}">{_e(run_id)}</a>' if link else
               (f"<code>{_e(run_id)}</code>" if isinstance(run_id, str) and run_id else "-"))
        error = t.get("error")
        rows.append(
            f"<tr><td>{_e(t['trial_id'])}</td><td>{_e(t['status'])}</td>"
            f"<td>{'-' if pd.isna(t['test_acc']) else f'{t.test_acc:.4f}'}</td>"
            f"<td>{'-' if pd.isna(t['final_val_acc']) else f'{t.final_val_acc:.4f}'}</td>"
            f"<td>{'-' if pd.isna(t['device_hours']) else f'{t.device_hours:.4f}'}</td>"
            f"<td>{run}</td><td>{_e(error) if isinstance(error, str) else ''}</td></tr>")
    return ("<table class=\"trials\"><tr><th>trial</th><th>status</th><th>test acc</th><th>val acc</th>"
            f"<th>device-h</th><th>MLflow run</th><th>error</th></tr>{''.join(rows)}</table>")


def _img(folder: Path, path: Path | None, alt: str, none: str = "nothing recorded") -> str:
    if path is None:
        return f"<p><i>{_e(alt)}: {_e(none)}.</i></p>"
    return f'<p><img src="{_e(path.relative_to(folder).as_posix())}" alt="{_e(alt)}"></p>'


def _search_section(trials: pd.DataFrame, table: pd.DataFrame, folder: Path, slug: str) -> list[str]:
    """The Tune searches: their rows, the best so far against device-hours, AutoWU's own sensitivity."""
    rows = table[table["search"].notna()]
    items = [f"<li>batch {int(r['batch_size'])}, {_e(r['row'])}: test acc {_e(_acc(r['test_acc_mean'], r['test_acc_std']))}, "
             f"{r['device_hours']:.3f} device-h; {_e(r['setting'])}</li>" for _, r in rows.iterrows()]
    parts = ["<h3>Tune searches</h3>", "<ul>" + "".join(items) + "</ul>",
             ("<p><small>Each search's winner is its completed trial with the best final validation accuracy; its "
              "test accuracy is shown. Device-hours: every trial the search ran, trials stopped early by ASHA for "
              "the epochs they ran.</small></p>"),
             _img(folder, figures.search_progress(trials, table, folder / f"{slug}-search.png"),
                  "best so far against device-hours")]
    spread = figures.sensitivity(trials, folder / f"{slug}-sensitivity.png")
    if spread is not None:
        parts += ["<h3>AutoWU's own sensitivity</h3>",
                  ("<p><small>Test accuracy of every completed trial: AutoWU over its own knobs (blue) beside the "
                   "baseline over its space.</small></p>"), _img(folder, spread, "sensitivity")]
    return parts


def _workload_section(name: str, tables: dict[str, pd.DataFrame], table: pd.DataFrame, folder: Path,
                      tracking_ui: str | None, experiment_id: str | None) -> str:
    every = tables["trials"][tables["trials"]["workload"] == name]
    trials = every[~is_search(every)]  # the sections below are about the fixed arms and grids
    mine = table[table["workload"] == name]
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    answers = rd.answers(mine, trials)
    parts = [f'<h2 id="{_e(slug)}">{_e(name)}</h2>', '<ul class="answer">']
    parts += [f"<li>{_e(a.text)}</li>" for a in answers] or ["<li>No AutoWU arm in this run.</li>"]
    parts.append("</ul>")
    parts += ["<h3>Test accuracy per arm and batch size (the paper's Table 1 layout)</h3>",
              _arm_table(mine, trials, name), _optimizer_notes(every)]
    if len(trials):  # fixed arms and grids (a run of searches only has none)
        parts += ["<h3>Learning rate and training loss (the paper's Figure 2)</h3>",
                  "<p><small>Solid: AutoWU arms; dashed: the grid's best point and the default; dotted: AutoWU's "
                  "switch. Lowest seed of each arm.</small></p>",
                  _img(folder, figures.schedules(trials, tables["curves"], folder / f"{slug}-schedules.png"),
                       "LR and training loss")]
        parts += ["<h3>AutoWU's tests</h3>",
                  "<p><small>p of every vote at every test; dashed: the confidence a vote must exceed; triangles: "
                  "positive tests (k in a row switch); dotted: the switch and its reason.</small></p>",
                  _img(folder, figures.vote_record(trials, tables["tests"], folder / f"{slug}-tests.png"), "test record"),
                  _img(folder, figures.gp_at_switch(trials, tables["tests"], tables["curves"], folder / f"{slug}-gp.png"),
                       "GP mean at the switch")]
        parts += ["<h3>The baseline grid</h3>",
                  "<p><small>Mean validation accuracy per grid point (what <i>best</i> is chosen on); markers: "
                  "AutoWU's decay start LR and switch epoch.</small></p>",
                  _img(folder, figures.grid_heatmaps(trials, folder / f"{slug}-grid.png"), "grid heat map",
                       none="no baseline arm has more than one grid point")]
        by_batch = figures.accuracy_vs_batch(mine, folder / f"{slug}-batch.png", rd.planned_steps(trials),
                                             rd.chance_accuracy(name))
        if by_batch is not None:
            parts += ["<h3>Accuracy against batch size</h3>",
                      ("<p><small>The same epochs at every batch size, so each doubling halves the steps (under "
                       "each size). Solid: AutoWU arms; dashed: the other arms' rows.</small></p>"),
                      _img(folder, by_batch, "accuracy against batch size"), _limits_table(mine)]
        cost_png, order = figures.cost(trials, mine, folder / f"{slug}-cost.png")
        parts += ["<h3>Cost</h3>", f"<p><small>The grid's best so far: the point chosen on validation accuracy among "
                  f"the trials done, its test accuracy; completion order: {_e(order)}.</small></p>",
                  _img(folder, cost_png, "cost")]
    if is_search(every).any():
        parts += _search_section(every, mine, folder, slug)
    trials = every
    problems = rd.problem_trials(trials)
    parts.append("<h3>Trials that did not finish</h3>")
    parts.append(_trial_table(problems, tracking_ui, experiment_id) if len(problems) else "<p>None: every trial finished.</p>")
    parts += ["<details><summary>Every trial</summary>", _trial_table(trials, tracking_ui, experiment_id), "</details>"]
    return "\n".join(parts)


def write_report(run_dir: str | Path, *, title: str | None = None, tracking_ui: str | None = None,
                 experiment_id: str | None = None) -> Path:
    """Write ``<run_dir>/report/index.html`` and its figures; returns the page's path. ``tracking_ui``
    (the MLflow UI's address) and ``experiment_id`` make the trials' run ids links."""
    run_dir = Path(run_dir)
    tables = rd.load_tables(run_dir)
    table = rd.head_to_head_table(tables)
    folder = run_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    trials = tables["trials"]
    title = title or (f"{trials['suite'].dropna().iloc[0]}: AutoWU vs the warmup grid"
                      if "suite" in trials and trials["suite"].notna().any() else "AutoWU vs the warmup grid")
    missing = trials[trials["status"].astype(str) == TrialStatus.MISSING]
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{_e(title)}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>{_e(title)}</h1>",
             f"<p><small>Run folder: <code>{_e(run_dir)}</code>; {len(trials)} trials. Accuracies are test "
             "accuracy of the final model; device-hours are GPU-hours (CPU-hours without GPUs).</small></p>"]
    if len(missing):
        parts.append(f'<p class="warn">Partial run: {len(missing)} of {len(trials)} trials have no result '
                     f"(status missing): {_e(', '.join(missing['trial_id']))}.</p>")
    for name in dict.fromkeys(trials["workload"].dropna()):
        parts.append(_workload_section(name, tables, table, folder, tracking_ui, experiment_id))
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    page = folder / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
