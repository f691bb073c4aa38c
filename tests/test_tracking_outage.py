"""Tracking while MLflow is away: the spool (nothing dropped, nothing sent twice), a trial that never waits
on the network, ``run_suite.py --sync``, the end of a suite without MLflow (exit 4), replayed steps after
a rollback, and a local server killed mid-trial and restarted by its watchdog."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time

import psutil
import pytest
from data_fixtures import write_fashion_mnist_idx
from mlflow.tracking import MlflowClient

from autowu_bench.launch import cli as launch_cli
from autowu_bench.launch import suite_run
from autowu_bench.launch.exit_status import ExitStatus
from autowu_bench.platform.records import tables
from autowu_bench.platform.tracking import client as tracking_client
from autowu_bench.platform.tracking.client import RunStatus, start_parent_run, start_trial_run
from autowu_bench.platform.tracking.lifecycle import close_trial, open_trial, spool_artifacts, spool_end, spool_summary
from autowu_bench.platform.records.trial_results import TrialResults
from autowu_bench.platform.tracking.operations import LogMetrics, SetStatus, SetTags, Unreadable
from autowu_bench.platform.tracking.trial_logger import LOGGER_CLOSE_SECONDS, TrialLogger
from autowu_bench.platform.tracking.delivery import send_spools
from autowu_bench.platform.tracking.env import MLFLOW_ENV
from autowu_bench.platform.tracking.server import LocalMlflowServer, free_port
from autowu_bench.platform.records.run_manifest import RunManifest
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.tracking.spool import REJECTED_FILE, Spool


_POSIX = pytest.mark.skipif(os.name != "posix", reason="process groups and signals (POSIX)")


@pytest.fixture(autouse=True)
def quick_mlflow_client(monkeypatch):
    """This process's MLflow client as run_suite.py's processes have it: a few quick retries."""
    for key, value in MLFLOW_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalMlflowServer(tmp_path_factory.mktemp("mlflow")) as srv:
        yield srv


def away_uri() -> str:
    """An MLflow URI where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def spec(trial_id: str) -> TrialSpec:
    return TrialSpec(trial_id=trial_id, suite="outage-test", arm="baseline", kind="baseline", workload="fmnist-mlp",
                     batch_size=64, epochs=3, seed=0, optimizer="sgd", weight_decay=0.0, peak_lr=0.1,
                     warmup_epochs=1.0)


def children(client: MlflowClient, parent: str) -> list:
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


# -- the spool file ------------------------------------------------------------------------------------


