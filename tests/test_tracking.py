"""MLflow tracking against a real local server: runs, params, tags, batched metrics, statuses; the
server's watchdog (no orphans); the MLflow environment set where processes start, not at import."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient

from autowu_bench.platform.tracking.client import (
    close_open_children,
    grid_point,
    start_parent_run,
    start_trial_run,
    trial_tags,
)
from autowu_bench.platform.tracking.lifecycle import close_trial, open_trial
from autowu_bench.platform.tracking.env import MLFLOW_ENV, apply_process_env
from autowu_bench.platform.tracking.server import WATCHDOG_MODULE, LocalMlflowServer, watchdog_env
from autowu_bench.platform.tracking.watchdog import main as watchdog_main
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.records.trial_results import TrialResults
from autowu_bench.platform.tracking.trial_logger import TrialLogger
from autowu_bench.schedulers.switch_tests import Decision, SwitchTest

REPO = Path(__file__).resolve().parents[1]


def spec(trial_id: str = "autowu-auto_fmnist-mlp_b64_s0", **changes) -> TrialSpec:
    values = dict(trial_id=trial_id, suite="tracking-test", arm="autowu-auto", kind="autowu", workload="fmnist-mlp",
                  batch_size=64, epochs=3, seed=0, optimizer="adamp", weight_decay=0.01, decay="const-cos",
                  autowu={"test_interval": "auto"}, num_workers=2)
    values.update(changes)
    return TrialSpec(**values)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalMlflowServer(tmp_path_factory.mktemp("mlflow")) as srv:
        yield srv


@pytest.fixture(scope="module")
def parent(server, tmp_path_factory):
    suite_file = tmp_path_factory.mktemp("suite") / "tracking-test.yaml"
    suite_file.write_text("name: tracking-test\n")
    return start_parent_run(server.uri, "tracking-test", run_name="invocation", suite_file=suite_file,
                            resolved_suite="name: tracking-test\nepochs: 3\n", params={"trials": 2})


def test_server_stores_in_the_working_folder(server):
    assert server.uri.startswith("http://127.0.0.1:") and server.answers()
    assert server.db_path.is_file() and server.db_path.name == "mlflow.db"


def test_parent_run_has_provenance_and_the_suite_file(server, parent):
    client = MlflowClient(server.uri)
    run = client.get_run(parent)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "tracking-test"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens its runs
    tags = run.data.tags
    for key in ("git_commit", "python", "torch", "ray", "mlflow", "cuda", "driver_device"):
        assert tags[key], key
    assert run.data.params["trials"] == "2"
    files = {f.path for f in client.list_artifacts(parent, "suite")}
    assert files == {"suite/tracking-test.yaml", "suite/resolved.yaml"}


def test_child_run_is_nested_with_params_and_tags(server, parent):
    client = MlflowClient(server.uri)
    run_id = start_trial_run(server.uri, parent, spec())
    run = client.get_run(run_id)
    assert run.info.experiment_id == client.get_run(parent).info.experiment_id
    assert run.info.run_name == "autowu-auto_fmnist-mlp_b64_s0" and run.info.status == "RUNNING"
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent
    assert {k: tags[k] for k in ("arm", "kind", "decay", "optimizer", "workload", "batch_size", "seed")} == {
        "arm": "autowu-auto", "kind": "autowu", "decay": "const-cos", "optimizer": "adamp",
        "workload": "fmnist-mlp", "batch_size": "64", "seed": "0"}
    params = run.data.params
    assert params["autowu.test_interval"] == "auto" and params["num_workers"] == "2" and params["peak_lr"] == "None"
    assert len(params) == len(spec().to_dict())  # every TrialSpec field (autowu flattened, one key here)
    # a restarted trial gets its run back rather than a second one
    client.set_terminated(run_id, "FAILED")
    assert start_trial_run(server.uri, parent, spec()) == run_id
    assert client.get_run(run_id).info.status == "RUNNING"


def test_tags_group_the_trials_that_compete_for_the_ui(server, parent):
    """``group`` (workload and batch size) and ``arm`` are what the README's comparison groups by;
    a baseline's ``grid_point`` names it in charts; searchable with the UI's filter syntax."""
    client = MlflowClient(server.uri)
    autowu = start_trial_run(server.uri, parent, spec("autowu-auto_fmnist-mlp_b4096_s0", batch_size=4096))
    baseline = start_trial_run(server.uri, parent, spec(
        "baseline_fmnist-mlp_b4096_lr0.004_w2_s0", arm="baseline", kind="baseline", decay=None, autowu={},
        batch_size=4096, peak_lr=0.004, warmup_epochs=2.0))
    a, b = client.get_run(autowu).data.tags, client.get_run(baseline).data.tags
    assert (a["group"], a["kind"], a["arm"]) == ("fmnist-mlp b4096", "autowu", "autowu-auto")
    assert "grid_point" not in a
    assert (b["group"], b["kind"], b["arm"], b["grid_point"]) == ("fmnist-mlp b4096", "baseline", "baseline",
                                                                  "lr 0.004, wu 2")
    experiment = client.get_run(parent).info.experiment_id
    found = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and "
                                                           "tags.group = 'fmnist-mlp b4096'")
    assert {r.info.run_id for r in found} == {autowu, baseline}
    assert grid_point(spec(kind="baseline", peak_lr=3.5355e-4, warmup_epochs=0.5)) == "lr 0.0003536, wu 0.5"


def test_step_metrics_go_in_batches(server, parent, tmp_path, monkeypatch):
    run_id = start_trial_run(server.uri, parent, spec("baseline_b64_s0", arm="baseline", kind="baseline",
                                                      decay=None, autowu={}, peak_lr=0.001,
                                                      warmup_epochs=1.0))
    calls = []
    real = MlflowClient.log_batch

    def counting(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        calls.append(len(metrics))
        return real(self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    logger = TrialLogger(server.uri, run_id, tmp_path / "baseline_b64_s0")
    steps = 1200
    for first in range(1, steps + 1, 100):  # one call a test interval, as a worker does
        chunk = range(first, first + 100)
        logger.log_steps(list(chunk), [1e-3 * t / steps for t in chunk], [2.0 - t / steps for t in chunk])
    logger.log_epoch(1, steps, {"val_loss": 0.5, "val_acc": 0.8, "epoch_seconds": 3.0, "images_per_second": 900.0})
    assert calls == []  # nothing sent before the flush
    logger.flush()  # spools them and wakes the sender: it does not wait for MLflow
    assert logger.close(timeout=60)
    # 2 x 1200 step metrics + 5 epoch metrics, 1000 a request
    assert calls == [1000, 1000, 405]
    client = MlflowClient(server.uri)
    lr = client.get_metric_history(run_id, "lr")
    assert len(lr) == steps and sorted(m.step for m in lr) == list(range(1, steps + 1))
    assert client.get_metric_history(run_id, "val_acc")[0].step == steps


def test_tests_events_and_failed_status(server, parent, tmp_path):
    client = MlflowClient(server.uri)
    run_id = open_trial(server.uri, parent, spec("autowu-auto_b128_s0", batch_size=128), tmp_path / "t")
    logger = TrialLogger(server.uri, run_id, tmp_path / "t")
    logger.log_steps([1, 2], [1e-5, 2e-5], [2.3, math.nan])
    logger.log_tests([
        SwitchTest(step=10, epoch=0.5, p=(0.2, 0.97), votes=(False, True), positive=False,
                   decision=Decision.NEGATIVE, n_finite=10, seconds=0.01),
        SwitchTest(step=20, epoch=1.0, p=(0.99, 0.98), votes=(True, True), positive=True,
                   decision=Decision.SWITCH, n_finite=20, seconds=0.01, mu=(0.5,), x_star=(0.9, 0.9), start_lr=0.003),
    ])
    logger.log_event("rollback", 2, to_step=1)
    assert logger.close(timeout=60)
    assert close_trial(server.uri, tmp_path / "t", "FAILED", {"test_acc": None, "best_val_acc": 0.4, "rollbacks": 1,
                                                             "status": "failed", "error": "boom"})
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics["best_val_acc"] == 0.4 and run.data.metrics["rollbacks"] == 1
    assert "test_acc" not in run.data.metrics and run.data.tags["summary.error"] == "boom"
    assert [m.value for m in client.get_metric_history(run_id, "autowu_decision")] == [0, 2]
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "autowu_p_1")) == [(10, 0.97), (20, 0.98)]
    assert client.get_metric_history(run_id, "event_rollback")[0].step == 2
    assert json.loads(run.data.tags["event.rollback"]) == {"step": 2, "to_step": 1}
    assert math.isnan(client.get_metric_history(run_id, "train_loss")[-1].value)


def test_children_left_running_are_closed(server, parent, tmp_path):
    client = MlflowClient(server.uri)
    left = open_trial(server.uri, parent, spec("killed_s0"), tmp_path / "killed_s0")
    done = open_trial(server.uri, parent, spec("done_s0"), tmp_path / "done_s0")
    assert close_trial(server.uri, tmp_path / "done_s0", "FINISHED", {"test_acc": 0.9})
    closed = close_open_children(server.uri, parent, "KILLED")
    assert left in closed and done not in closed
    assert client.get_run(left).info.status == "KILLED" and client.get_run(done).info.status == "FINISHED"


def test_end_run_rejects_an_unknown_status(server, parent, tmp_path):
    with pytest.raises(ValueError, match="RUNNING"):
        close_trial(server.uri, tmp_path, "RUNNING", {})


def test_results_append_numbered_fragments(tmp_path):
    trial_dir = tmp_path / "x_s0"
    first = TrialResults(trial_dir)
    first.log_steps([1, 2], [0.1, 0.2], [1.0, 0.9])
    first.flush()
    first.flush()  # nothing buffered: no empty fragment
    resumed = TrialResults(trial_dir)
    resumed.log_steps([2, 3], [0.2, 0.3], [0.8, 0.7])
    resumed.log_epoch(0, 3, {"val_acc": 0.5})
    resumed.flush()
    names = sorted(p.name for p in (trial_dir / "fragments").iterdir())
    assert names == ["curves-000001.parquet", "curves-000002.parquet", "epochs-000003.parquet"]
    frame = pd.read_parquet(trial_dir / "fragments" / "curves-000002.parquet")
    assert frame.to_dict("list") == {"trial_id": ["x_s0"] * 2, "step": [2, 3], "lr": [0.2, 0.3], "train_loss": [0.8, 0.7]}



def test_a_switch_record_keeps_its_extra_fields_beside_plain_tests(tmp_path):
    results = TrialResults(tmp_path / "a_s0")
    plain = SwitchTest(step=21, epoch=5.25, p=(0.97,) * 5, votes=(True,) * 5, positive=True,
                       decision=Decision.POSITIVE, n_finite=21, seconds=0.01)
    switch = dataclasses.replace(plain, step=23, decision=Decision.SWITCH, mu=(0.5, 0.4), x_star=(0.8,) * 5,
                                 start_lr=0.0017)
    results.log_tests([plain, switch])
    results.flush()
    (path,) = (tmp_path / "a_s0" / "fragments").iterdir()
    frame = pd.read_parquet(path)
    assert frame.start_lr.isna().tolist() == [True, False] and frame.start_lr.iloc[1] == 0.0017
    assert frame.x_star.iloc[1].tolist() == [0.8] * 5 and frame.mu.iloc[0] is None


# -- the server's watchdog: a "server" that proves it started by writing its pid and its child's --------

# argv: the pid file, then how long to live (s). The pid file appears whole (os.replace) once both run.
_PID_WRITER = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '600'])\n"
    "with open(sys.argv[1] + '.tmp', 'w') as f:\n"
    "    f.write(f'{os.getpid()} {child.pid}')\n"
    "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(float(sys.argv[2]))\n"
)
_POSIX = pytest.mark.skipif(os.name != "posix", reason="process groups and signals (POSIX)")


class _PidServer(LocalMlflowServer):
    """The server's process handling without MLflow: ``_PID_WRITER`` living 600 s."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", _PID_WRITER, str(self.workdir / "pids"), "600"]


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it has exited and only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _started(pid_file: Path, log: Path | None = None, seconds: float = 90.0) -> list[int]:
    """The pids the server wrote once it started; fails (with the log) if it never did."""
    deadline = time.monotonic() + seconds
    while not pid_file.is_file():
        if time.monotonic() > deadline:
            pytest.fail(f"the server never started; log:\n{log.read_text() if log and log.is_file() else '(none)'}")
        time.sleep(0.1)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    return pids


