"""tables.collect on fragments written by TrialResults and on trial summaries."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from autowu_bench.platform.records import tables
from autowu_bench.platform.records.outcome import TrialOutcome, TrialStatus
from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder
from autowu_bench.platform.records.trial_results import TrialResults
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.schedulers.switch_tests import Decision, SwitchTest


def specs() -> list[TrialSpec]:
    common = dict(suite="r", workload="fmnist-mlp", batch_size=64, epochs=2, seed=0, optimizer="adamp",
                  weight_decay=0.01, num_workers=2)
    return [
        TrialSpec(trial_id="auto_s0", arm="autowu-auto", kind="autowu", decay="cosine",
                  autowu={"test_interval": "auto", "patience": 2}, **common),
        TrialSpec(trial_id="base_s0", arm="baseline", kind="baseline", peak_lr=0.001, warmup_epochs=1.0,
                  is_default=True, **common),
        TrialSpec(trial_id="never_s0", arm="baseline", kind="baseline", peak_lr=0.003, warmup_epochs=1.0, **common),
    ]


@pytest.fixture
def run_dir(tmp_path):
    tables.write_specs(tmp_path, specs())
    auto = TrialResults(tmp_path / "trials" / "auto_s0")
    auto.log_steps([1, 2, 3, 4], [1e-5, 1e-4, 1e-3, 1e-2], [2.3, 2.2, 2.0, 1.9])
    auto.log_tests([SwitchTest(step=4, epoch=1.0, p=(0.96, 0.99), votes=(True, True), positive=True,
                                decision=Decision.SWITCH, n_finite=4, seconds=0.01, mu=(1.0, 2.0), x_star=(0.5,),
                                start_lr=0.001)])
    auto.log_epoch(0, 4, {"val_acc": 0.5, "val_loss": 1.5})
    auto.flush()
    # a crash after step 4; the resumed trial replays steps 3-4 from the epoch-0 checkpoint with other losses
    resumed = TrialResults(tmp_path / "trials" / "auto_s0")
    resumed.log_steps([3, 4, 5, 6], [1e-3, 1e-2, 5e-3, 0.0], [2.05, 1.95, 1.5, 1.4])
    resumed.log_epoch(0, 4, {"val_acc": 0.55, "val_loss": 1.4})
    resumed.log_epoch(1, 6, {"val_acc": 0.7, "val_loss": 1.1})
    resumed.log_event("rollback", 4, to_step=2)
    resumed.flush()
    TrialFolder(tmp_path / "trials" / "auto_s0").end(TrialOutcome(
        trial_id="auto_s0", arm="autowu-auto", kind="autowu", status=TrialStatus.FINISHED,
        final_val_acc=0.7, best_val_acc=0.7, test_acc=0.69, switch_epoch=1.0, switch_reason="test",
        decay_start_lr=0.001, rollbacks=1, wall_seconds=36.0, device_hours=0.02), EndedBy.DRIVER)
    base = TrialResults(tmp_path / "trials" / "base_s0")
    base.log_steps([1, 2], [0.0, 0.001], [2.3, 2.1])
    base.flush()
    # What the driver writes when the workers died before any report: 360 s of wall time.
    TrialFolder(tmp_path / "trials" / "base_s0").end(TrialOutcome.from_report(
        specs()[1], None, status=TrialStatus.FAILED, started=1000.0, ended=1360.0, error="worker died"), EndedBy.DRIVER)
    return tmp_path


def test_collect_writes_every_table(run_dir):
    paths = tables.collect(run_dir)
    assert set(paths) == set(tables.TABLES)
    assert all(p.is_file() and p.parent == run_dir for p in paths.values())


def test_trials_table_joins_specs_and_summaries(run_dir):
    tables.collect(run_dir)
    trials = tables.load(run_dir, "trials").set_index("trial_id")
    assert list(trials.index) == ["auto_s0", "base_s0", "never_s0"]
    assert trials.loc["auto_s0", "test_acc"] == 0.69 and trials.loc["auto_s0", "switch_reason"] == "test"
    assert trials.loc["auto_s0", "test_interval"] == "auto"
    assert json.loads(trials.loc["auto_s0", "autowu"]) == {"patience": 2, "test_interval": "auto"}
    assert trials.loc["base_s0", "status"] == "failed" and math.isnan(trials.loc["base_s0", "test_acc"])
    assert trials.loc["base_s0", "is_default"] and trials.loc["base_s0", "peak_lr"] == 0.001
    assert trials.loc["never_s0", "status"] == "missing"  # expanded but never ran
    assert trials.loc["auto_s0", "device_hours"] == 0.02  # from the summary
    assert trials.loc["base_s0", "device_hours"] == pytest.approx(360.0 * 2 * 1.0 / 3600)  # 2 CPU workers x wall
    assert trials.loc["base_s0", "error"] == "worker died"
    for column in ("batch_size", "seed", "epochs", "optimizer", "num_workers", "device_hours", "wall_seconds",
                   "best_val_acc", "final_val_acc", "decay_start_lr", "switch_epoch"):
        assert column in trials.columns, column


def test_replayed_steps_keep_the_last_row(run_dir):
    tables.collect(run_dir)
    curves = tables.load(run_dir, "curves")
    auto = curves[curves.trial_id == "auto_s0"]
    assert auto["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert auto["train_loss"].tolist() == [2.3, 2.2, 2.05, 1.95, 1.5, 1.4]
    assert list(curves.columns) == ["trial_id", "step", "lr", "train_loss"]
    assert len(curves[curves.trial_id == "base_s0"]) == 2
    epochs = tables.load(run_dir, "epochs")
    assert epochs[epochs.trial_id == "auto_s0"]["val_acc"].tolist() == [0.55, 0.7]


def test_tests_and_events_tables(run_dir):
    tables.collect(run_dir)
    tests = tables.load(run_dir, "tests")
    (row,) = tests.to_dict("records")
    assert row["trial_id"] == "auto_s0" and row["decision"] == "switch" and row["start_lr"] == 0.001
    assert list(row["p"]) == [0.96, 0.99] and list(row["votes"]) == [True, True]
    events = tables.load(run_dir, "events")
    assert events[["trial_id", "name", "step"]].values.tolist() == [["auto_s0", "rollback", 4]]
    assert json.loads(events["info"][0]) == {"to_step": 2}


def test_an_empty_run_gives_empty_tables_with_columns(tmp_path):
    tables.write_specs(tmp_path, specs()[:1])
    tables.collect(tmp_path)
    assert tables.load(tmp_path, "curves").columns.tolist() == ["trial_id", "step", "lr", "train_loss"]
    assert tables.load(tmp_path, "tests").empty
    assert tables.load(tmp_path, "trials")["status"].tolist() == ["missing"]


def test_load_names_the_fix_when_not_collected(tmp_path):
    with pytest.raises(FileNotFoundError, match="collect"):
        tables.load(tmp_path, "trials")
    with pytest.raises(ValueError, match="curves"):
        tables.load(tmp_path, "curve")


def test_specs_round_trip(tmp_path):
    path = tables.write_specs(tmp_path, specs())
    assert path == tmp_path / tables.SPECS_FILE
    assert tables.read_specs(tmp_path) == specs()
    assert json.loads(path.read_text()) == [spec.to_dict() for spec in specs()]
    assert [p.name for p in tmp_path.iterdir()] == [tables.SPECS_FILE]  # no temp file left


def test_fragment_writer_numbers_on_across_kinds_and_resumes(tmp_path):
    writer = tables.FragmentWriter(tmp_path / "t_s0")
    writer.add("curves", {"trial_id": "t_s0", "step": 1, "lr": 0.1, "train_loss": 2.0})
    writer.add("events", {"trial_id": "t_s0", "name": "rollback", "step": 1, "info": "{}"})
    first = writer.flush()
    assert [p.name for p in first] == ["curves-000001.parquet", "events-000002.parquet"]
    assert writer.flush() == []  # nothing buffered: no empty fragment
    resumed = tables.FragmentWriter(tmp_path / "t_s0")
    resumed.add("epochs", {"trial_id": "t_s0", "epoch": 0, "step": 1, "val_acc": 0.5})
    assert [p.name for p in resumed.flush()] == ["epochs-000003.parquet"]
    assert sorted(p.name for p in TrialFolder(tmp_path / "t_s0").fragments.iterdir()) == [
        "curves-000001.parquet", "epochs-000003.parquet", "events-000002.parquet"]
    assert pd.read_parquet(first[0]).to_dict("list") == {"trial_id": ["t_s0"], "step": [1], "lr": [0.1],
                                                         "train_loss": [2.0]}
    with pytest.raises(ValueError, match="curves"):
        resumed.add("curve", {})


def test_fragment_rows_with_different_keys_share_one_table_and_plain_values():
    import numpy as np

    row = tables.plain({"step": np.int64(3), "p": (np.float32(0.5), 0.25), "votes": np.array([True, False])})
    assert row == {"step": 3, "p": [0.5, 0.25], "votes": [True, False]} and type(row["step"]) is int
    table = tables._table([{"step": 1}, {"step": 2, "start_lr": 0.1}])
    assert table.to_pylist() == [{"step": 1, "start_lr": None}, {"step": 2, "start_lr": 0.1}]
