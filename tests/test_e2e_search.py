"""Search arms end to end on the CPU: run_suite.py -> one Ray Tune job per search (random + ASHA, TPE)
-> the ordinary trial driver -> summaries, Parquet tables, MLflow runs, the table and the report; and
the example of a user's own tune.Tuner over the public trainable.

Real Fashion-MNIST (Debian's dataset-fashion-mnist), tiny budgets: a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from autowu_bench.dashboards import head_to_head
from autowu_bench.platform.records.outcome import device_hours
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.workloads.data import fashion_mnist

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

EPOCHS = 4
SUITE = {
    "name": "search-e2e", "workloads": ["fmnist-mlp"], "batch_sizes": [64], "epochs": EPOCHS, "seeds": [0],
    "arms": [
        # LRs up to 0.3 diverge or crawl: ASHA (rungs at epochs 1, 2 and 4, the last) has poor trials to stop
        {"name": "asha", "kind": "baseline", "search": {
            "searcher": "random", "num_samples": 4, "seed": 3,
            "space": {"peak_lr": {"low": 1e-4, "high": 0.3, "log": True}, "warmup_epochs": [0, 1]},
            "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2}}},
        {"name": "tpe", "kind": "baseline", "search": {
            "searcher": "tpe", "num_samples": 3, "initial_points": 2, "seed": 0,
            "space": {"peak_lr": {"low": 1e-4, "high": 0.1, "log": True}, "warmup_epochs": {"low": 0, "high": 2}}}},
    ],
    "resources": {"workers_per_trial": 1, "cpus_per_worker": 0.5, "max_concurrent_trials": 2},
    "data": {"train_subset": 512, "val_size": 256},
}


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    if not Path(fashion_mnist.DEBIAN_DIR, "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real Fashion-MNIST is missing from {fashion_mnist.DEBIAN_DIR}: install dataset-fashion-mnist")
    work = tmp_path_factory.mktemp("search")
    (work / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_suite.py"), "--suite", str(work / "suite.yaml"), "--results",
         str(work / "runs"), "--num-cpus", "2"],
        cwd=work, capture_output=True, text=True, timeout=1700, check=False,
    )
    assert proc.returncode == 0, f"run_suite.py failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    (run_dir,) = (work / "runs" / "search-e2e").iterdir()
    return work, run_dir, proc.stdout


def _trials(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "trials.parquet")


def test_random_and_tpe_propose_the_configured_points_inside_the_space(search_run):
    _, run_dir, _ = search_run
    trials = _trials(run_dir)
    specs = {s["trial_id"]: s for s in json.loads((run_dir / "trial_specs.json").read_text())}
    assert set(trials.trial_id) == set(specs)  # every proposed trial is in the trial list
    for arm, n, (low, high), wu_max in (("asha", 4, (1e-4, 0.3), 1), ("tpe", 3, (1e-4, 0.1), 2)):
        mine = trials[trials.arm == arm].sort_values("trial_id")
        assert mine.trial_id.tolist() == [f"{arm}_fmnist-mlp_b64_s0_t{i:03d}" for i in range(1, n + 1)]
        assert mine.peak_lr.between(low, high).all() and mine.warmup_epochs.between(0, wu_max).all()
        assert mine.peak_lr.nunique() == n
        assert (mine.search == ("random+asha" if arm == "asha" else "tpe")).all()
    assert set(trials.loc[trials.arm == "asha", "warmup_epochs"]) <= {0.0, 1.0}
    # Every trial ended as a result: finished, diverged, or stopped by ASHA; never failed.
    assert set(trials.status) <= {"finished", "diverged", "stopped"}, trials[["trial_id", "status", "error"]]
    assert (trials.loc[trials.arm == "tpe", "status"] != "stopped").all()


def test_asha_stops_a_trial_early_and_it_is_priced_to_its_stop(search_run):
    work, run_dir, stdout = search_run
    trials = _trials(run_dir)
    stopped = trials[trials.status == "stopped"]
    assert len(stopped) >= 1 and (stopped.arm == "asha").all()
    assert "stopped:" in stdout and "stopped early" in stdout
    specs = {s["trial_id"]: TrialSpec.from_dict(s) for s in json.loads((run_dir / "trial_specs.json").read_text())}
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    for row in stopped.itertuples():
        assert 1 <= row.epochs_done < EPOCHS and math.isnan(row.test_acc) and row.error is None
        driver = json.loads((run_dir / "trials" / row.trial_id / "driver.json").read_text())
        # wall time from the driver's start to the stop, and its device-hours: what the trial ran
        assert row.wall_seconds == pytest.approx(row.ended_at - driver["started"])
        assert row.device_hours == pytest.approx(device_hours(specs[row.trial_id], row.wall_seconds)) and row.device_hours > 0
        # it kept what it logged: every epoch up to the one ASHA stopped it at
        logged = set(epochs.loc[epochs.trial_id == row.trial_id, "epoch"])
        assert set(range(1, row.epochs_done + 1)) <= logged
        run = client.get_run(row.mlflow_run_id)
        assert run.info.status == "KILLED" and run.data.tags["summary.status"] == "stopped"
    finished = trials[trials.status == "finished"]
    assert len(finished) >= 1 and (finished.epochs_done == EPOCHS).all() and finished.test_acc.notna().all()


def test_the_table_search_rows_match_the_trial_rows(search_run):
    _, run_dir, stdout = search_run
    trials = _trials(run_dir)
    table = head_to_head(trials).set_index("row")
    for arm in ("asha", "tpe"):
        mine = trials[trials.arm == arm]
        done = mine[mine.status.isin(["finished", "diverged"])]
        best = done.sort_values(["final_val_acc", "trial_id"], ascending=[False, True]).iloc[0]
        row = table.loc[f"{arm} best"]
        assert row.test_acc_mean == pytest.approx(best.test_acc)
        assert row.val_acc_mean == pytest.approx(best.final_val_acc)
        assert row.device_hours == pytest.approx(mine.device_hours.sum())
        assert (row.search_trials, row.search_completed, row.search_stopped) == (
            len(mine), len(done), int((mine.status == "stopped").sum()))
        assert f"{row.search_trials} trials, {row.search_completed} completed" in row.setting
        assert f"{arm} best" in stdout  # the printed table has the row
    assert (run_dir / "report" / "fmnist-mlp-search.png").is_file()
    assert "Tune searches" in (run_dir / "report" / "index.html").read_text()


def test_resuming_a_finished_search_run_replays_every_trial_and_trains_none(search_run):
    """--resume of a run whose searches ended: each search runs again with its seed, every trial (finished,
    or stopped by ASHA) is replayed to the searcher from its records, TPE proposes the same points, nothing
    trains and the table is the same."""
    work, run_dir, stdout = search_run
    assert f"if it stops, resume with: python run_suite.py --resume {run_dir}" in stdout
    specs = (run_dir / "trial_specs.json").read_text()
    table = (run_dir / "table.txt").read_text()
    traces = {p: p.stat().st_mtime_ns for p in run_dir.glob("trials/*/lr_rank0.parquet")}
    proc = subprocess.run([sys.executable, str(REPO / "run_suite.py"), "--resume", str(run_dir)], cwd=work,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "run again with their seeds" in proc.stdout
    assert (run_dir / "trial_specs.json").read_text() == specs
    assert traces and {p: p.stat().st_mtime_ns for p in traces} == traces  # no trial trained again
    # The same table but for its title's run folder line, which is the same folder too.
    assert (run_dir / "table.txt").read_text().splitlines()[1:] == table.splitlines()[1:]


def test_the_example_runs_a_users_own_tuner_over_the_trainable(tmp_path):
    out = tmp_path / "my-search"
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "my_tune_search.py"), "--samples", "2", "--epochs", "2",
         "--train-subset", "512", "--out", str(out), "--num-cpus", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "2 trials" in proc.stdout and "test_acc" in proc.stdout
    summaries = [json.loads(p.read_text()) for p in (out / "trials").glob("*/summary.json")]
    assert summaries and all(s["status"] in ("finished", "stopped") for s in summaries)
    assert any(s["status"] == "finished" and s["test_acc"] > 0.3 for s in summaries)


def test_a_trial_asha_stopped_gives_its_cores_back(tmp_path):
    """On one core, a 3-point grid with ASHA: the second point (an LR that barely moves) is stopped at
    the first rung, and the third needs the core the stopped trial's Ray Train workers held. With Ray's
    dashboard (hence its State API) off, that core stayed taken and the search waited forever."""
    suite = {
        "name": "asha-cores", "workloads": ["fmnist-mlp"], "batch_sizes": [64], "epochs": 3, "seeds": [0],
        "arms": [{"name": "asha", "kind": "baseline", "search": {
            "searcher": "grid", "seed": 0, "space": {"peak_lr": [0.01, 1e-7, 0.003], "warmup_epochs": [0]},
            "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2}}}],
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1.0, "max_concurrent_trials": 1},
        "data": {"train_subset": 512, "val_size": 256},
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_suite.py"), "--suite", str(tmp_path / "suite.yaml"), "--results",
         str(tmp_path / "runs"), "--num-cpus", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    (run_dir,) = (tmp_path / "runs" / "asha-cores").iterdir()
    trials = _trials(run_dir).set_index("trial_id")
    assert trials.loc["asha_fmnist-mlp_b64_s0_t001", "status"] == "finished"
    assert trials.loc["asha_fmnist-mlp_b64_s0_t002", "status"] == "stopped"
    # the third trial got the core: it trained (ASHA may stop it too at a rung)
    third = trials.loc["asha_fmnist-mlp_b64_s0_t003"]
    assert third.status in ("finished", "stopped") and third.epochs_done >= 1