def test_the_spool_keeps_whole_lines_in_order_until_they_are_acknowledged(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert not spool.exists() and spool.empty() and spool.left() == 0
    a, b, c = LogMetrics([["loss", math.nan, 1, 1]]), SetTags({"k": "v"}), SetStatus(RunStatus.FINISHED)
    spool.append([a, b])
    (end_a, read_a), (_, read_b) = list(spool.pending())
    assert isinstance(read_a, LogMetrics) and math.isnan(read_a.points[0][1]) and read_b == b
    spool.ack(end_a)
    assert [op for _, op in spool.pending()] == [b] and spool.left() == 1
    # A write a crash cut short is not read as an operation, and the next append ends its line so that
    # it costs only itself: it comes back as Unreadable, as does a kind this code does not know.
    with open(spool.ops_path, "ab") as f:
        f.write(b'{"op": "cu')
    assert [op for _, op in spool.pending()] == [b]
    spool.append([c])
    with open(spool.ops_path, "ab") as f:
        f.write(b'{"op":"params","p":{}}\n')
    read = [op for _, op in spool.pending()]
    assert read[0] == b and read[2] == c and len(read) == 4
    assert isinstance(read[1], Unreadable) and "does not parse" in read[1].reason
    assert read[3] == Unreadable({"op": "params", "p": {}}, "ValueError: unknown spooled operation 'params'")
    spool.ack(list(spool.pending())[-1][0])
    spool.compact()
    assert spool.empty() and spool.size() == 0 and spool.offset() == 0
    with spool.sending() as mine, spool.sending() as other:  # one sender at a time, threads included
        assert mine and not other


# -- MLflow away: nothing waits, nothing is dropped ------------------------------------------------------


def test_a_trial_with_mlflow_away_throughout_is_spooled_and_sync_sends_it_once(server, tmp_path, capsys):
    client = MlflowClient(server.uri)
    parent = start_parent_run(server.uri, "outage-test", run_name="away throughout")
    run_dir = tmp_path / "run"
    folder = run_dir / "trials" / "t"
    away = away_uri()
    started = time.monotonic()
    assert open_trial(away, parent, spec("t"), folder, wait=20) is None
    logger = TrialLogger(away, None, folder)
    flushes = []
    for epoch in range(1, 4):
        steps = list(range((epoch - 1) * 400 + 1, epoch * 400 + 1))
        logger.log_steps(steps, [1e-3 * s for s in steps], [1.0 / s for s in steps])
        logger.log_epoch(epoch, steps[-1], {"val_acc": 0.1 * epoch})
        before = time.monotonic()
        logger.flush()
        flushes.append(time.monotonic() - before)
    logger.log_event("rollback", 5, restored_step=0)
    assert not logger.close(timeout=30)  # it does not wait out its timeout once it found MLflow away
    assert not close_trial(away, folder, "FINISHED", {"test_acc": 0.9, "status": "finished"}, wait=30)
    # Bounded: seconds of HTTP retries at the start and the end, none at the epoch ends.
    # (Generous bounds: the machine may be shared; what matters is seconds, not MLflow's minutes of retries.)
    assert max(flushes) < 5.0 and time.monotonic() - started < 120.0
    assert Spool.of(folder).left() > 0

    table = run_dir / "table.txt"
    table.write_text("the table\n")
    spool_artifacts(run_dir, parent, [table])
    spool_summary(run_dir, parent, {"trials": 1, "trials_failed": 0})
    spool_end(run_dir, parent, "FINISHED", "FAILED")
    RunManifest("outage-test", tracking_uri=server.uri, parent_run_id=parent).write(run_dir)

    assert launch_cli.main(["--sync", str(run_dir)]) == ExitStatus.OK
    assert "sent" in capsys.readouterr().out
    (child,) = children(client, parent)
    run_id = child.info.run_id
    assert steps_of(client, run_id, "lr") == list(range(1, 1201)) == steps_of(client, run_id, "train_loss")
    assert steps_of(client, run_id, "val_acc") == [400, 800, 1200]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "t"  # closed as FINISHED, not FAILED
    assert run.data.metrics["test_acc"] == 0.9 and run.data.tags["summary.status"] == "finished"
    assert "event.rollback" in run.data.tags and run.data.params["peak_lr"] == "0.1"
    top = client.get_run(parent)
    assert top.info.status == "FINISHED" and top.data.metrics["trials"] == 1
    assert [f.path for f in client.list_artifacts(parent) if f.path == "table.txt"] == ["table.txt"]

    # Again: nothing is left, so nothing is sent twice.
    assert launch_cli.main(["--sync", str(run_dir)]) == ExitStatus.OK
    assert "sent 0 tracking operations" in capsys.readouterr().out
    assert len(client.get_metric_history(run_id, "lr")) == 1200


def test_sync_starts_a_server_over_the_store_of_a_suite_that_ran_its_own(tmp_path, capsys):
    """The suite's local server (and its port) ended with the suite; --sync starts one over the same
    mlflow.db (run.json's mlflow_store) and sends what the trial left."""
    store, run_dir = tmp_path / "store", tmp_path / "run"
    with LocalMlflowServer(store) as gone:
        parent = start_parent_run(gone.uri, "outage-test", run_name="own server")
        spool_end(run_dir, parent, "FINISHED", "FAILED")
    folder = run_dir / "trials" / "late"
    away = away_uri()
    open_trial(away, parent, spec("late"), folder, wait=10)
    logger = TrialLogger(away, None, folder)
    logger.log_steps([1, 2, 3], [0.1, 0.2, 0.3], [1.0, 0.9, 0.8])
    logger.close(timeout=1)
    close_trial(away, folder, "FINISHED", {"test_acc": 0.7}, wait=10)
    RunManifest("outage-test", mlflow_store=str(store), parent_run_id=parent).write(run_dir)
    assert launch_cli.main(["--sync", str(run_dir)]) == ExitStatus.OK
    assert "sent" in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")  # the store itself, no server
    (child,) = children(client, parent)
    assert steps_of(client, child.info.run_id, "lr") == [1, 2, 3]
    assert child.info.status == "FINISHED" and client.get_run(parent).info.status == "FINISHED"


def test_operations_sent_again_after_a_crash_are_taken_once(server, tmp_path):
    """A sender that dies after MLflow took an operation but before the spool noted it sends it again:
    the spooled metrics carry their timestamps, so MLflow keeps one row of each."""
    client = MlflowClient(server.uri)
    folder = tmp_path / "trials" / "again"
    away = away_uri()
    open_trial(away, None, spec("again"), folder, wait=10)
    logger = TrialLogger(away, None, folder)
    logger.log_steps(list(range(1, 301)), [0.01] * 300, [1.0] * 300)
    logger.close(timeout=1)
    close_trial(away, folder, "FINISHED", {"test_acc": 0.5}, wait=1)
    spool = Spool.of(folder)
    spooled = spool.ops_path.read_bytes()
    first = send_spools(tmp_path, server.uri, patience=30)
    assert first.complete and first.points == 601
    spool.ops_path.write_bytes(spooled)  # as if none of it had been acknowledged
    spool.ack(0)
    again = send_spools(tmp_path, server.uri, patience=30)
    assert again.complete and again.sent == first.sent
    run_id = spool.run_id
    assert steps_of(client, run_id, "lr") == list(range(1, 301))
    assert len(client.get_metric_history(run_id, "test_acc")) == 1
    assert client.get_run(run_id).info.status == "FINISHED"


def test_steps_replayed_after_a_rollback_are_a_series_of_their_own(server, tmp_path):
    """An AutoWU rollback restores an earlier snapshot and trains those steps again: MLflow's ``lr`` keeps
    each step once (the values first logged), the replay goes to ``replay1/lr``; the Parquet tables keep
    the last row of a step."""
    client = MlflowClient(server.uri)
    run_id = start_trial_run(server.uri, None, spec("rolled"))
    logger = TrialLogger(server.uri, run_id, tmp_path / "trials" / "rolled")
    results = TrialResults(tmp_path / "trials" / "rolled", logger=logger)
    results.log_steps(list(range(1, 11)), [0.1] * 10, [2.0] * 10)
    results.log_epoch(1, 10, {"val_acc": 0.5})
    results.flush()
    results.log_event("rollback", 11, restored_step=5)
    results.log_steps(list(range(6, 21)), [0.01] * 15, [1.0] * 15)  # steps 6..10 again, under the decay
    results.log_epoch(1, 10, {"val_acc": 0.6})
    results.log_epoch(2, 20, {"val_acc": 0.7})
    results.flush()
    assert logger.close(timeout=60)
    lr = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "lr"))
    assert lr == [(s, 0.1) for s in range(1, 11)] + [(s, 0.01) for s in range(11, 21)]
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "replay1/lr")) == [
        (s, 0.01) for s in range(6, 11)]
    assert steps_of(client, run_id, "train_loss") == list(range(1, 21))
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "replay1/val_acc")] == [(10, 0.6)]
    assert steps_of(client, run_id, "val_acc") == [10, 20]
    curves = tables.fragments_frame(tmp_path, "curves")
    assert curves.step.tolist() == list(range(1, 21)) and curves.lr.tolist() == [0.1] * 5 + [0.01] * 15


