"""``run_suite.py --resume`` after the whole suite was SIGKILLed, and SIGINT / SIGTERM, through real
processes: run_suite.py, its local Ray, its local MLflow server.

A three-trial suite (one AutoWU trial, a 2-point baseline grid; one trial at a time) runs three ways:
uninterrupted; SIGKILLed (run_suite.py and every process under it) once the first trial has ended and
the second has a checkpoint, then resumed with ``--resume``; interrupted by SIGINT or SIGTERM. The
resumed run must keep the ended trial as it was, continue the interrupted one from its checkpoint,
reuse the MLflow runs (one parent, one child per trial, each step once) and end with the uninterrupted
run's table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from autowu_bench.platform.execution import processes
from tests.ray_fixtures import e2e_data, e2e_suite

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

EPOCHS, STEPS_PER_EPOCH = 10, 5


def _suite_file(folder: Path, data_root: Path) -> Path:
    path = folder / "suite.yaml"
    path.write_text(e2e_suite("resume-test", data_root, epochs=EPOCHS, autowu="{test_interval: 2, lr_max: 0.2}",
                              peak_lrs="[0.05, 0.1]",
                              resources="{workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1, "
                                        "use_gpu: false}"))
    return path


def _run_suite(args: list[str], cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "run_suite.py"), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _run_dir(results: Path) -> Path:
    (run_dir,) = (results / "resume-test").iterdir()
    return run_dir


def _trial_ids(run_dir: Path) -> list[str]:
    return [spec["trial_id"] for spec in json.loads((run_dir / "trial_specs.json").read_text())]


def _summary(run_dir: Path, trial_id: str) -> dict | None:
    path = run_dir / "trials" / trial_id / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _has_checkpoint(run_dir: Path, trial_id: str) -> bool:
    """Ray Train has registered a checkpoint of the trial (its run snapshot lists it): a checkpoint it
    has stored but not yet registered (it registers at its next poll of the workers) is not resumed."""
    return (run_dir / "ray" / "train" / trial_id / "checkpoint_manager_snapshot.json").is_file()


def _table(run_dir: Path) -> pd.DataFrame:
    from autowu_bench.dashboards.table import head_to_head
    from autowu_bench.platform.records import tables

    # device-h is wall time: the one column that differs between two runs of the same trials.
    return head_to_head(tables.load(run_dir, "trials")).drop(columns=["device_hours"])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return e2e_data(tmp_path_factory)


def run_to_end(work: Path, suite_file: Path, name: str) -> Path:
    """Run the suite in ``work`` uninterrupted; its run folder."""
    code, out, err = _finish(_run_suite(["--suite", str(suite_file), "--results", "runs"], work))
    assert code == 0, f"{out[-3000:]}\n{err[-3000:]}"
    (run_dir,) = (work / "runs" / name).iterdir()
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root) -> Path:
    work = tmp_path_factory.mktemp("uninterrupted")
    return run_to_end(work, _suite_file(work, data_root), "resume-test")


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data_root, uninterrupted):
    """(run folder, work folder, the first trial's summary before the resume, the resume's stdout)."""
    work = tmp_path_factory.mktemp("killed")
    proc = _run_suite(["--suite", str(_suite_file(work, data_root)), "--results", "runs"], work)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        runs = list((work / "runs" / "resume-test").glob("*"))
        if runs and (runs[0] / "trial_specs.json").is_file():
            first, second, _ = _trial_ids(runs[0])
            if _summary(runs[0], first) and _has_checkpoint(runs[0], second):
                break
        assert proc.poll() is None, f"the suite ended before it was killed: {proc.communicate()}"
        time.sleep(0.05)
    else:
        pytest.fail("the second trial never wrote a checkpoint")
    # The whole suite dies at once, as on a lost node: run_suite.py and everything under it.
    processes.kill_now(processes.descendants([proc.pid]))
    proc.communicate(timeout=60)
    run_dir = _run_dir(work / "runs")
    first, second, third = _trial_ids(run_dir)
    assert _summary(run_dir, second) is None, "the kill came after the second trial ended: nothing to resume"
    before = (run_dir / "trials" / first / "summary.json").read_bytes()
    code, out, err = _finish(_run_suite(["--resume", str(run_dir)], work))
    assert code == 0, f"{out[-3000:]}\n{err[-3000:]}"
    return run_dir, work, before, out


def test_the_ended_trial_is_kept_and_the_others_ran(resumed):
    run_dir, _, before, out = resumed
    first, second, third = _trial_ids(run_dir)
    assert (run_dir / "trials" / first / "summary.json").read_bytes() == before
    assert (run_dir / "trials" / first / "attempts").read_text() == "1"  # never started again
    assert f"1 of 3 trials ended before, 2 to run: {[second, third]!r}" in out
    for trial_id in (first, second, third):
        summary = _summary(run_dir, trial_id)
        assert summary["status"] == "finished" and summary["epochs_done"] == EPOCHS, summary
        assert summary["restarts"] == 0  # a resume is not a failure


def test_the_interrupted_trial_continued_from_its_checkpoint(resumed, uninterrupted):
    run_dir, _, _, _ = resumed
    _, second, _ = _trial_ids(run_dir)
    events = pq.read_table(run_dir / "events.parquet").to_pandas()
    (resume,) = events[(events.trial_id == second) & (events.name == "resume")].itertuples()
    assert resume.step > 0 and resume.step % STEPS_PER_EPOCH == 0  # from an epoch-end checkpoint, not step 0
    for trial_id in _trial_ids(run_dir):
        trace = pq.read_table(run_dir / "trials" / trial_id / "lr_rank0.parquet").to_pydict()
        assert trace == pq.read_table(uninterrupted / "trials" / trial_id / "lr_rank0.parquet").to_pydict()
        curves = pq.read_table(run_dir / "curves.parquet").to_pandas()
        assert curves[curves.trial_id == trial_id].step.tolist() == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))


def test_the_table_is_the_uninterrupted_runs(resumed, uninterrupted):
    run_dir, _, _, _ = resumed
    pd.testing.assert_frame_equal(_table(run_dir), _table(uninterrupted))


def test_mlflow_holds_one_parent_one_child_per_trial_each_step_once(resumed, uninterrupted):
    from mlflow import MlflowClient

    run_dir, work, _, _ = resumed
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "resume-test"]
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "suite"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert json.loads((run_dir / "run.json").read_text())["parent_run_id"] == parents[0].info.run_id
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(_trial_ids(run_dir))
    steps = list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    reference = MlflowClient(tracking_uri=f"sqlite:///{uninterrupted.parents[2] / 'mlflow.db'}")
    reference_runs = {r.data.tags["trial_id"]: r for r in reference.search_runs(
        [reference.get_experiment_by_name("resume-test").experiment_id]) if "mlflow.parentRunId" in r.data.tags}
    for child in children:
        assert child.info.status == "FINISHED"
        for key in ("lr", "train_loss"):
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == steps, (child.data.tags["trial_id"], key)
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")] == [
            e * STEPS_PER_EPOCH for e in range(1, EPOCHS + 1)]
        assert child.data.params == reference_runs[child.data.tags["trial_id"]].data.params


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
                         ids=["SIGINT", "SIGTERM", "SIGINT twice"])
def test_a_signal_stops_the_suite_within_seconds_and_it_can_be_resumed(tmp_path, data_root, signals):
    """One signal: the trials stop, the tables are written, the MLflow runs end KILLED, exit 130. A second
    one during that clean-up stops at once (the runs stay RUNNING). Either way the folder resumes."""
    from mlflow import MlflowClient

    proc = _run_suite(["--suite", str(_suite_file(tmp_path, data_root)), "--results", "runs", "--only", "autowu"],
                      tmp_path)
    deadline = time.monotonic() + 600
    run_dir = None
    while time.monotonic() < deadline and run_dir is None:
        runs = list((tmp_path / "runs" / "resume-test").glob("*"))
        if runs and (runs[0] / "trial_specs.json").is_file() and _has_checkpoint(runs[0], _trial_ids(runs[0])[0]):
            run_dir = runs[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert run_dir is not None, "the trial never wrote a checkpoint"
    below = {p for p in processes.descendants([proc.pid]) if p[0] != proc.pid}  # Ray's, the MLflow server's
    sent = time.monotonic()
    for sig in signals:
        os.kill(proc.pid, sig)
        time.sleep(0.2)
    # A suite that does not stop is a hang (TimeoutExpired), not a slow stop: tests assert no times.
    code, out, err = _finish(proc, timeout=300)
    assert code == 130, f"{out[-2000:]}\n{err[-2000:]}"
    while processes.alive(below) and time.monotonic() < sent + 300:  # the MLflow watchdog's grace
        time.sleep(0.2)
    assert below and not processes.alive(below)
    assert f"resume with: python run_suite.py --resume {run_dir}" in out + err
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("resume-test").experiment_id])
    statuses = {r.info.status for r in runs}
    if len(signals) == 1:
        assert (run_dir / "table.txt").is_file() and (run_dir / "report" / "index.html").is_file()
        assert len(runs) == 2 and statuses == {"KILLED"}, [(r.info.run_name, r.info.status) for r in runs]
    else:
        assert statuses == {"RUNNING"}
    code, out, err = _finish(_run_suite(["--resume", str(run_dir)], tmp_path))
    assert code == 0, f"{out[-3000:]}\n{err[-3000:]}"
    (trial_id,) = _trial_ids(run_dir)
    assert _summary(run_dir, trial_id)["status"] == "finished"
    runs = client.search_runs([client.get_experiment_by_name("resume-test").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
