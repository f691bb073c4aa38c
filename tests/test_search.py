"""Search arms without training: the schema, the jobs a suite expands into, the searchers' proposals
(Ray Tune's own classes, driven as Tune drives them), the summary of a stopped trial, the table's
search rows against values computed by hand, and the public trainable's config."""

from __future__ import annotations

import json
import math
import pickle

import pandas as pd
import pytest
import yaml

from autowu_bench.dashboards import head_to_head
from autowu_bench.dashboards.report_data import search_curve
from autowu_bench.platform.suite.expansion import expand, search_jobs
from autowu_bench.platform.records.outcome import EpochReport, TrialStatus, device_hours
from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder
from autowu_bench.platform.execution.search import (
    SearchJob,
    param_space,
    searcher,
    stopped_outcome,
)
from autowu_bench.platform.tracking.spool import Spool
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.loader import load_suite, validate_suite
from autowu_bench.schedulers.autowu import AutoWUOptions
from autowu_bench.tune import spec_from_config

SPACE = {"peak_lr": {"low": 1e-3, "high": 1e-1, "log": True}, "warmup_epochs": {"low": 0, "high": 3}}


def suite(*arms, seeds=(0,)):
    return validate_suite({
        "name": "s", "workloads": ["fmnist-mlp"], "batch_sizes": [256], "epochs": 5, "seeds": list(seeds),
        "arms": list(arms), "resources": {"workers_per_trial": 1}, "data": {"train_subset": 1024, "val_size": 256},
    })


def search_arm(searcher="random", name="rs", **more):
    return {"name": name, "kind": "baseline", "search": {"searcher": searcher, "space": SPACE, "num_samples": 5,
                                                          **more}}


def problems(*arms) -> str:
    with pytest.raises(SuiteError) as info:
        suite(*arms)
    return str(info.value)


def test_schema_rejects_what_a_search_cannot_run():
    text = problems(
        {"name": "a", "kind": "baseline", "peak_lrs": [0.01], "search": {"searcher": "random", "space": SPACE,
                                                                         "num_samples": 2}},
        {"name": "b", "kind": "baseline", "search": {"searcher": "grid", "space": SPACE}},
        {"name": "c", "kind": "baseline", "search": {"searcher": "tpe", "space": SPACE}},
        {"name": "d", "kind": "baseline", "search": {"searcher": "random", "num_samples": 2,
                                                     "space": {"warmup_epochs": [1, 9], "momentum": [0.9]}}},
        {"name": "e", "kind": "autowu", "search": {"searcher": "random", "num_samples": 2,
                                                   "space": {"patience": [0, 2], "lr": [1]}}},
        {"name": "f", "kind": "baseline", "search": {"searcher": "random", "num_samples": 2,
                                                     "space": {"peak_lr": {"low": 0, "high": 1, "log": True}}}},
    )
    assert "arms[0]: ['peak_lrs'] describe a grid" in text
    assert "arms[1].search.space: the grid searcher needs a list for every key" in text
    assert "arms[2].search.num_samples: the tpe searcher needs num_samples" in text
    assert "arms[3].search.space.momentum" in text and "exactly one of peak_lr" in text
    text_fit = problems({"name": "g", "kind": "baseline", "search": {
        "searcher": "grid", "space": {"peak_lr": [0.01], "warmup_epochs": [1, 9]}}})
    assert "arms[0].search.space.warmup_epochs: warmup epochs up to 9 not below the 5 epochs" in text_fit
    assert "arms[4].search.space.lr: 'lr' is not an AutoWU option" in text
    assert "arms[4].search.space.patience: value 0" in text
    detector = problems({"name": "h", "kind": "autowu", "search": {"searcher": "grid", "space": {"detector": [1]}}})
    assert ("arms[0].search.space.detector: 'detector' is not an AutoWU option; searchable: "
            f"{list(AutoWUOptions.names())}") in detector  # the options' one list: not AutoWUCore's detector
    assert "a log range needs low > 0" in text
    late = problems(search_arm(scheduler={"kind": "asha", "grace_period": 6}))  # the suite has 5 epochs
    assert "arms[0].search.scheduler.grace_period: grace_period 6 is past the 5 epochs" in late


