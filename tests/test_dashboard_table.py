"""The head-to-head table on hand-built trial frames."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from autowu_bench.dashboards import best_grid_point, format_markdown, format_text, head_to_head


def autowu(batch, seed, test, val, switch, reason="test", arm="autowu-cos", interval="epoch"):
    return dict(workload="fmnist-mlp", batch_size=batch, arm=arm, kind="autowu", decay="cosine",
                test_interval=interval, seed=seed, peak_lr=None, warmup_epochs=None, is_default=False,
                final_val_acc=val, test_acc=test, device_hours=0.01, switch_epoch=switch, switch_reason=reason,
                decay_start_lr=0.002, status="finished")


def baseline(batch, seed, lr, warmup, val, test, default=False, hours=0.01):
    return dict(workload="fmnist-mlp", batch_size=batch, arm="baseline", kind="baseline", decay=None,
                test_interval=None, seed=seed, peak_lr=lr, warmup_epochs=warmup, is_default=default,
                final_val_acc=val, test_acc=test, device_hours=hours, switch_epoch=None, switch_reason=None,
                decay_start_lr=None, status="finished")


@pytest.fixture
def trials() -> pd.DataFrame:
    rows = [autowu(4096, 0, 0.80, 0.81, 3.0), autowu(4096, 1, 0.84, 0.83, 5.0, reason="fallback"),
            autowu(4096, 2, 0.82, 0.82, 4.0)]
    for seed in range(3):
        # (0.01, 1): best on test but not on validation; (0.003, 5): best validation mean over seeds;
        # (0.001, 1): best validation on seed 0 only
        rows.append(baseline(4096, seed, 0.01, 1.0, val=0.85, test=0.95))
        rows.append(baseline(4096, seed, 0.003, 5.0, val=[0.86, 0.88, 0.88][seed], test=[0.86, 0.87, 0.88][seed]))
        rows.append(baseline(4096, seed, 0.001, 1.0, val=[0.90, 0.80, 0.80][seed], test=0.9))
        rows.append(baseline(4096, seed, 0.004, 2.0, val=0.7, test=0.71, default=True))
    rows.append(baseline(256, 0, 0.001, 1.0, val=0.9, test=0.89, default=True))
    rows.append(autowu(256, 0, math.nan, math.nan, math.nan, reason=None))  # a failed trial
    return pd.DataFrame(rows)


def test_best_grid_point_is_chosen_on_validation_mean_over_seeds(trials):
    grid = trials[(trials.kind == "baseline") & (trials.batch_size == 4096)]
    assert best_grid_point(grid) == (0.003, 5.0)
    assert best_grid_point(grid, select_by="test_acc") == (0.01, 1.0)


def test_ties_go_to_the_smaller_lr_and_no_validation_gives_none():
    grid = pd.DataFrame([baseline(64, 0, 0.01, 1.0, 0.8, 0.8), baseline(64, 0, 0.001, 5.0, 0.8, 0.8),
                         baseline(64, 0, 0.001, 1.0, 0.8, 0.8)])
    assert best_grid_point(grid) == (0.001, 1.0)
    grid["final_val_acc"] = math.nan
    assert best_grid_point(grid) is None


def test_rows_per_batch_size(trials):
    table = head_to_head(trials)
    rows = table.set_index(["batch_size", "row"])
    assert list(table[table.batch_size == 4096]["row"]) == ["autowu-cos", "baseline best", "baseline default"]
    best = rows.loc[(4096, "baseline best")]
    assert best["test_acc_mean"] == pytest.approx(0.87) and best["test_acc_std"] == pytest.approx(0.01)
    assert best["val_acc_mean"] == pytest.approx((0.86 + 0.88 + 0.88) / 3)
    assert best["setting"] == "lr 0.003, wu 5 (best of 4 points)"
    assert best["seeds"] == 3 and best["trials"] == 3
    assert best["device_hours"] == pytest.approx(12 * 0.01)  # the whole grid's cost
    default = rows.loc[(4096, "baseline default")]
    assert default["test_acc_mean"] == pytest.approx(0.71) and default["device_hours"] == pytest.approx(0.03)
    assert default["setting"] == "lr 0.004, wu 2"
    auto = rows.loc[(4096, "autowu-cos")]
    assert auto["test_acc_mean"] == pytest.approx(0.82) and auto["test_acc_std"] == pytest.approx(0.02)
    assert auto["switch_epoch"] == pytest.approx(4.0) and auto["switch_reason"] == "test"
    assert auto["setting"] == "cosine, test/epoch" and auto["decay_start_lr"] == pytest.approx(0.002)


def test_failed_trials_count_but_do_not_average(trials):
    rows = head_to_head(trials).set_index(["batch_size", "row"])
    failed = rows.loc[(256, "autowu-cos")]
    assert failed["seeds"] == 0 and failed["trials"] == 1 and math.isnan(failed["test_acc_mean"])
    single = rows.loc[(256, "baseline best")]
    assert single["test_acc_mean"] == pytest.approx(0.89) and math.isnan(single["test_acc_std"])


def test_best_says_how_many_grid_points_had_no_result(trials):
    lost = trials.copy()
    point = (lost.peak_lr == 0.01) & (lost.batch_size == 4096)
    lost.loc[point, ["final_val_acc", "test_acc"]] = math.nan  # every seed of one point failed
    best = head_to_head(lost).set_index(["batch_size", "row"]).loc[(4096, "baseline best")]
    assert best["setting"] == "lr 0.003, wu 5 (best of 3 points; 1 without a result)"


def test_text_and_markdown_rendering(trials):
    table = head_to_head(trials)
    text = format_text(table, title="quick")
    lines = text.splitlines()
    assert lines[0] == "quick"
    assert lines[1].split() == ["workload", "batch", "arm", "test", "acc", "val", "acc", "seeds", "device-h",
                                "switch", "ep", "decay", "LR", "setting"]
    best = next(line for line in lines if "4096" in line and "baseline best" in line)
    assert "0.8700 (0.0100)" in best and "0.120" in best and "3/3" in best
    failed = next(line for line in lines if "256" in line and "autowu-cos" in line)
    assert " - " in failed and "0/1" in failed
    assert "4.00 test" in text
    # one blank line, and only between the batch sizes: each row's batch column, "" for the blank line
    assert [line.split()[1] if line else "" for line in lines[3:]] == ["256"] * 3 + [""] + ["4096"] * 3
    assert len(lines[2]) == max(len(line) for line in lines[1:])  # the rule spans the widest row
    assert lines[1].index("test acc") + len("test acc") == best.index("(0.0100)") + len("(0.0100)")  # right-aligned
    markdown = format_markdown(table).splitlines()
    assert markdown[0].startswith("| workload | batch | arm | test acc |")
    assert len(markdown) == 2 + len(table)
    assert all(line.count("|") == markdown[0].count("|") for line in markdown)


def test_restarts_column_only_when_some_trial_restarted(trials):
    plain = format_text(head_to_head(trials))
    assert "restarts" not in plain and "restarts" not in format_markdown(head_to_head(trials))
    trials["restarts"] = 0
    assert format_text(head_to_head(trials)) == plain  # all zero: the table reads as before
    trials.loc[(trials.kind == "autowu") & (trials.batch_size == 4096), "restarts"] = [1, 0, 2]
    trials.loc[(trials.kind == "baseline") & (trials.peak_lr == 0.01), "restarts"] = 1  # not the best point
    table = head_to_head(trials)
    rows = table.set_index(["batch_size", "row"])["restarts"]
    assert rows[(4096, "autowu-cos")] == 3 and rows[(4096, "baseline best")] == 3  # the whole grid's
    assert rows[(4096, "baseline default")] == 0 and rows[(256, "autowu-cos")] == 0
    text = format_text(table).splitlines()
    header = text[0].split()
    assert header[-2:] == ["restarts", "setting"]
    autowu_row = next(line for line in text if line.startswith("fmnist-mlp") and " 4096 " in line and "autowu" in line)
    assert autowu_row.split("  ")[-1].strip().startswith("cosine")
    md = format_markdown(table).splitlines()
    assert md[0].count("|") == md[1].count("|") == md[2].count("|") == 12  # 11 columns


def test_a_point_that_diverges_on_two_of_three_seeds_cannot_win_best():
    """A diverged seed counts in its point's mean at what its final weights give (about chance), and the
    table says how many of a row's trials diverged."""
    rows = []
    for seed in range(3):
        lucky = baseline(256, seed, 0.1, 1.0, val=0.92 if seed == 0 else 0.10, test=0.91 if seed == 0 else 0.10)
        lucky["status"] = "finished" if seed == 0 else "diverged"
        rows += [lucky, baseline(256, seed, 0.01, 1.0, val=0.88, test=0.87, default=True)]
    table = head_to_head(pd.DataFrame(rows))
    best = table[table["row"] == "baseline best"].iloc[0]
    assert best["setting"].startswith("lr 0.01, wu 1") and best["diverged"] == 0
    assert best_grid_point(pd.DataFrame(rows)) == (0.01, 1.0)
    text = format_text(table)
    assert "3/3" in text and "(2 diverged)" not in text  # the chosen point has none
    lucky_only = head_to_head(pd.DataFrame([r for r in rows if r["peak_lr"] == 0.1] + [rows[1]]))
    assert "(2 diverged)" not in format_text(lucky_only)  # best = the default point (0.88 vs mean 0.373)
    autowu_rows = pd.DataFrame([{**autowu(256, s, 0.1, 0.1, 1.0, reason="divergence"), "status": "diverged"}
                                for s in range(2)])
    assert "2/2 (2 diverged)" in format_text(head_to_head(autowu_rows))


def test_the_setting_shows_a_decay_other_than_cosine_and_an_optimizers_note():
    """An arm beyond the paper: its decay and, for CLARS, "reconstruction" beside its rows (data from
    optimizers.OPTIMIZER_INFO, not a case in the table)."""
    rows = []
    for arm, optimizer, decay in (("clars", "clars-chunked", "polynomial"), ("sf", "schedulefree-adamw", "constant")):
        row = baseline(4096, 0, 0.64, 0.0, val=0.8, test=0.8)
        row.update(arm=arm, optimizer=optimizer, decay=decay, decay_power=2.0 if decay == "polynomial" else None)
        rows.append(row)
    table = head_to_head(pd.DataFrame(rows))
    settings = dict(zip(table["row"], table["setting"]))
    assert settings["clars best"] == "lr 0.64, wu 0, poly2 (best of 1 point) [clars-chunked: reconstruction]"
    assert settings["sf best"] == "lr 0.64, wu 0, constant (best of 1 point)"
    assert "[clars-chunked: reconstruction]" in format_text(table)
