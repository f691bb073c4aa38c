"""A run's plan (autowu_bench.launch.plan) without Ray: a new run's folder and trial list, the same plan
read back for --resume, and a resume under Ray Jobs refused where Ray would delete what it writes."""

from __future__ import annotations

import pytest
from data_fixtures import write_fashion_mnist_idx

from autowu_bench.launch.plan import plan_new, plan_resume
from autowu_bench.platform.checks.environment import RAY_JOB_ENV
from autowu_bench.platform.records.run_manifest import RunManifest
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
    RunManifest("smoke", tracking_uri=suite.tracking_uri, parent_run_id="p").write(plan.run_dir)
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
    RunManifest("smoke", parent_run_id="p").write(plan.run_dir)  # its own server, whose store was not recorded
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    with pytest.raises(SuiteError) as info:
        plan_resume(plan.run_dir, tracking_uri=None, address=None)
    message = str(info.value)
    assert f"results '{plan.run_dir}': a Ray job's folder" in message
    assert f"its store in {job_copy}" in message and "--tracking-uri" in message
    # With the store recorded outside the copy, only the run folder is in the way.
    RunManifest("smoke", parent_run_id="p", mlflow_store=str(tmp_path / "store")).write(plan.run_dir)
    with pytest.raises(SuiteError) as info:
        plan_resume(plan.run_dir, tracking_uri=None, address=None)
    assert "results" in str(info.value) and "its store in" not in str(info.value)


def test_a_dry_run_estimates_the_cost_from_the_steps_and_a_stated_throughput(monkeypatch, capsys):
    """paper-cifar10 (228 trials x 200 epochs x 4 GPUs): device-hours and wall time, marked as an
    estimate, with the throughput it assumed and where that figure was measured."""
    from autowu_bench.launch import estimate
    from autowu_bench.platform.checks.autowu_density import planned_steps_per_epoch

    monkeypatch.setenv("AUTOWU_AUTOSCALING_CONFIG", "/nonexistent")  # not a cluster's head: cluster.yaml's limits
    suite = load_suite("paper-cifar10", sets=["data.root=/nonexistent"])
    assert plan_new(suite, address=None, dry_run=True) is None
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("estimate")]
    assert line.startswith("estimate, not a measurement: 228 trials, ") and "GPU-hours" in line
    assert "wall time at 2 trial(s) at once (8 GPUs, the cluster launcher file's limit)" in line
    assert "results/gpu-h200-2026-12-04/gpu_throughput.txt" in out and "NVIDIA H200" in out

    trials = expand(suite)
    # the numbers: every trial's images at the measured pace of its per-GPU batch, 4 GPUs each
    spec = next(t for t in trials if t.batch_size == 16384)  # 4096 per GPU: the measured 90,337 images/s
    images = planned_steps_per_epoch(spec) * 16384 * 200
    assert estimate.trial_seconds(spec) == pytest.approx(images / (4 * 90_337.0))
    hours = sum(estimate.trial_seconds(t) * 4 for t in trials) / 3600
    assert f"{hours:,.1f} GPU-hours" in line


def test_the_throughput_between_and_beyond_the_measured_batches():
    from autowu_bench.launch.estimate import Throughput, cost_lines

    gpu = Throughput("GPU", {512: 30_000.0, 4096: 90_000.0}, "test")
    assert gpu.at(4096) == 90_000.0 and gpu.at(16384) == 90_000.0  # the largest holds above
    assert gpu.at(512 * 2 ** 1.5) == pytest.approx(60_000.0)  # halfway on a log scale
    assert gpu.at(64) == pytest.approx(30_000.0 / 8)  # below: a step as long as at 512 (launch-bound)
    assert Throughput("CPU core", {512: 20_000.0}, "test").at(16) == 20_000.0
    spec = expand(load_suite("paper-imagenet"))[:1]
    assert cost_lines(spec, max_concurrent=None) == [
        "estimate: no measured throughput for imagenet-resnet50; their cost is not estimated "
        "(launch.estimate.THROUGHPUT holds the measured ones)"]