def test_a_resolved_search_suite_loads_again():
    from autowu_bench.platform.suite.loader import suite_to_yaml

    s = suite(search_arm(), {"name": "k", "kind": "autowu", "search": {"searcher": "grid", "space": {"patience": [2, 3]}}})
    again = validate_suite(yaml.safe_load(suite_to_yaml(s)))
    assert [j.name for j in search_jobs(again)] == [j.name for j in search_jobs(s)]
    assert "include_default" in problems(search_arm() | {"include_default": False})


def test_a_search_arm_is_one_job_per_batch_and_seed_and_no_fixed_trials():
    s = suite({"name": "a", "kind": "autowu"}, search_arm() | {"scaling": "linear"}, seeds=(0, 1))
    assert [t.trial_id for t in expand(s)] == ["a_fmnist-mlp_b256_s0", "a_fmnist-mlp_b256_s1"]
    jobs = search_jobs(s)
    assert [j.name for j in jobs] == ["rs_fmnist-mlp_b256_s0", "rs_fmnist-mlp_b256_s1"]
    assert [j.base.seed for j in jobs] == [0, 1] and jobs[0].base.search == "random"
    spec = jobs[1].spec({"peak_lr": 0.02, "warmup_epochs": 1.5}, "rs_fmnist-mlp_b256_s1_t004")
    assert (spec.trial_id, spec.peak_lr, spec.warmup_epochs, spec.seed, spec.kind) == (
        "rs_fmnist-mlp_b256_s1_t004", 0.02, 1.5, 1, "baseline")


def test_base_lr_is_scaled_and_autowu_knobs_merge_into_the_arm_options():
    s = suite({"name": "b", "kind": "baseline", "scaling": "sqrt", "base_batch": 64,
               "search": {"searcher": "grid", "space": {"base_lr": [0.001], "warmup_epochs": [0, 2]}}},
              {"name": "k", "kind": "autowu", "autowu": {"test_interval": "auto"},
               "search": {"searcher": "random", "num_samples": 3, "space": {"patience": [2, 3]}}})
    grid, knobs = search_jobs(s)
    assert grid.search.trials == 2
    assert grid.spec({"base_lr": 0.001, "warmup_epochs": 2}, "x").peak_lr == pytest.approx(0.002)  # sqrt(256/64)
    spec = knobs.spec({"patience": 3}, "y")
    assert spec.autowu == AutoWUOptions(test_interval="auto", patience=3) and spec.autowu_kwargs()["patience"] == 3
    assert knobs.base.autowu == AutoWUOptions(test_interval="auto")  # the arm's options, unchanged


def _noop(config):
    pass


def _proposals(job: SearchJob, n: int, score) -> list[dict]:
    """The job's searcher driven as Tune drives it: trials from ``next_trial``; when it has none to give
    (a TPE / HyperOpt batch is full), the live trials complete with ``score`` of their point."""
    from ray.tune.experiment import Experiment
    from ray.tune.search import Searcher, SearchGenerator

    alg = searcher(job, max_concurrent=2)
    gen = SearchGenerator(alg) if isinstance(alg, Searcher) else alg
    space = param_space(job)
    gen.set_search_properties("val_acc", "max", space)
    gen.add_configurations([Experiment("proposals", run=_noop, config=space, num_samples=n)])
    out, live = [], []
    while len(out) < n:
        trial = gen.next_trial()
        if trial is None:
            assert live, "the searcher proposed nothing with no trial running"
            for t in live:
                gen.on_trial_complete(t.trial_id, {"val_acc": score(t.config)})
            live = []
            continue
        out.append({k: trial.config[k] for k in job.search.space})
        live.append(trial)
    return out