def _kill_left(pid_file: Path) -> None:
    """After a failed test: SIGKILL the group of whatever the server started that is left (never ours)."""
    try:
        pids = [int(p) for p in pid_file.read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if _alive(pid) and group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        except OSError:
            pass


def _gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@_POSIX
def test_stop_takes_down_the_server_and_its_children(tmp_path):
    server = _PidServer(tmp_path).launch()
    try:
        pids = _started(tmp_path / "pids", server.log_path)
        server.stop()
        assert _gone(pids, 5.0)
        assert server.pid is None
        server.stop()  # idempotent
    finally:
        server.stop()
        _kill_left(tmp_path / "pids")


@_POSIX
def test_a_killed_owner_leaves_no_server_behind(tmp_path):
    """The owner runs without PYTHONPATH and the server in another folder: ``launch`` alone must make
    ``python -m autowu_bench.platform.tracking.watchdog`` importable there."""
    workdir = tmp_path / "work"
    owner_code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from autowu_bench.platform.tracking.server import LocalMlflowServer\n"
        "class Server(LocalMlflowServer):\n"
        f"    def command(self): return [sys.executable, '-c', {_PID_WRITER!r}, str(self.workdir / 'pids'), '600']\n"
        f"Server({str(workdir)!r}).launch()\n"
        "time.sleep(600)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    owner = subprocess.Popen([sys.executable, "-c", owner_code], env=env, cwd=tmp_path)
    try:
        pids = _started(workdir / "pids", workdir / "mlflow-server.log")
        os.kill(owner.pid, signal.SIGKILL)  # no finally, no atexit: only the watchdog can clean up
        owner.wait()
        assert _gone(pids, 10.0)
    finally:
        owner.kill()
        owner.wait()
        _kill_left(workdir / "pids")


@_POSIX
def test_the_watchdog_ends_when_the_server_exits_on_its_own_and_may_not_restart_it(tmp_path):
    pid_file = tmp_path / "pids"
    watchdog = subprocess.Popen(
        [sys.executable, "-m", WATCHDOG_MODULE, "--restarts", "0", str(os.getpid()), sys.executable, "-c",
         _PID_WRITER, str(pid_file), "0"],
        env=watchdog_env(), cwd=tmp_path, start_new_session=True,
    )
    try:
        assert watchdog.wait(timeout=90) == -signal.SIGKILL  # it ends by killing its own group
        server, child = [int(p) for p in pid_file.read_text().split()]  # the server did start
        assert _gone([server, child], 5.0)  # and the server's child went with the group
    finally:
        if watchdog.poll() is None:
            os.killpg(watchdog.pid, signal.SIGKILL)
            watchdog.wait()
        _kill_left(pid_file)


@_POSIX
def test_the_watchdog_restarts_a_server_that_died_up_to_its_cap(tmp_path):
    """The server dies and leaves its child (as ``mlflow server`` leaves uvicorn, which holds the port):
    the watchdog kills the child, starts the same command again and says so in the log; past the cap it
    gives up and takes the group down."""
    pid_file, log = tmp_path / "pids", tmp_path / "server.log"
    with open(log, "wb") as out:
        watchdog = subprocess.Popen(
            [sys.executable, "-m", WATCHDOG_MODULE, "--restarts", "1", str(os.getpid()), sys.executable, "-c",
             _PID_WRITER, str(pid_file), "600"],
            env=watchdog_env(), cwd=tmp_path, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        first = _started(pid_file, log)
        pid_file.unlink()
        os.kill(first[0], signal.SIGKILL)
        second = _started(pid_file, log)
        assert second[0] != first[0] and _gone(first, 10.0)
        assert "restart 1 of at most 1" in log.read_text()
        os.kill(second[0], signal.SIGKILL)
        assert watchdog.wait(timeout=60) == -signal.SIGKILL  # the cap: no second restart
        assert _gone(second, 5.0) and "not restarted" in log.read_text()
    finally:
        if watchdog.poll() is None:
            os.killpg(watchdog.pid, signal.SIGKILL)
            watchdog.wait()
        _kill_left(pid_file)


def test_the_watchdog_refuses_a_command_line_without_owner_and_command(capsys):
    assert watchdog_main([]) == 2 and watchdog_main(["123"]) == 2 and watchdog_main(["me", "sleep"]) == 2
    assert watchdog_main(["--restarts", "x", "123", "sleep"]) == 2 and watchdog_main(["--restarts"]) == 2
    assert "usage" in capsys.readouterr().err


def test_the_server_environment_finds_the_package_and_keeps_the_users_values():
    env = watchdog_env({"PYTHONPATH": "/elsewhere", "MLFLOW_DISABLE_TELEMETRY": "false"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "false"
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert watchdog_env({"PYTHONPATH": str(REPO)})["PYTHONPATH"] == str(REPO)  # not twice


# -- the MLflow environment: set where a process starts, never at import --------------------------------


def test_importing_the_platform_leaves_the_environment_alone():
    code = (
        "import json, os\n"
        "before = dict(os.environ)\n"
        "import autowu_bench.platform.records.tables, autowu_bench.platform.execution.ray_cluster\n"
        "from autowu_bench.platform.tracking import client, delivery, lifecycle, operations, trial_logger\n"
        "after = dict(os.environ)\n"
        "print(json.dumps({k: [before.get(k), after.get(k)] for k in before.keys() | after.keys()"
        " if before.get(k) != after.get(k)}))\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "{}"


def test_apply_process_env_sets_defaults_and_a_users_value_wins():
    environ = {"MLFLOW_DISABLE_TELEMETRY": "false"}
    apply_process_env(environ)
    assert environ == {**MLFLOW_ENV, "MLFLOW_DISABLE_TELEMETRY": "false"}
    assert environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


def test_mlflow_reads_the_defaults_as_telemetry_off_and_no_url_print(monkeypatch):
    """Telemetry's thread edits the environment while requests iterates it (KeyError in log_batch)."""
    from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY, MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    for key, value in MLFLOW_ENV.items():
        monkeypatch.setenv(key, value)
    assert MLFLOW_DISABLE_TELEMETRY.get() is True and MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is True
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    assert MLFLOW_DISABLE_TELEMETRY.get() is False


def test_mlflow_reads_the_defaults_as_a_few_quick_retries(monkeypatch):
    """A server that is away costs a call seconds, not MLflow's minutes of retries (the spool retries)."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    for key, value in MLFLOW_ENV.items():
        monkeypatch.setenv(key, value)
    assert (MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
            MLFLOW_HTTP_REQUEST_TIMEOUT.get()) == (2, 1, 10)


def test_ray_trial_processes_get_the_mlflow_environment(monkeypatch):
    """Trial drivers and workers get it from the runtime_env (no Ray is started: init is stopped)."""
    import ray

    from autowu_bench.platform.execution import ray_cluster

    seen = {}

    def init(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop before Ray starts")

    monkeypatch.setattr(ray, "init", init)
    for key, value in ray_cluster._RAY_ENV.items():  # ray_session sets them here too: restored afterwards
        monkeypatch.setenv(key, os.environ.get(key, value))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
    with pytest.raises(RuntimeError, match="before Ray starts"):
        with ray_cluster.ray_session(None):
            pass
    env_vars = seen["runtime_env"]["env_vars"]
    assert env_vars["MLFLOW_DISABLE_TELEMETRY"] == "false"  # the user's value
    assert env_vars["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


def test_a_reconstructed_optimizer_is_tagged_so():
    clars = trial_tags(spec("clars_b64_s0", arm="clars", kind="baseline", decay="polynomial", autowu={},
                            optimizer="clars-chunked", peak_lr=0.04, warmup_epochs=0.0))
    assert clars["optimizer_note"] == "reconstruction" and "reconstruction" in clars["optimizer_label"]
    assert clars["decay"] == "polynomial" and clars["warmup_epochs"] == "0"
    assert "optimizer_note" not in trial_tags(spec()) and trial_tags(spec())["optimizer_label"] == "AdamP"


# -- the spool's operations: today's JSON lines, read, written and sent unchanged ----------------------------

# Lines as the spool's writers wrote them before the operations were dataclasses (``Spool.append``:
# compact JSON, one operation a line); a run folder holding them must still be sent as it was.
TODAYS_LINES = [
    '{"op":"create","parent":"PARENT","spec":SPEC}',
    '{"op":"metrics","m":[["lr",0.1,1796408582152,1],["train_loss",2.0,1796408582152,1],'
    '["replay1/lr",0.3,1796408582153,1],["val_acc",NaN,1796408582153,2]]}',
    '{"op":"tags","t":{"event.rollback":"{\\"step\\": 2, \\"to\\": 1}","summary.status":"stopped"}}',
    '{"op":"status","status":"RUNNING"}',
    '{"op":"status","status":"KILLED"}',
    '{"op":"artifacts","paths":["/run/table.txt"],"dir":"results"}',
    '{"op":"artifacts","paths":["/run/table.md"],"dir":null}',
    '{"op":"close_children","status":"FAILED"}',
    '{"op":"status","status":"FINISHED"}',
]


def _todays_line(line: str, parent: str = "parent-run", trial_id: str = "todays-format_s0") -> str:
    return line.replace("PARENT", parent).replace("SPEC", json.dumps(spec(trial_id).to_dict(), separators=(",", ":")))


def test_todays_spool_lines_round_trip_through_the_operations():
    from autowu_bench.platform.tracking import operations

    kinds = []
    for text in map(_todays_line, TODAYS_LINES):
        line = json.loads(text)
        operation = operations.from_json(line)
        kinds.append(type(operation).__name__)
        again = operation.to_json()
        assert list(again) == list(line)  # the same keys, in the same order
        assert json.dumps(again, separators=(",", ":")) == text  # so the same bytes in ops.jsonl
        assert operations.from_json(again) == operation
    assert kinds == ["CreateRun", "LogMetrics", "SetTags", "SetStatus", "SetStatus", "LogArtifacts", "LogArtifacts",
                     "CloseChildren", "SetStatus"]
    with pytest.raises(ValueError, match="unknown spooled operation 'params'"):
        operations.from_json({"op": "params", "p": {}})
    with pytest.raises(KeyError):
        operations.from_json({"op": "metrics"})


def test_the_writers_spool_todays_lines(tmp_path):
    from autowu_bench.platform.tracking.client import RunStatus
    from autowu_bench.platform.tracking.lifecycle import spool_artifacts, spool_end, spool_summary
    from autowu_bench.platform.tracking.spool import Spool

    spool_artifacts(tmp_path, "parent-run", ["/run/table.txt"], "results")
    spool_artifacts(tmp_path, "parent-run", ["/run/table.md"])
    spool_summary(tmp_path, "parent-run", {"trials": 2, "note": "x"})
    spool_end(tmp_path, "parent-run", RunStatus.FINISHED, "FAILED")
    lines = (Spool.of(tmp_path).ops_path).read_text().splitlines()
    assert lines[:2] == [TODAYS_LINES[5], TODAYS_LINES[6]] and lines[-2:] == [TODAYS_LINES[7], TODAYS_LINES[8]]
    (point,), = [json.loads(lines[2])["m"]]
    assert json.loads(lines[2])["op"] == "metrics" and point[0] == "trials" and point[1:] == [2.0, point[2], 0]
    assert lines[3] == '{"op":"tags","t":{"summary.note":"x"}}'
    assert Spool.of(tmp_path).run_id == "parent-run"


def test_a_run_folder_spooled_in_todays_format_is_sent(server, tmp_path):
    """A run folder whose spools hold today's lines (a suite interrupted before this code) is sent by
    ``send_spools`` (as ``--sync`` and ``--resume`` do) into the runs those lines describe."""
    from autowu_bench.platform.tracking.spool import Spool
    from autowu_bench.platform.tracking.delivery import send_spools

    parent = start_parent_run(server.uri, "tracking-test", run_name="spooled in today's format")
    run_dir = tmp_path / "run"
    trial = Spool.of(run_dir / "trials" / "todays-format_s0")
    trial.folder.mkdir(parents=True)
    trial_lines = [TODAYS_LINES[0], TODAYS_LINES[1], TODAYS_LINES[2], TODAYS_LINES[4]]
    trial.ops_path.write_text("".join(_todays_line(line, parent) + "\n" for line in trial_lines))
    other = start_trial_run(server.uri, parent, spec("todays-left-running_s0"))
    suite = Spool.of(run_dir)
    suite.set_run_id(parent)
    suite.ops_path.write_text(f'{TODAYS_LINES[3]}\n{TODAYS_LINES[7]}\n')

    report = send_spools(run_dir, server.uri)
    assert report.complete and report.sent == 6 and report.points == 4 and report.rejected == 0
    client = MlflowClient(server.uri)
    run = client.get_run(trial.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["trial_id"] == "todays-format_s0"
    assert run.info.status == "KILLED" and run.data.tags["summary.status"] == "stopped"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "lr")] == [0.1]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "replay1/lr")] == [1]
    assert math.isnan(client.get_metric_history(run.info.run_id, "val_acc")[0].value)
    assert client.get_run(other).info.status == "FAILED"  # the parent's close_children
    assert client.get_run(parent).info.status == "RUNNING"


def test_run_status_is_mlflows_string():
    from autowu_bench.platform.tracking.client import STATUSES, RunStatus, end_status

    assert [str(s) for s in RunStatus] == ["RUNNING", "FINISHED", "FAILED", "KILLED"]
    assert RunStatus.KILLED == "KILLED" and "FAILED" in STATUSES and "RUNNING" not in STATUSES
    assert json.dumps({"status": RunStatus.FINISHED}) == '{"status": "FINISHED"}'
    assert end_status("FAILED") is RunStatus.FAILED
    with pytest.raises(ValueError, match=r"status='RUNNING' must be one of \('FINISHED', 'FAILED', 'KILLED'\)"):
        end_status("RUNNING")