def test_an_operation_mlflow_refuses_is_kept_aside_not_retried_forever(server, tmp_path):
    spool = Spool.of(tmp_path / "trials" / "gone")
    spool.set_run_id("0123456789abcdef0123456789abcdef")  # no such run
    spool.append([LogMetrics([["lr", 0.1, 1, 1]])])
    with open(spool.ops_path, "ab") as f:  # a line this code cannot read is set aside too
        f.write(b'{"op":"params","p":{}}\n')
    with pytest.warns(UserWarning, match="MLflow refused a spooled 'metrics' operation"):
        report = send_spools(tmp_path, server.uri)
    assert report.complete and report.rejected == 2 and report.sent == 0
    rejected = [json.loads(line) for line in (spool.folder / REJECTED_FILE).read_text().splitlines()]
    assert rejected[0]["op"] == {"op": "metrics", "m": [["lr", 0.1, 1, 1]]}
    assert rejected[1] == {"reason": "ValueError: unknown spooled operation 'params'", "op": {"op": "params", "p": {}}}


# -- the end of a suite with MLflow away ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    return str(write_fashion_mnist_idx(tmp_path_factory.mktemp("fmnist"), n_train=1500, n_test=100))


def test_a_suite_that_ends_with_mlflow_away_writes_its_results_and_exits_4(fmnist_root, tmp_path, monkeypatch,
                                                                          capsys):
    """Ray is stood in for; MLflow is away from the parent run's creation on (the trials' own tracking is
    test_a_trial_with_mlflow_away_throughout...): the tables and the report are written, the parent run's
    end waits in the run folder's spool, the exit status says tracking is incomplete."""
    from autowu_bench.platform.execution import ray_cluster
    from autowu_bench.platform.execution import grid_run
    from autowu_bench.platform.records.outcome import TrialOutcome, TrialStatus
    from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder

    from autowu_bench.platform.checks import environment

    monkeypatch.setattr(environment, "unreachable", lambda *a, **k: None)  # it answered the launch's check, then went
    monkeypatch.setattr(ray_cluster, "ray_session", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(ray_cluster, "cluster_problems", lambda *a, **k: [])
    monkeypatch.setattr(tracking_client, "start_parent_run", lambda *a, **k: "parent")
    monkeypatch.setattr(suite_run, "END_PATIENCE_REMOTE", 0.0)

    def every_trial_finishes(trials, *, run_dir, **kwargs):
        outcomes = []
        for trial in trials:
            outcome = TrialOutcome(trial_id=trial.trial_id, arm=trial.arm, kind=trial.kind,
                                   status=TrialStatus.FINISHED, final_val_acc=0.8, test_acc=0.79, wall_seconds=10.0,
                                   device_hours=0.01)
            TrialFolder.of(run_dir, trial.trial_id).end(outcome, EndedBy.DRIVER)
            outcomes.append(outcome)
        return outcomes

    monkeypatch.setattr(grid_run, "run_grid", every_trial_finishes)
    code = launch_cli.main(["--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", str(tmp_path),
                           "--tracking-uri", away_uri()])
    err = capsys.readouterr().err
    assert code == ExitStatus.TRACKING_INCOMPLETE
    (run_dir,) = (tmp_path / "smoke").iterdir()
    assert "0.7900" in (run_dir / "table.txt").read_text() and (run_dir / "report" / "index.html").is_file()
    assert (run_dir / "trials.parquet").is_file()
    assert "tracking is incomplete" in err and f"--sync {run_dir}" in err
    ops = [op.KIND for _, op in Spool.of(run_dir).pending()]
    assert ops == ["artifacts", "artifacts", "artifacts", "metrics", "close_children", "status"]
    assert RunManifest.read(run_dir).parent_run_id == "parent"


# -- a local server killed mid-trial --------------------------------------------------------------------


def _kill_server(server: LocalMlflowServer) -> list[int]:
    """SIGKILL every process of the server's group but its watchdog (the group's leader): the server dies
    as it would of a crash or the OOM killer."""
    killed = []
    for pid in psutil.pids():
        try:
            if pid != server.pid and os.getpgid(pid) == server.pid:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except OSError:
            pass
    return killed


@_POSIX
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_local_server_costs_a_trial_seconds_and_mlflow_ends_with_every_step_once(tmp_path):
    """A trial logger driven like a trial (500 steps an epoch, 1.3 s of "training" each); the server is killed
    at epoch 3. No epoch end waits on it, its watchdog brings it back on the same port, and MLflow ends
    with every step once."""
    epochs, per_epoch = 10, 500
    with LocalMlflowServer(tmp_path / "store") as server:
        client = MlflowClient(server.uri)
        parent = start_parent_run(server.uri, "outage-test", run_name="killed server")
        folder = tmp_path / "run" / "trials" / "killed"
        run_id = open_trial(server.uri, parent, spec("killed"), folder)
        assert run_id is not None
        logger = TrialLogger(server.uri, run_id, folder)
        epoch_ends = []
        for epoch in range(1, epochs + 1):
            if epoch == 3:
                assert _kill_server(server)
            time.sleep(1.3)
            steps = list(range((epoch - 1) * per_epoch + 1, epoch * per_epoch + 1))
            before = time.monotonic()
            logger.log_steps(steps, [1e-4 * s for s in steps], [1.0 / s for s in steps])
            logger.log_epoch(epoch, steps[-1], {"val_acc": epoch / epochs})
            logger.flush()
            epoch_ends.append(time.monotonic() - before)
        before = time.monotonic()
        logger.close()
        closing = time.monotonic() - before
        close_trial(server.uri, folder, "FINISHED", {"test_acc": 0.9})
        assert max(epoch_ends) < 10.0, epoch_ends  # seconds, not minutes: no epoch end waits on MLflow
        assert closing < LOGGER_CLOSE_SECONDS + 10.0

        deadline = time.monotonic() + 300
        while not server.answers():
            assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
            time.sleep(0.5)
        assert "restart 1 of at most" in server.log_path.read_text()
        report = send_spools(tmp_path / "run", server.uri, patience=120)
        assert report.complete, report
        assert steps_of(client, run_id, "lr") == list(range(1, epochs * per_epoch + 1))
        assert steps_of(client, run_id, "train_loss") == list(range(1, epochs * per_epoch + 1))
        assert steps_of(client, run_id, "val_acc") == [e * per_epoch for e in range(1, epochs + 1)]
        assert client.get_run(run_id).info.status == "FINISHED"