@pytest.mark.parametrize("kind", ["random", "tpe", "hyperopt"])
def test_searchers_propose_points_inside_the_space_the_same_for_the_same_seed(kind):
    job = search_jobs(suite(search_arm(kind, initial_points=2) if kind != "random" else search_arm(kind)))[0]

    def score(cfg):  # a deterministic objective with an optimum inside the space
        return -abs(math.log10(cfg["peak_lr"]) + 2) - 0.1 * cfg["warmup_epochs"]

    first, again = _proposals(job, 6, score), _proposals(job, 6, score)
    assert len(first) == 6 and first == again
    for point in first:
        assert 1e-3 <= point["peak_lr"] <= 1e-1 and 0 <= point["warmup_epochs"] <= 3
    assert len({round(p["peak_lr"], 12) for p in first}) == 6
    other = search_jobs(suite(search_arm(kind, seed=7, **({"initial_points": 2} if kind != "random" else {}))))[0]
    assert _proposals(other, 6, score) != first


def test_a_stopped_trial_is_priced_for_what_it_ran(tmp_path):
    spec = search_jobs(suite(search_arm(scheduler={"kind": "asha", "grace_period": 1})))[0].spec(
        {"peak_lr": 0.01, "warmup_epochs": 1.0}, "rs_t002")
    folder = tmp_path / "rs_t002"
    folder.mkdir()
    (folder / "driver.json").write_text(json.dumps({"started": 1000.0, "fit_started": 1003.0}))
    Spool.of(folder).set_run_id("r1")  # the trial's child run, as its driver's open_trial left it
    # Tune's last result: the workers' report plus Tune's own keys (not the report's, ignored)
    last = {"epoch": 2, "step": 16, "val_acc": 0.61, "best_val_acc": 0.63, "status": "running",
            "worker_created_at": 1005.0, "training_started_at": 1007.0, "training_iteration": 2,
            "time_this_iter_s": 4.2}
    outcome = stopped_outcome(spec, EpochReport.from_metrics(last), TrialFolder(folder), now=1090.0)
    assert outcome.status is TrialStatus.STOPPED and outcome.epochs_done == 2 and outcome.steps == 16
    assert outcome.test_acc is None and outcome.best_val_acc == 0.63 and outcome.mlflow_run_id == "r1"
    assert outcome.wall_seconds == 90.0 and outcome.device_hours == device_hours(spec, 90.0) > 0
    # A trial that Tune ended at its final report keeps that report's status.
    assert stopped_outcome(spec, EpochReport.from_metrics({**last, "status": "finished", "test_acc": 0.7}),
                           TrialFolder(folder), 1090.0).status is TrialStatus.FINISHED
    # One that Tune ended before its first report ran nothing to count.
    assert stopped_outcome(spec, EpochReport.from_metrics({"training_iteration": 0}), TrialFolder(folder), 1090.0).epochs_done == 0


def trial(arm, n, seed, status, val, test, hours, lr=0.01, wu=1.0, ended=0.0, search="random+asha"):
    return {"trial_id": f"{arm}_s{seed}_t{n:03d}", "workload": "fmnist-mlp", "batch_size": 256, "arm": arm,
                "kind": "baseline", "search": search, "seed": seed, "peak_lr": lr, "warmup_epochs": wu, "is_default": False,
                "decay": None, "test_interval": None, "autowu": "{}", "status": status, "final_val_acc": val, "test_acc": test,
                "device_hours": hours, "ended_at": ended, "switch_epoch": None, "switch_reason": None, "decay_start_lr": None}


