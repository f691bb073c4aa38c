"""A suite submitted as a Ray job (`ray job submit`), end to end, to a Ray head with a dashboard that this
test starts on this machine: how a suite survives the submitting machine's SSH session (README: Running on
a cluster). The job's command runs in Ray's copy of --working-dir and joins the head with --address auto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.ray_fixtures import RAY, REPO, ray_head

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
# What the upload of --working-dir leaves out: environments, data and results (as cluster.yaml's rsync does).
EXCLUDES = [".venv", ".bundle", ".data", ".git", "results", "runs", "docs/images", "mlflow.db", "mlflow-artifacts",
            ".pytest_cache", ".hypothesis", ".ruff_cache"]


@pytest.fixture
def head(tmp_path):
    """A Ray head with the dashboard (Ray Jobs' server), started with the environment that cluster.yaml's
    head gets from its ~/.bashrc (the launcher starts Ray in a login shell); yields the dashboard's URL."""
    env = {"AUTOWU_RAY_ADDRESS": "auto", "AUTOWU_RESULTS": str(tmp_path / "runs"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    with ray_head(tmp_path / "ray-head.log", "--num-cpus=2", "--object-store-memory=150000000", env=env) as started:
        yield started.dashboard


def test_a_suite_submitted_as_a_ray_job_runs_to_its_end_and_leaves_its_results_outside_the_job(head, tmp_path):
    """The command is cluster.yaml's, without --address, --results or --tracking-uri: the job takes them from
    the head's environment (Ray's processes pass theirs on to a job's command), so a job submitted to the
    cluster joins it, writes to shared storage and logs to its MLflow server, as the README says."""
    results, store = tmp_path / "runs", tmp_path / "mlflow.db"
    entrypoint = f"{sys.executable} run_suite.py --suite smoke --set epochs=3 --only 32"
    proc = subprocess.run(
        [str(RAY), "job", "submit", "--address", head, "--working-dir", str(REPO),
         "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--", *entrypoint.split()],
        capture_output=True, text=True, timeout=1500, cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "succeeded" in out, out[-5000:]
    assert "Running entrypoint for job" in out and "smoke: test accuracy" in out  # the suite's table, streamed
    (run_dir,) = (results / "smoke").iterdir()
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 3 and (trials.status == "finished").all(), trials[["trial_id", "status", "error"]]
    assert (run_dir / "table.txt").is_file() and (run_dir / "report" / "index.html").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}  # the parent and 3 trials
