"""The HTML report: its numbers against hand-computed ones on a small synthetic run (2 seeds, a diverged,
a failed and a missing trial), its sentences, dashboards.outputs writing it with the tables, and a real headless
Chromium opening it from file://."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from autowu_bench.dashboards import report_data as rd
from autowu_bench.dashboards.__main__ import main as dashboards_main
from autowu_bench.dashboards.paper import paper_cell
from autowu_bench.dashboards.report import write_report

STD2 = float(np.std([0.80, 0.82], ddof=1))  # = std of (0.84, 0.86): 0.01414


def trial(tid, batch, seed, kind, *, test, val, hours=0.02, status="finished", lr=None, wu=None, default=False,
          ended=None, error=None, run_id=None, switch=None):
    auto = kind == "autowu"
    return dict(trial_id=tid, suite="syn", workload="fmnist-mlp", batch_size=batch, epochs=4, seed=seed,
                arm="autowu-cos" if auto else "baseline", kind=kind, optimizer="adamp",
                decay="cosine" if auto else None, autowu=json.dumps({"test_interval": "epoch"}) if auto else "{}",
                test_interval="epoch" if auto else None, peak_lr=lr, warmup_epochs=wu, is_default=default,
                status=status, steps_per_epoch=10, final_val_acc=val, test_acc=test, device_hours=hours,
                switch_epoch=switch, switch_reason="test" if switch else None,
                decay_start_lr=0.004 if switch else None, error=error, mlflow_run_id=run_id, ended_at=ended)


NAN = math.nan


@pytest.fixture
def run_dir(tmp_path):
    rows = [
        trial("a256_s0", 256, 0, "autowu", test=0.80, val=0.81, hours=0.01, switch=2.0, ended=0.5, run_id="r1"),
        trial("a256_s1", 256, 1, "autowu", test=0.82, val=0.83, hours=0.01, switch=2.5, ended=0.7),
        # grid at 256, in completion order: (0.01, 1) diverged and failed; (0.001, 1) best; (0.003, 2) default
        trial("b256_lr0.01_s0", 256, 0, "baseline", test=NAN, val=NAN, lr=0.01, wu=1.0, status="diverged", ended=1),
        trial("b256_lr0.001_s0", 256, 0, "baseline", test=0.84, val=0.85, lr=0.001, wu=1.0, ended=2),
        trial("b256_def_s0", 256, 0, "baseline", test=0.79, val=0.80, lr=0.003, wu=2.0, default=True, ended=3),
        trial("b256_lr0.001_s1", 256, 1, "baseline", test=0.86, val=0.85, lr=0.001, wu=1.0, ended=4),
        trial("b256_def_s1", 256, 1, "baseline", test=0.81, val=0.80, lr=0.003, wu=2.0, default=True, ended=5),
        trial("b256_lr0.01_s1", 256, 1, "baseline", test=NAN, val=NAN, lr=0.01, wu=1.0, status="failed",
              error="RuntimeError: boom", ended=6),
        # batch 1024: one seed each; the second seed never ran
        trial("a1024_s0", 1024, 0, "autowu", test=0.75, val=0.76, hours=0.01, switch=1.0, ended=7),
        trial("a1024_s1", 1024, 1, "autowu", test=NAN, val=NAN, hours=NAN, status="missing"),
        trial("b1024_s0", 1024, 0, "baseline", test=0.70, val=0.70, lr=0.002, wu=1.0, default=True, ended=8),
        trial("b1024_s1", 1024, 1, "baseline", test=NAN, val=NAN, hours=NAN, lr=0.002, wu=1.0, default=True,
              status="missing"),
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "trials.parquet", index=False)
    steps = np.arange(1, 41)
    curves = pd.concat([pd.DataFrame({"trial_id": r["trial_id"], "step": steps, "lr": 1e-4 * steps,
                                      "train_loss": 2.0 / np.sqrt(steps)}) for r in rows if r["status"] != "missing"])
    curves.to_parquet(tmp_path / "curves.parquet", index=False)
    tests = pd.DataFrame([
        {"trial_id": tid, "step": s, "epoch": s / 10, "p": [0.5 + s / 100] * 5, "votes": [s >= 10] * 5,
         "positive": s >= 10, "decision": "switch" if s == switch else ("positive" if s >= 10 else "negative"),
         "mu": list(np.linspace(2, 1, 50)) if s == switch else None,
         "x_star": [0.9] * 5 if s == switch else None, "start_lr": 0.004 if s == switch else None}
        for tid, switch in (("a256_s0", 20), ("a1024_s0", 10)) for s in range(5, switch + 1, 5)])
    tests.to_parquet(tmp_path / "tests.parquet", index=False)
    return tmp_path


@pytest.fixture
def tables(run_dir):
    return rd.load_tables(run_dir)


def test_answer_numbers_and_sentences(tables):
    table = rd.head_to_head_table(tables)
    answers = {a.batch_size: a for a in rd.answers(table, tables["trials"])}
    a256 = answers[256]
    assert a256.diff_pp == pytest.approx((0.81 - 0.85) * 100) and a256.beyond_spread is True
    assert a256.text == (
        "batch 256: AutoWU autowu-cos (cosine, test/epoch) 0.810 vs best of 2 grid points (1 without a result) "
        f"0.850 (-4.00 pp) for 1/6 of the grid's device-hours; 2 seeds, the difference is larger than the "
        f"seed-to-seed spread (std up to {STD2:.3f}).")
    a1024 = answers[1024]
    assert a1024.beyond_spread is None and a1024.diff_pp == pytest.approx(5.0)
    assert a1024.text == ("batch 1024: AutoWU autowu-cos (cosine, test/epoch) 0.750 vs best of 1 grid points 0.700 "
                          "(+5.00 pp) for 1/2 of the grid's device-hours; 1 seed, so no seed-to-seed spread to "
                          "judge the difference by.")


def test_within_spread_when_the_difference_is_small():
    row = dict(workload="w", batch_size=64, setting="cosine, test/epoch", seeds=2, trials=2, device_hours=0.01)
    table = pd.DataFrame([{**row, "row": "auto", "test_acc_mean": 0.850, "test_acc_std": 0.02},
                          {**row, "row": "base best", "setting": "lr 0.1, wu 1 (best of 3 points)",
                           "test_acc_mean": 0.855, "test_acc_std": 0.01, "device_hours": 0.03,
                           "grid_points": 3, "grid_points_without_result": 0}])
    (answer,) = rd.answers(table, pd.DataFrame({"arm": ["auto"], "kind": ["autowu"]}))
    assert answer.beyond_spread is False and "within the seed-to-seed spread (std up to 0.020)" in answer.text
    assert "for 1/3 of the grid's" in answer.text and "(-0.50 pp)" in answer.text
    assert "vs best of 3 grid points 0.855" in answer.text


def test_table1_cells_are_mean_std_over_seeds(tables):
    frame = rd.arm_rows(rd.head_to_head_table(tables), tables["trials"], "fmnist-mlp")
    assert list(frame.index) == ["autowu-cos", "baseline best", "baseline default"]
    auto, best, default = frame.loc["autowu-cos", 256], frame.loc["baseline best", 256], frame.loc["baseline default", 256]
    assert auto["mean"] == pytest.approx(0.81) and auto["std"] == pytest.approx(STD2) and auto["seeds"] == 2
    assert best["mean"] == pytest.approx(0.85) and best["std"] == pytest.approx(STD2)
    assert default["mean"] == pytest.approx(0.80) and default["std"] == pytest.approx(STD2)
    one = frame.loc["autowu-cos", 1024]
    assert one["mean"] == pytest.approx(0.75) and math.isnan(one["std"]) and (one["seeds"], one["trials"]) == (1, 2)
    assert auto["paper"] is None  # fmnist is not a paper workload


def test_paper_numbers_are_sourced_fractions():
    mean, std, source = paper_cell("cifar10-resnet18", "adamp", "baseline", 256)
    assert (mean, std, source) == (pytest.approx(0.9658), pytest.approx(0.0007), "Table 1 arXiv:2107.05855")
    mean, std, source = paper_cell("imagenet-vit-s16", "adamp", "const-cos", 32768)
    assert mean == pytest.approx(0.7273) and math.isnan(std) and source.startswith("Table 3")
    assert paper_cell("fmnist-mlp", "adamp", "cosine", 256) is None


def test_cost_curve_follows_completion_order_with_the_tables_choice(tables):
    trials = tables["trials"]
    grid = trials[(trials.kind == "baseline") & (trials.batch_size == 256)]
    curve, source = rd.cost_curve(grid.iloc[::-1])  # shuffled rows: the order comes from ended_at
    assert source == "trials' end times"
    assert list(curve["trial_id"]) == ["b256_lr0.01_s0", "b256_lr0.001_s0", "b256_def_s0", "b256_lr0.001_s1",
                                       "b256_def_s1", "b256_lr0.01_s1"]
    assert list(curve["device_hours"]) == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.10, 0.12])
    assert math.isnan(curve["best_test_acc"].iloc[0])  # only a diverged trial so far
    assert list(curve["best_test_acc"].iloc[1:]) == pytest.approx([0.84, 0.84, 0.85, 0.85, 0.85])
    assert curve["best_point"].iloc[-1] == (0.001, 1.0)
    _, source = rd.cost_curve(grid.assign(ended_at=np.nan))
    assert source.startswith("launch order")


def test_cost_ratio_text():
    assert rd.cost_ratio(0.02, 0.12) == "1/6"
    assert rd.cost_ratio(0.01, 0.02) == "1/2"
    assert rd.cost_ratio(0.09, 0.1) == "0.9x"
    assert rd.cost_ratio(0.01, 0.0) == "an unknown share"


def test_grid_cells_count_diverged_and_failed(tables):
    trials = tables["trials"]
    cells = rd.grid_cells(trials[(trials.kind == "baseline") & (trials.batch_size == 256)]).set_index(["peak_lr", "warmup_epochs"])
    bad = cells.loc[(0.01, 1.0)]
    assert (bad["diverged"], bad["failed"], bad["trials"]) == (1, 1, 2) and math.isnan(bad["val_acc"])
    assert cells.loc[(0.001, 1.0), "val_acc"] == pytest.approx(0.85)


def test_report_page_lists_every_problem_trial_and_links_mlflow(run_dir):
    page = write_report(run_dir, tracking_ui="http://127.0.0.1:5000/", experiment_id="7")
    assert page == run_dir / "report" / "index.html"
    text = page.read_text()
    assert "Partial run: 2 of 12 trials have no result (status missing): a1024_s1, b1024_s1." in text
    problems = text.split("Trials that did not finish", 1)[1].split("Every trial", 1)[0]
    for tid, status in (("b256_lr0.01_s0", "diverged"), ("b256_lr0.01_s1", "failed"), ("a1024_s1", "missing")):
        assert re.search(rf"<td>{re.escape(tid)}</td><td>{status}</td>", problems), tid
    assert "RuntimeError: boom" in problems
    assert '<a href="http://127.0.0.1:5000/#/experiments/7/runs/r1">r1</a>' in text
    images = re.findall(r'<img src="([^"]+)"', text)
    assert len(images) >= 5 and all((page.parent / src).stat().st_size > 0 for src in images)
    assert "http" not in text.replace("http://127.0.0.1:5000/#", "")  # nothing fetched from the network
    unlinked = write_report(run_dir).read_text()
    assert "<code>r1</code>" in unlinked and "#/experiments" not in unlinked


def test_a_trial_a_scheduler_stopped_is_listed_among_those_that_did_not_finish(run_dir):
    trials = pd.read_parquet(run_dir / "trials.parquet")
    trials.loc[trials.trial_id == "a256_s1", "status"] = "stopped"
    trials.to_parquet(run_dir / "trials.parquet", index=False)
    problems = write_report(run_dir).read_text().split("Trials that did not finish", 1)[1].split("Every trial", 1)[0]
    assert re.search(r"<td>a256_s1</td><td>stopped</td>", problems)
    assert "<td>a256_s0</td>" not in problems  # a finished trial is not listed


def test_figures_are_saved_at_150_dpi_or_more(run_dir):
    from PIL import Image

    page = write_report(run_dir)
    images = re.findall(r'<img src="([^"]+)"', page.read_text())
    for src in images:
        with Image.open(page.parent / src) as image:
            assert min(image.info["dpi"]) >= 149.5, src  # PNG stores dots per metre: 150 dpi reads back 149.99


def test_missing_tables_name_the_folder_and_the_fix(tmp_path, capsys):
    (tmp_path / "trial_specs.json").write_text("[]")
    with pytest.raises(rd.ReportError, match=re.escape(str(tmp_path)) + ".*tables.collect"):
        rd.load_tables(tmp_path)
    assert dashboards_main(["report", str(tmp_path / "nowhere")]) == 2
    assert "is this a run folder" in capsys.readouterr().err


def test_the_outputs_of_a_partial_run_are_its_tables_and_a_report_linking_the_runs(tmp_path):
    from autowu_bench.dashboards.outputs import write_outputs
    from autowu_bench.platform.records import tables
    from autowu_bench.platform.records.outcome import EpochReport, TrialOutcome, TrialStatus
    from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder
    from autowu_bench.platform.records.spec import TrialSpec

    common = dict(suite="p", workload="fmnist-mlp", batch_size=64, epochs=2, seed=0, optimizer="adamp",
                  weight_decay=0.01, num_workers=1)
    specs = [TrialSpec(trial_id="auto", arm="autowu-cos", kind="autowu", decay="cosine", **common),
             TrialSpec(trial_id="base", arm="baseline", kind="baseline", peak_lr=0.001, warmup_epochs=1.0,
                       is_default=True, **common),
             TrialSpec(trial_id="never", arm="baseline", kind="baseline", peak_lr=0.003, warmup_epochs=1.0, **common)]
    tables.write_specs(tmp_path, specs)
    TrialFolder.of(tmp_path, "auto").end(TrialOutcome.from_report(
        specs[0], EpochReport(epoch=2, step=8, status=TrialStatus.FINISHED, val_acc=0.8, test_acc=0.79,
                              switch_epoch=1.0),
        started=0.0, ended=36.0, status=TrialStatus.FINISHED, mlflow_run_id="run-a"), EndedBy.DRIVER)
    TrialFolder.of(tmp_path, "base").end(TrialOutcome.from_report(
        specs[1], EpochReport(epoch=2, step=8, status=TrialStatus.FINISHED, val_acc=0.7, test_acc=0.69),
        started=0.0, ended=72.0, status=TrialStatus.FINISHED), EndedBy.DRIVER)
    outputs = write_outputs(tmp_path, title="t", tracking_ui="http://127.0.0.1:5999", experiment_id="3")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "never" in page.split("Partial run", 1)[1] and "#/experiments/3/runs/run-a" in page
    assert outputs.text == (tmp_path / "table.txt").read_text() and "0.7900" in outputs.text
    trials = tables.load(tmp_path, "trials").set_index("trial_id")
    assert trials.loc["auto", "mlflow_run_id"] == "run-a" and trials.loc["base", "ended_at"] == 72.0
    # What the suite logs to its parent run, by artifact folder: every file there, each written.
    assert outputs.files[""] == [tmp_path / "table.txt", tmp_path / "table.md"]
    assert {p.name for p in outputs.files["results"]} >= {"trials.parquet"}
    assert {f.name for f in outputs.files["report"]} >= {"index.html"}
    assert all(f.parent == tmp_path / "report" for f in outputs.files["report"])
    assert all(f.is_file() for files in outputs.files.values() for f in files)
    # Without the MLflow UI's address the report has no links (MLflow away, or a file store).
    write_outputs(tmp_path, title="t")
    assert "#/experiments/" not in (tmp_path / "report" / "index.html").read_text()


# -- a real browser ---------------------------------------------------------------------------------------

CHROMIUM_HINT = "chromium is missing: install it with `apt-get install -y -q chromium` (.ci/run does, as root)"


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(CHROMIUM_HINT)
    profile = tmp_path / "profile"
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180)


@pytest.mark.timeout(400)
def test_report_opens_in_headless_chromium(run_dir, tmp_path):
    from PIL import Image

    page = write_report(run_dir)
    url = page.resolve().as_uri()
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    count = len(re.findall(r"<img ", html))
    assert re.search(rf'data-images="ok {count}"', html), re.search(r"data-images=\"[^\"]*\"", html)
    assert count >= 5
    assert "batch 256: AutoWU autowu-cos (cosine, test/epoch) 0.810 vs best of 2 grid points" in html
    assert "0.8100 (0.0141)" in html and "baseline default" in html  # the Table 1 layout
    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, "--window-size=1200,2000", f"--screenshot={shot}", url)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50


def test_the_papers_numbers_sit_only_beside_arms_run_as_in_the_paper():
    paper = pd.Series({"autowu": json.dumps({"test_interval": "epoch"})})
    ablation = pd.Series({"autowu": json.dumps({"test_interval": "auto"})})
    linear = pd.Series({"autowu": json.dumps({"warmup": "linear", "seed": 3})})
    assert rd._paper_autowu(paper) and not rd._paper_autowu(ablation) and not rd._paper_autowu(linear)


def test_batch_limits_and_the_steps_under_each_batch_size():
    table = pd.DataFrame([
        {"row": "a", "batch_size": b, "test_acc_mean": acc, "test_acc_std": NAN}
        for b, acc in ((256, 0.85), (512, 0.855), (1024, 0.848), (2048, 0.80), (4096, 0.86))
    ] + [{"row": "b", "batch_size": b, "test_acc_mean": 0.8, "test_acc_std": NAN} for b in (256, 512)])
    limits = rd.batch_limits(table).set_index("row")
    # a: best 0.86 at 4096, but 256 is already more than a point below it: it holds nowhere
    assert limits.loc["a", "best_batch"] == 4096 and pd.isna(limits.loc["a", "holds_to"])
    assert limits.loc["a", "breaks_at"] == 256
    assert limits.loc["b", "holds_to"] == 512 and pd.isna(limits.loc["b", "breaks_at"])
    table.loc[(table["row"] == "a") & (table["batch_size"] == 4096), "test_acc_mean"] = 0.70
    limits = rd.batch_limits(table).set_index("row")
    assert limits.loc["a", "holds_to"] == 1024 and limits.loc["a", "breaks_at"] == 2048
    trials = pd.DataFrame({"batch_size": [256, 256, 512], "steps_per_epoch": [32, None, 16], "epochs": [10, 10, 10]})
    assert rd.planned_steps(trials) == {256: 320, 512: 160}


def test_the_report_labels_a_reconstruction_and_shows_the_steps(run_dir):
    trials = pd.read_parquet(run_dir / "trials.parquet")
    trials.loc[trials["kind"] == "baseline", "optimizer"] = "clars-chunked"
    trials.to_parquet(run_dir / "trials.parquet", index=False)
    page = write_report(run_dir).read_text()
    assert "baseline best <small>(clars-chunked, reconstruction)</small>" in page
    assert "CLARS (reconstruction, chunked)" in page and "breaks at batch" in page
    assert (run_dir / "report" / "fmnist-mlp-batch.png").is_file()


def test_arms_without_a_grid_get_no_heat_map(tmp_path):
    from autowu_bench.dashboards import figures

    one = pd.DataFrame([{"trial_id": f"p{b}", "batch_size": b, "arm": "prodigy", "kind": "baseline", "peak_lr": 1.0,
                         "warmup_epochs": 0.0, "final_val_acc": 0.8, "test_acc": 0.8, "status": "finished"}
                        for b in (256, 512)])
    assert figures.grid_heatmaps(one, tmp_path / "grid.png") is None