def test_search_rows_match_the_trial_rows_by_hand():
    rows = [trial("asha", 1, 0, "finished", 0.80, 0.79, 0.010, lr=0.02, ended=3),
            trial("asha", 2, 0, "stopped", None, None, 0.002, ended=1),
            trial("asha", 3, 0, "finished", 0.84, 0.82, 0.011, lr=0.005, wu=2.0, ended=4),
            trial("asha", 4, 0, "failed", None, None, 0.001, ended=2),
            trial("asha", 1, 1, "finished", 0.86, 0.85, 0.012, ended=5),
            trial("asha", 2, 1, "stopped", None, None, 0.003, ended=6),
            trial("asha", 3, 1, "diverged", 0.20, 0.21, 0.004, ended=7)]
    table = head_to_head(pd.DataFrame(rows))
    (row,) = table.to_dict("records")
    assert row["row"] == "asha best" and row["search"] == "random+asha"
    # winners: seed 0 -> t003 (val 0.84), seed 1 -> t001 (val 0.86)
    assert row["test_acc_mean"] == pytest.approx((0.82 + 0.85) / 2)
    assert row["test_acc_std"] == pytest.approx(pd.Series([0.82, 0.85]).std())
    assert row["val_acc_mean"] == pytest.approx((0.84 + 0.86) / 2)
    assert row["device_hours"] == pytest.approx(0.010 + 0.002 + 0.011 + 0.001 + 0.012 + 0.003 + 0.004)
    assert (row["search_trials"], row["search_completed"], row["search_stopped"]) == (7, 4, 2)
    assert (row["seeds"], row["trials"]) == (2, 2)
    assert row["setting"].startswith("lr 0.005, wu 2 (random+asha: 7 trials, 4 completed, 2 stopped early; seed 0")
    curve = search_curve(pd.DataFrame(rows))  # seed 0 in end order: t002, t004, t001, t003
    assert curve["trial_id"].tolist() == ["asha_s0_t002", "asha_s0_t004", "asha_s0_t001", "asha_s0_t003"]
    assert curve["device_hours"].tolist() == pytest.approx([0.002, 0.003, 0.013, 0.024])
    assert curve["best_test_acc"].tolist()[2:] == [0.79, 0.82] and curve["best_test_acc"].isna().tolist()[:2] == [True] * 2


def test_packaged_search_quick_suite_is_valid():
    s = load_suite("search-quick")
    jobs = search_jobs(s)
    assert {j.search.label for j in jobs} == {"random", "tpe", "random+asha"}
    assert {j.search.trials for j in jobs} == {6} and len(expand(s)) == 7  # AutoWU + the 3 x 2 grid
    assert all(j.base.kind == "baseline" for j in jobs)


def test_packaged_search_knobs_suite_searches_autowus_options_beside_the_grid():
    s = load_suite("search-knobs")
    (job,) = search_jobs(s)
    assert job.base.kind == "autowu" and job.search.trials == 6
    assert set(job.search.space) == {"max_warmup_fraction", "patience", "confidence", "test_interval"}
    fixed = expand(s)
    assert len(fixed) == 7 and sum(t.kind == "baseline" for t in fixed) == 6  # the grid: the baseline's spread


@pytest.mark.parametrize("name", ["paper-cifar10", "paper-cifar100", "paper-imagenet", "paper-imagenet-models"])
def test_the_paper_suites_search_options_are_valid_when_uncommented(name):
    from autowu_bench.platform.suite.loader import find_suite

    lines = find_suite(name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "# search arms (options)" in line)
    end = next(i for i, line in enumerate(lines) if "# end of search arms" in line)
    block = [line.replace("# ", "", 1) for line in lines[start + 3:end]]
    raw = yaml.safe_load("\n".join(lines))
    raw["arms"] += yaml.safe_load("\n".join(block))
    labels = {j.search.label for j in search_jobs(validate_suite(raw))}
    assert labels == {"random", "tpe", "random+asha"}


def test_public_trainable_config():
    spec = spec_from_config({"batch_size": 1024, "peak_lr": 0.01, "epochs": 3}, "t1")
    assert (spec.kind, spec.peak_lr, spec.epochs, spec.workload, spec.trial_id) == ("baseline", 0.01, 3, "fmnist-mlp", "t1")
    auto = spec_from_config({"patience": 2, "decay": "const-cos", "num_workers": 2}, "t2")
    assert auto.kind == "autowu" and auto.autowu == AutoWUOptions(patience=2) and auto.num_workers == 2
    default = spec_from_config({"schedule": "baseline", "batch_size": 1024}, "t3")
    assert default.peak_lr > 0 and default.warmup_epochs is not None
    with pytest.raises(ValueError, match="unknown config keys"):
        spec_from_config({"peak_lrr": 0.1}, "t4")
    with pytest.raises(ValueError, match="takes no AutoWU options"):
        spec_from_config({"schedule": "baseline", "patience": 2}, "t5")
    # a baseline's decay, as a suite's baseline arm takes it
    poly = spec_from_config({"peak_lr": 0.01, "decay": "polynomial", "decay_power": 3}, "t6")
    assert (poly.kind, poly.decay, poly.decay_power) == ("baseline", "polynomial", 3.0)
    assert spec_from_config({"decay": "constant"}, "t7").decay == "constant"
    assert spec_from_config({"decay": "polynomial"}, "t8").decay_power == 2.0
    with pytest.raises(ValueError, match="decay_power is for decay 'polynomial'"):
        spec_from_config({"decay": "cosine", "decay_power": 2}, "t9")
    with pytest.raises(ValueError, match="must be one of"):
        spec_from_config({"schedule": "autowu", "decay": "polynomial"}, "t10")


