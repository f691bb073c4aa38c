"""A run's plan (autowu_bench.launch.plan) without Ray: a new run's folder and trial list, the same plan
read back for --resume, and a resume under Ray Jobs refused where Ray would delete what it writes."""

from __future__ import annotations

import pytest
from data_fixtures import write_fashion_mnist_idx

from autowu_bench.launch.plan import plan_new, plan_resume
from autowu_bench.platform.checks.environment import RAY_JOB_ENV
from autowu_bench.platform.records.run_record import RunRecord
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.expansion import expand
from autowu_bench.platform.suite.loader import load_suite


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    return str(write_fashion_mnist_idx(tmp_path_factory.mktemp("fmnist"), n_train=1500, n_test=100))


def _new_run(tmp_path, fmnist_root, name: str = "smoke", only: tuple[str, ...] = ()):
    suite = load_suite(name, sets=[f"data.root={fmnist_root}"], only=list(only), results=str(tmp_path / "runs"),
                       tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    return suite, plan_new(suite, address=None)


def test_a_new_plan_creates_the_run_folder_and_reads_back_for_resume(tmp_path, fmnist_root, capsys):
    suite, plan = _new_run(tmp_path, fmnist_root)
    assert plan.run_dir.parent == tmp_path / "runs" / "smoke" and plan.record is None
    assert plan.trials == expand(suite) and plan.fixed_trials == plan.trials and plan.jobs == []
    assert {p.name for p in plan.run_dir.iterdir()} == {"suite.yaml", "trial_specs.json"}
    assert capsys.readouterr().out.startswith("suite smoke: 6 trials")
    RunRecord("smoke", tracking_uri=suite.tracking_uri, parent_run_id="p").write(plan.run_dir)
    resumed = plan_resume(plan.run_dir, tracking_uri=None, address=None)
    assert resumed.trials == plan.trials and resumed.record.parent_run_id == "p"
    assert resumed.suite.tracking_uri == suite.tracking_uri


def test_a_plan_keeps_search_trials_apart_from_the_fixed_ones(tmp_path, fmnist_root):
    _, plan = _new_run(tmp_path, fmnist_root, "search-quick", only=("autowu-auto", "random"))
    (job,) = plan.jobs
    assert [t.arm for t in plan.trials] == ["autowu-auto"]  # a search's trials are Tune's to propose
    searched = job.planned()[0]  # one it proposed, as a resumed run reads it back from trial_specs.json
    with_search = type(plan)(plan.suite, plan.trials + [searched], plan.jobs, plan.run_dir)
    assert with_search.fixed_trials == plan.trials


def test_a_resume_under_ray_jobs_refuses_a_folder_or_store_ray_deletes(tmp_path, fmnist_root, monkeypatch):
    """`ray job submit` runs in its copy of --working-dir, deleted after the job: a resumed run folder
    there, or a suite's own MLflow store that a resume would start there, is refused before anything starts."""
    job_copy = tmp_path / "working_dir_files" / "_ray_pkg_0123"
    job_copy.mkdir(parents=True)
    monkeypatch.chdir(job_copy)
    suite = load_suite("smoke", sets=[f"data.root={fmnist_root}"], results=str(job_copy / "runs"))
    plan = plan_new(suite, address=None)  # not a job yet: ./runs and ./mlflow.db are the user's folder
    RunRecord("smoke", parent_run_id="p").write(plan.run_dir)  # its own server, whose store was not recorded
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    with pytest.raises(SuiteError) as info:
        plan_resume(plan.run_dir, tracking_uri=None, address=None)
    message = str(info.value)
    assert f"results '{plan.run_dir}': a Ray job's folder" in message
    assert f"its store in {job_copy}" in message and "--tracking-uri" in message
    # With the store recorded outside the copy, only the run folder is in the way.
    RunRecord("smoke", parent_run_id="p", mlflow_store=str(tmp_path / "store")).write(plan.run_dir)
    with pytest.raises(SuiteError) as info:
        plan_resume(plan.run_dir, tracking_uri=None, address=None)
    assert "results" in str(info.value) and "its store in" not in str(info.value)
