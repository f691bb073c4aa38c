"""``run_suite.py --resume`` of a run with a search arm (TPE over the peak LR and the warmup), through real
processes: the suite is SIGKILLed (it and every process under it, as a lost machine would) once the
search's second trial has a checkpoint, then resumed. The searcher runs again with its seed; the trial
that ended is replayed to it from its records, not trained again; the interrupted one continues from its
checkpoint; TPE, having learned the same results, proposes the points it proposed in an uninterrupted run,
and the resumed run ends with that run's trials and table.

And a search with a trial that fails by design (a point AutoWU refuses), run to its end and resumed: the
failed trial is replayed as failed, not trained again; TPE, seeing it fail again, proposes the same points
after it, and the resumed run exits as the first did (3: trials failed).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from mlflow import MlflowClient

from autowu_bench.platform.execution import processes
from tests.test_resume import (  # noqa: F401  (data_root: the same generated Fashion-MNIST fixture)
    _finish,
    _has_checkpoint,
    _run_suite,
    _summary,
    _table,
    data_root,
    run_to_end,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SUITE = """
name: resume-search
workloads: [fmnist-mlp]
batch_sizes: [200]
epochs: 4
seeds: [0]
arms:
  - name: tpe
    kind: baseline
    optimizer: sgd
    search:
      searcher: tpe
      space:
        peak_lr: {{low: 0.01, high: 0.3, log: true}}
        warmup_epochs: {{low: 0, high: 2}}
      num_samples: 4
      initial_points: 2
      max_concurrent: 1
      seed: 3
resources: {{workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1, use_gpu: false}}
data: {{root: {root}, train_subset: 1000, val_size: 200}}
"""
JOB = "tpe_fmnist-mlp_b200_s0"


def _suite(work: Path, data_root: Path) -> Path:
    path = work / "suite.yaml"
    path.write_text(SUITE.format(root=data_root))
    return path


def _specs(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "trial_specs.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root) -> Path:
    work = tmp_path_factory.mktemp("uninterrupted")
    return run_to_end(work, _suite(work, data_root), "resume-search")


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data_root):
    work = tmp_path_factory.mktemp("killed")
    proc = _run_suite(["--suite", str(_suite(work, data_root)), "--results", "runs"], work)
    first, second = f"{JOB}_t001", f"{JOB}_t002"
    deadline, run_dir = time.monotonic() + 900, None
    while time.monotonic() < deadline and run_dir is None:
        runs = list((work / "runs" / "resume-search").glob("*"))
        if runs and (_summary(runs[0], first) or {}).get("status") == "finished" and _has_checkpoint(runs[0], second):
            run_dir = runs[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert run_dir is not None, "the search's second trial never wrote a checkpoint"
    processes.kill_now(processes.descendants([proc.pid]))
    proc.communicate(timeout=60)
    ended_before = _summary(run_dir, first)
    trace_before = os.stat(run_dir / "trials" / first / "lr_rank0.parquet").st_mtime_ns
    code, out, err = _finish(_run_suite(["--resume", str(run_dir)], work))
    assert code == 0, f"{out[-3000:]}\n{err[-3000:]}"
    return run_dir, out, ended_before, trace_before


def test_the_resumed_search_proposed_the_uninterrupted_runs_points(resumed, uninterrupted):
    run_dir, out, _, _ = resumed
    assert "the searches ['tpe_fmnist-mlp_b200_s0'] run again" in out
    assert _specs(run_dir) == _specs(uninterrupted)  # the same ids with the same points, TPE's learned ones too
    assert len(_specs(run_dir)) == 4


def test_the_trial_that_ended_was_replayed_not_trained_again(resumed):
    run_dir, _, ended_before, trace_before = resumed
    first = f"{JOB}_t001"
    assert _summary(run_dir, first) == ended_before
    assert os.stat(run_dir / "trials" / first / "lr_rank0.parquet").st_mtime_ns == trace_before


def test_the_interrupted_trial_continued_from_its_checkpoint_and_the_table_is_the_uninterrupted_runs(
        resumed, uninterrupted):
    run_dir, _, _, _ = resumed
    events = pd.read_parquet(run_dir / "events.parquet")
    second = events[(events.trial_id == f"{JOB}_t002") & (events.name == "resume")]
    assert len(second) == 1 and second.step.iloc[0] > 0
    for spec in _specs(run_dir):
        assert _summary(run_dir, spec["trial_id"])["status"] == "finished"
    pd.testing.assert_frame_equal(_table(run_dir), _table(uninterrupted))


# Each searched value is valid alone, but lr_min 0.15 with lr_max 0.1 is a point AutoWU refuses: that trial
# fails as its controller starts, whenever it runs. With seed 5 TPE proposes it second (its random start),
# the others are valid: the first trial finishes, the fourth is TPE's model's proposal, after the failure.
FAILING_SUITE = """
name: resume-failed
workloads: [fmnist-mlp]
batch_sizes: [200]
epochs: 3
seeds: [0]
arms:
  - name: tpe
    kind: autowu
    optimizer: sgd
    autowu: {{test_interval: 2}}
    search:
      searcher: tpe
      space: {{lr_min: [0.0001, 0.15], lr_max: [0.1, 0.3]}}
      num_samples: 4
      initial_points: 2
      max_concurrent: 1
      seed: 5