class _FakeTrial:
    def __init__(self, n, config):
        self.trial_id, self.experiment_tag, self.config, self.last_result = f"id{n}", f"{n}_x", config, {}


def test_a_trial_that_dies_before_its_driver_writes_is_listed_and_failed(tmp_path):
    from autowu_bench.platform.records import tables
    from autowu_bench.platform.records.outcome import TrialOutcome
    from autowu_bench.launch.suite_run import RunTrials
    from autowu_bench.platform.execution.search import SearchCallback

    job = search_jobs(suite(search_arm("tpe")))[0]
    run_trials = RunTrials(tmp_path)  # the suite run's: it writes trial_specs.json as a trial starts
    callback = SearchCallback(job, run_dir=str(tmp_path), tracking_uri=None, known=run_trials.trials, on_new=run_trials.add)
    callback.on_trial_error(0, [], _FakeTrial(2, {"peak_lr": 0.01, "warmup_epochs": 1.0}))
    (spec,) = tables.read_specs(tmp_path)
    assert spec.trial_id == "rs_fmnist-mlp_b256_s0_t002" and spec.peak_lr == 0.01
    outcome = TrialFolder.of(tmp_path, spec.trial_id).summary()
    assert outcome.status is TrialStatus.FAILED and "died" in outcome.error
    # Tune keeps a copy of its callbacks: the callback and the suite run's list it appends to must pickle.
    assert pickle.loads(pickle.dumps(callback)).known == run_trials.trials == [spec]


@pytest.mark.parametrize("kind", ["random", "tpe"])
def test_the_progress_line_counts_the_points_not_yet_proposed(kind):
    """A search's progress line counts its whole budget from the start (pending until Tune proposes a
    point), and the trial Tune names is the planned one it replaces."""
    import io

    from autowu_bench.platform.execution.progress import ProgressReporter
    from autowu_bench.platform.execution.search import SearchCallback

    job = search_jobs(suite(search_arm(kind)))[0]
    callback = SearchCallback(job, run_dir="unused", tracking_uri=None, known=[], on_new=lambda spec: None)
    reporter = ProgressReporter(job.planned(), stream=io.StringIO(), live=False, spec_of=callback.spec_dict)
    assert reporter.line().startswith("trials 0/5 done, 0 running, 5 pending, 0 failed")
    first = _FakeTrial(0 if kind == "random" else 1, {"peak_lr": 0.01, "warmup_epochs": 1.0})  # Tune's first tag
    reporter.on_trial_start(0, [], first)
    reporter.on_trial_result(0, [], first, {"epoch": 5, "step": 40, "val_acc": 0.5, "status": "finished",
                                             "test_acc": 0.49})
    first.last_result = {"epoch": 5, "step": 40, "val_acc": 0.5, "status": "finished", "test_acc": 0.49}
    reporter.on_trial_complete(0, [], first)
    assert reporter.line().startswith("trials 1/5 done, 0 running, 4 pending, 0 failed")
    assert len(reporter.states) == 5


@pytest.mark.parametrize("driver_wrote_failure", [False, True])
@pytest.mark.parametrize("last_status, run_status, summary_status", [
    ("running", "KILLED", "stopped"),      # cut short at a rung
    ("finished", "FINISHED", "finished"),  # stopped at a rung on its last epoch, after its final report
])
def test_the_callback_records_a_trial_tune_stopped(tmp_path, last_status, run_status, summary_status,
                                                   driver_wrote_failure):
    """What SearchCallback writes when Tune ends a trial whose driver wrote no summary of a result: the summary
    from the last report and the end of its MLflow run, queued in the trial's spool (no MLflow needed here).
    A failure its driver wrote (the teardown of Tune's stop, seen from the trial) is replaced: Tune
    completed the trial, it did not fail."""
    from autowu_bench.platform.records.outcome import TrialOutcome
    from autowu_bench.platform.execution.search import SearchCallback

    job = search_jobs(suite(search_arm(scheduler={"kind": "asha", "grace_period": 1})))[0]
    callback = SearchCallback(job, run_dir=str(tmp_path), tracking_uri="http://127.0.0.1:9", known=[],
                      on_new=lambda spec: None)
    trial = _FakeTrial(0, {"peak_lr": 0.01, "warmup_epochs": 1.0})  # random: Tune's tag counts from 0
    folder = tmp_path / "trials" / "rs_fmnist-mlp_b256_s0_t001"
    folder.mkdir(parents=True)
    (folder / "driver.json").write_text(json.dumps({"started": 1.0}))
    Spool.of(folder).set_run_id("r7")
    trial.last_result = {"epoch": 5 if last_status == "finished" else 2, "step": 40, "val_acc": 0.6, "best_val_acc": 0.6,
                         "status": last_status, **({"test_acc": 0.58} if last_status == "finished" else {})}
    if driver_wrote_failure:
        TrialFolder(folder).end(TrialOutcome.from_report(
            callback.spec_of(trial), None, status=TrialStatus.FAILED, started=1.0, ended=2.0,
            error="ActorDiedError: ... its placement group was removed"), EndedBy.DRIVER)
    with pytest.warns(UserWarning, match="did not take"):  # nothing listens on port 9: it stays spooled
        callback.on_trial_complete(0, [], trial)
    outcome = TrialFolder(folder).summary()
    assert outcome.error is None and outcome.epochs_done == trial.last_result["epoch"]
    assert outcome.status == summary_status and outcome.mlflow_run_id == "r7"
    ops = [json.loads(line) for line in (folder / "mlflow-spool" / "ops.jsonl").read_text().splitlines()]
    assert ops[-1] == {"op": "status", "status": run_status}
    assert {"summary.status": summary_status}.items() <= {k: v for op in ops if op["op"] == "tags"
                                                          for k, v in op["t"].items()}.items()


def test_a_resumed_search_replays_a_trial_that_ended_from_its_records(tmp_path):
    from autowu_bench.platform.execution.search import recorded_reports
    from autowu_bench.platform.records import tables
    from autowu_bench.platform.records.outcome import TrialOutcome

    job = search_jobs(suite(search_arm()))[0]
    spec = job.spec({"peak_lr": 0.01, "warmup_epochs": 1.0}, job.trial_id(1))
    assert job.owns(spec) and not job.owns(expand(suite(search_arm(), {"name": "grid", "kind": "baseline",
                                                                         "peak_lrs": [0.01], "warmup_epochs": [1]}))[0])
    writer = tables.FragmentWriter(tmp_path / "trials" / spec.trial_id)
    for epoch, acc in ((1, 0.5), (2, 0.6), (2, 0.65), (3, 0.7)):  # epoch 2 twice: a restart replayed it
        writer.add("epochs", {"trial_id": spec.trial_id, "epoch": epoch, "step": 4 * epoch, "val_loss": 1 - acc,
                              "val_acc": acc})
    writer.flush()

    def outcome(status, epochs, **metrics):
        return TrialOutcome.from_report(spec, EpochReport(epoch=epochs, step=4 * epochs + 1, status=status, **metrics),
                                        status=status, started=0.0, ended=1.0)

    reports = recorded_reports(str(tmp_path), spec, outcome(TrialStatus.STOPPED, 3))
    assert [(r.epoch, r.step, r.val_acc, r.status) for r in reports] == [
        (1, 4, 0.5, "running"), (2, 8, 0.65, "running"), (3, 12, 0.7, "stopped")]
    # A diverged trial's last report (the blown-up model's evaluation, at the epoch it had reached) has no
    # epoch row: it is replayed from the outcome, as the searcher first saw it.
    diverged = recorded_reports(str(tmp_path), spec, outcome(TrialStatus.DIVERGED, 2, val_acc=0.1, val_loss=9.0))
    assert [(r.epoch, r.val_acc, r.status) for r in diverged] == [
        (1, 0.5, "running"), (2, 0.65, "running"), (2, 0.1, "diverged")]
    assert diverged[-1].step == 9