resources: {{workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1, use_gpu: false}}
data: {{root: {root}, train_subset: 1000, val_size: 200}}
"""
FAILING_JOB = "tpe_fmnist-mlp_b200_s0"


def _mlflow_runs(work: Path, run_dir: Path) -> dict[str, tuple]:
    """Each trial's MLflow child run: (status, end time, summary.status tag)."""
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = {}
    for spec in _specs(run_dir):
        run = client.get_run(_summary(run_dir, spec["trial_id"])["mlflow_run_id"])
        runs[spec["trial_id"]] = (run.info.status, run.info.end_time, run.data.tags.get("summary.status"))
    return runs


@pytest.fixture(scope="module")
def failed_then_resumed(tmp_path_factory, data_root):
    """(run folder, the first run's (exit status, specs, files, MLflow runs), the resume's the same; its stdout)."""
    work = tmp_path_factory.mktemp("failing")
    path = work / "suite.yaml"
    path.write_text(FAILING_SUITE.format(root=data_root))

    def state(code: int) -> tuple:
        # What a retrained trial would rewrite: its summary, its driver's start, its LR trace.
        files = {p.relative_to(run_dir): p.read_bytes() for pattern in ("*/summary.json", "*/driver.json")
                 for p in (run_dir / "trials").glob(pattern)}
        traces = {p.relative_to(run_dir): p.stat().st_mtime_ns for p in (run_dir / "trials").glob("*/lr_rank0.parquet")}
        return code, _specs(run_dir), files, traces, _mlflow_runs(work, run_dir)

    code, out, err = _finish(_run_suite(["--suite", str(path), "--results", "runs"], work))
    (run_dir,) = (work / "runs" / "resume-failed").iterdir()
    first = state(code)
    code, out, err = _finish(_run_suite(["--resume", str(run_dir)], work))
    assert code in (0, 3), f"{out[-3000:]}\n{err[-3000:]}"  # 2 would be the searcher proposing other points
    return run_dir, first, state(code), err


def test_the_failed_search_trial_is_replayed_as_failed_and_the_resume_exits_as_the_run_did(failed_then_resumed):
    run_dir, (code, specs, files, traces, runs), resumed, err = failed_then_resumed
    statuses = {s["trial_id"]: _summary(run_dir, s["trial_id"])["status"] for s in specs}
    failed = f"{FAILING_JOB}_t002"
    assert statuses == {f"{FAILING_JOB}_t{n:03d}": "failed" if n == 2 else "finished" for n in range(1, 5)}
    assert "must be a number > lr_min=0.15" in _summary(run_dir, failed)["error"]
    assert code == 3 and resumed[0] == 3 and f"1 of 4 trials did not finish: ['{failed}']" in err
    assert runs[failed][0] == "FAILED"
    # The same points, TPE's proposal after the failure too; nothing trained again: the same summaries,
    # driver starts and LR traces; the MLflow runs as the first run ended them.
    assert resumed[1:] == (specs, files, traces, runs)