def test_a_resumed_search_that_proposes_another_point_under_a_recorded_id_stops(tmp_path):
    from autowu_bench.platform.execution.search import SearchCallback, SearchReplayError

    job = search_jobs(suite(search_arm("tpe")))[0]
    recorded = job.spec({"peak_lr": 0.01, "warmup_epochs": 1.0}, job.trial_id(2))
    specs = [recorded]  # the run being resumed: trial_specs.json
    callback = SearchCallback(job, run_dir=str(tmp_path), tracking_uri=None, known=specs, on_new=specs.append)
    callback.on_trial_start(0, [], _FakeTrial(2, {"peak_lr": 0.01, "warmup_epochs": 1.0}))  # the same point: fine
    assert specs == [recorded]
    third = job.spec({"peak_lr": 0.05, "warmup_epochs": 1.0}, job.trial_id(3))
    specs.append(third)
    with pytest.raises(SearchReplayError, match=r"t003: the searcher proposed another point .*peak_lr 0.05, warmup "
                                                r"1.0, autowu \{\} then; peak_lr 0.02"):
        callback.on_trial_start(0, [], _FakeTrial(3, {"peak_lr": 0.02, "warmup_epochs": 1.0}))
    assert specs == [recorded, third]  # the record keeps the point it ran


@pytest.fixture
def failed_trial(tmp_path):
    """A TPE job's trial ``t002`` that reported two epochs, then failed: its spec, folder and summary."""
    from autowu_bench.platform.records import tables
    from autowu_bench.platform.records.outcome import TrialOutcome

    job = search_jobs(suite(search_arm("tpe")))[0]
    spec = job.spec({"peak_lr": 0.01, "warmup_epochs": 1.0}, job.trial_id(2))
    folder = tmp_path / "trials" / spec.trial_id
    writer = tables.FragmentWriter(folder)
    for epoch, acc in ((1, 0.5), (2, 0.6)):
        writer.add("epochs", {"trial_id": spec.trial_id, "epoch": epoch, "step": 4 * epoch, "val_loss": 1 - acc,
                              "val_acc": acc})
    writer.flush()
    (folder / "driver.json").write_text(json.dumps({"started": 10.0}))
    # What the driver writes when the training raises: no metrics (fit never returned), the error.
    TrialFolder(folder).end(TrialOutcome.from_report(
        spec, None, status=TrialStatus.FAILED, started=10.0, ended=20.0,
        error="RuntimeError: CUDA error: an illegal memory access"), EndedBy.DRIVER)
    return job, spec, folder


@pytest.fixture
def replay(monkeypatch, failed_trial, tmp_path):
    """``run_search_trial`` of the failed trial's point as Tune calls it, and what it did: the reports it made
    to Tune and the trials it trained."""
    import ray.tune

    from autowu_bench.platform.execution import search

    job, spec, _ = failed_trial
    reports, trained = [], []
    monkeypatch.setattr(ray.tune, "get_context", lambda: type("Ctx", (), {"get_trial_name": lambda self: spec.trial_id})())
    monkeypatch.setattr(ray.tune, "report", reports.append)
    monkeypatch.setattr(search, "run_trial", lambda config, **kw: trained.append(config["spec"]["trial_id"]))

    def run() -> None:
        search.run_search_trial({"peak_lr": spec.peak_lr, "warmup_epochs": spec.warmup_epochs}, job=job,
                                run_dir=str(tmp_path), tracking_uri=None, parent_run_id=None)

    return run, reports, trained


def test_a_resumed_search_replays_a_trial_that_failed_as_failed_not_trained_again(failed_trial, replay):
    """A trial that failed with its own error: Tune sees what it reported, then the error again (TPE learns a
    failed trial, as it did the first time), and its summary stays the first run's."""
    from autowu_bench.platform.execution.search import RecordedFailure

    _, _, folder = failed_trial
    run, reports, trained = replay
    summary = (folder / "summary.json").read_bytes()
    with pytest.raises(RecordedFailure, match=r"t002 failed in the run being resumed .*: RuntimeError: CUDA error"):
        run()
    # its epochs, and no final report: it made none
    assert [(r["epoch"], r["val_acc"], r["status"]) for r in reports] == [(1, 0.5, "running"), (2, 0.6, "running")]
    assert trained == [] and (folder / "summary.json").read_bytes() == summary


def test_a_resumed_search_continues_a_trial_that_the_suites_stop_interrupted(failed_trial, replay):
    from autowu_bench.platform.records.outcome import TrialOutcome

    _, spec, folder = failed_trial
    run, reports, trained = replay
    TrialFolder(folder).end(TrialOutcome.from_report(spec, None, status=TrialStatus.FAILED, started=10.0, ended=20.0,
                             error="SIGTERM stopped the suite (RayActorError: ...); --resume runs the trial again",
                             interrupted=True), EndedBy.DRIVER)
    run()
    assert (reports, trained) == ([], [spec.trial_id])


def test_a_trial_that_dies_after_an_earlier_runs_interruption_is_summarised_as_failed(tmp_path, failed_trial):
    """A trial interrupted in the run being resumed (its summary says so), whose process then dies in the resumed
    run before its driver writes a summary: summarised as failed (a later resume replays it as failed), while a
    summary its driver wrote in this run stays."""
    from autowu_bench.platform.records.outcome import TrialOutcome
    from autowu_bench.platform.execution.search import SearchCallback

    job, spec, folder = failed_trial
    written = (folder / "summary.json").read_bytes()  # by this run's driver: it started at 10.0, before its end
    callback = SearchCallback(job, run_dir=str(tmp_path), tracking_uri=None, known=[spec], on_new=lambda spec: None)
    trial = _FakeTrial(2, {"peak_lr": spec.peak_lr, "warmup_epochs": spec.warmup_epochs})
    callback.on_trial_error(0, [], trial)
    assert (folder / "summary.json").read_bytes() == written
    (folder / "driver.json").write_text(json.dumps({"started": 30.0}))  # the resumed run's driver, after that end
    TrialFolder(folder).end(TrialOutcome.from_report(spec, None, status=TrialStatus.FAILED, started=10.0, ended=20.0,
                             error="SIGTERM stopped the suite (...)", interrupted=True), EndedBy.DRIVER)
    callback.on_trial_error(0, [], trial)
    outcome = TrialFolder(folder).summary()
    assert outcome.failed_by_error and "died" in outcome.error and outcome.ended_at > 30.0


def test_the_callback_keeps_the_summary_of_a_trial_its_driver_saw_to_the_end(tmp_path):
    from autowu_bench.platform.execution.search import SearchCallback
    from autowu_bench.platform.records.outcome import TrialOutcome

    job = search_jobs(suite(search_arm(scheduler={"kind": "asha", "grace_period": 1})))[0]
    callback = SearchCallback(job, run_dir=str(tmp_path), tracking_uri=None, known=[], on_new=lambda spec: None)
    trial = _FakeTrial(0, {"peak_lr": 0.01, "warmup_epochs": 1.0})
    folder = tmp_path / "trials" / "rs_fmnist-mlp_b256_s0_t001"
    folder.mkdir(parents=True)
    trial.last_result = {"epoch": 4, "step": 32, "val_acc": 0.6, "status": "running"}  # Tune's view lags
    final = EpochReport(epoch=5, step=40, status=TrialStatus.FINISHED, val_acc=0.7, test_acc=0.69)
    TrialFolder(folder).end(TrialOutcome.from_report(callback.spec_of(trial), final, status=TrialStatus.FINISHED,
                                                     started=1.0, ended=9.0), EndedBy.DRIVER)
    callback.on_trial_complete(0, [], trial)
    kept = TrialFolder(folder).summary()
    assert kept.status is TrialStatus.FINISHED and (kept.epochs_done, kept.test_acc) == (5, 0.69)
