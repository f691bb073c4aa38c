"""The command line (autowu_bench.launch.cli, run_suite.py) without Ray: argument parsing, flag and --set overrides, --only, the dry run, missing data,
bad input and bad environments (exit status 2 before anything starts), exit codes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
from data_fixtures import write_fashion_mnist_idx

from autowu_bench.launch import cli as launch_cli
from autowu_bench.launch import plan as launch_plan
from autowu_bench.launch.exit_status import ExitStatus
from autowu_bench.platform.suite.loader import download_missing_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    return str(write_fashion_mnist_idx(tmp_path_factory.mktemp("fmnist"), n_train=1500, n_test=100))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_suite.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_defaults(monkeypatch):
    for name in ("AUTOWU_RAY_ADDRESS", "MLFLOW_TRACKING_URI", "AUTOWU_RESULTS"):
        monkeypatch.delenv(name, raising=False)
    args = launch_cli.parse_args([])
    assert args.suite == "quick" and args.address is None and args.tracking_uri is None and args.results is None
    assert not args.dry_run and args.sets == [] and args.only == []


def test_environment_gives_the_cluster_defaults(monkeypatch):
    # cluster.yaml exports these on the head, so `ray submit ... run_suite.py` joins the cluster
    monkeypatch.setenv("AUTOWU_RAY_ADDRESS", "auto")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.5:5000")
    monkeypatch.setenv("AUTOWU_RESULTS", "/mnt/shared/runs")
    args = launch_cli.parse_args([])
    assert (args.address, args.tracking_uri, args.results) == ("auto", "http://10.0.0.5:5000", "/mnt/shared/runs")
    assert launch_cli.parse_args(["--address", "ray://h:10001"]).address == "ray://h:10001"
    monkeypatch.setenv("AUTOWU_RAY_ADDRESS", "")  # set but empty: unset
    assert launch_cli.parse_args([]).address is None


def test_flags_override_the_file_and_sets_any_field(fmnist_root, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = launch_cli.parse_args([
        "--suite", "smoke", "--set", f"data.root={fmnist_root}", "--set", "epochs=3",
        "--set", "arms.baseline.peak_lrs=[0.002]", "--tracking-uri", "sqlite:///x.db", "--results", "/tmp/r",
        "--only", "baseline", "--only", "64",
    ])
    suite = launch_cli.resolve_suite(args)
    assert Path(suite.source).name == "smoke.yaml"
    assert suite.epochs == 3 and suite.data.root == fmnist_root
    assert suite.tracking_uri == "sqlite:///x.db" and suite.results == "/tmp/r"
    assert [a.name for a in suite.arms] == ["baseline"] and suite.batch_sizes == [64]
    assert suite.arms[0].peak_lrs == [0.002]


def test_dry_run_lists_the_trials_and_starts_nothing(fmnist_root, tmp_path):
    result = cli("--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", str(tmp_path), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("suite smoke: 6 trials")
    estimate = next(i for i, line in enumerate(lines) if line.startswith("estimate"))  # after the trial list
    assert lines[estimate].startswith("estimate, not a measurement: 6 trials, ")
    ids = [line.split()[0] for line in lines[1:estimate]]
    assert ids == [
        "autowu-auto_fmnist-mlp_b32_s0", "baseline_fmnist-mlp_b32_lr0.001_w1_s0",
        "baseline_fmnist-mlp_b32_lr0.0003536_w2_s0",
        "autowu-auto_fmnist-mlp_b64_s0", "baseline_fmnist-mlp_b64_lr0.001_w1_s0",
        "baseline_fmnist-mlp_b64_lr0.0005_w2_s0",
    ]
    assert "test_interval=auto" in lines[1] and "(untuned default)" in lines[3]
    assert list(tmp_path.iterdir()) == []  # no run folder, no MLflow store


def test_invalid_suite_exits_2_with_every_problem(fmnist_root, tmp_path):
    result = cli("--suite", "smoke", "--set", f"data.root={tmp_path / 'missing'}", "--set", "epochs=0",
                 "--set", "batch_sizes=[32,33]", "--dry-run")
    assert result.returncode == 2
    assert "2 problem(s)" in result.stderr  # the data is checked only once the suite is valid
    for field in ("--set epochs=0:", "--set batch_sizes=[32,33]"):  # each named by the --set that caused it
        assert field in result.stderr
    assert result.stdout == ""


def test_only_with_unknown_names_exits_2(fmnist_root):
    result = cli("--suite", "smoke", "--set", f"data.root={fmnist_root}", "--only", "4096", "--dry-run")
    assert result.returncode == 2 and "'4096'" in result.stderr and "batch sizes: [32, 64]" in result.stderr


def test_unknown_suite_exits_2_naming_the_packaged_ones():
    result = cli("--suite", "nope", "--dry-run")
    assert result.returncode == 2 and "quick" in result.stderr and "smoke" in result.stderr


def test_run_folders_never_collide(tmp_path):
    first = launch_plan.new_run_dir(str(tmp_path), "s")
    second = launch_plan.new_run_dir(str(tmp_path), "s")
    assert first != second and first.parent == second.parent == tmp_path / "s"


def test_download_fetches_only_what_is_missing_under_data_root(tmp_path, monkeypatch):
    empty = tmp_path / "data"
    empty.mkdir()
    suite = launch_cli.resolve_suite(launch_cli.parse_args([
        "--suite", "smoke", "--set", "workloads=[fmnist-mlp, cifar10-resnet18]", "--set", f"data.root={empty}",
    ]))
    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def check_data(self, root):
            return [] if self.name == "fmnist-mlp" else [f"{self.name} missing under {root}"]

        def load(self, root, **kwargs):
            calls.append((self.name, root, kwargs))

    monkeypatch.setattr("autowu_bench.workloads.get_workload", Recorder)
    download_missing_data(suite)
    assert calls == [("cifar10-resnet18", str(empty), {"val_size": 0, "download": True})]


def test_what_cannot_be_downloaded_is_a_dry_run_warning(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    proc = cli("--suite", "smoke", "--set", "workloads=[imagenet-resnet50]", "--set", f"data.root={empty}",
               "--download", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "downloading the data of imagenet-resnet50" in proc.stdout
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("warning: data.root:")]
    assert warnings and all("ImageNet" in w and str(empty) in w for w in warnings)


def _no_start(*args, **kwargs):
    raise AssertionError("the run started")


def test_dry_run_without_the_data_lists_the_plan_and_warns(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch_plan, "new_run_dir", _no_start)
    code = launch_cli.run(launch_cli.parse_args(
        ["--suite", "paper-cifar10", "--set", f"data.root={tmp_path}", "--dry-run"]))
    out, err = capsys.readouterr()
    assert code == ExitStatus.OK, err
    assert out.startswith("suite paper-cifar10: ") and "baseline" in out
    (warning,) = [line for line in out.splitlines() if line.startswith("warning: data.root:")]
    assert str(tmp_path / "cifar-10-batches-py") in warning and "run_suite.py --download" in warning
    assert "exit status 2" in out


def test_launch_without_the_data_exits_2_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch_plan, "new_run_dir", _no_start)  # the first step of a launch
    code = launch_cli.run(launch_cli.parse_args(
        ["--suite", "paper-cifar10", "--set", f"data.root={tmp_path}", "--results", str(tmp_path / "runs")]))
    out, err = capsys.readouterr()
    assert code == ExitStatus.INVALID
    assert out == "" and "the suite cannot run" in err
    assert "data.root: CIFAR10 not found" in err and "run_suite.py --download" in err
    assert not (tmp_path / "runs").exists()


def test_an_interrupted_suite_writes_what_finished_and_exits_130(fmnist_root, tmp_path, monkeypatch, capsys):
    """Ctrl-C while trials run: the table of the trials with a summary is written, the parent run ends
    KILLED, the exit status is 130. Ray and MLflow are stood in for: this is run_suite's own path."""
    import contextlib

    from autowu_bench.platform.checks import environment
    from autowu_bench.platform.execution import ray_cluster
    from autowu_bench.platform.execution import grid_run
    from autowu_bench.platform.tracking import client as tracking_client
    from autowu_bench.platform.records.outcome import TrialOutcome, TrialStatus
    from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder

    ended, closed = [], []

    class Session:  # closed before the tables are written, so no trial writes while they are collected
        def close(self):
            closed.append(len(ended))

    monkeypatch.setattr(environment, "unreachable", lambda *a, **k: None)  # the stand-in server "answers"
    logs = []  # where Ray's output goes: the run folder, not the console

    def session(*args, log_path=None, **kwargs):
        logs.append(log_path)
        return contextlib.nullcontext(Session())

    monkeypatch.setattr(ray_cluster, "ray_session", session)
    monkeypatch.setattr(ray_cluster, "cluster_problems", lambda *a, **k: [])
    monkeypatch.setattr(tracking_client, "start_parent_run", lambda *a, **k: "parent")
    monkeypatch.setattr(tracking_client, "log_artifacts", lambda *a, **k: None)
    monkeypatch.setattr(tracking_client, "run_experiment_id", lambda *a, **k: "0")
    monkeypatch.setattr(tracking_client, "close_open_children", lambda *a, **k: [])
    monkeypatch.setattr(tracking_client, "end_run", lambda uri, run_id, status: ended.append(status))

    def first_trial_then_interrupt(trials, *, run_dir, **kwargs):
        done = trials[0]
        TrialFolder.of(run_dir, done.trial_id).end(TrialOutcome(
            trial_id=done.trial_id, arm=done.arm, kind=done.kind, status=TrialStatus.FINISHED, final_val_acc=0.8,
            test_acc=0.79, wall_seconds=10.0, device_hours=0.01), EndedBy.DRIVER)
        raise KeyboardInterrupt

    monkeypatch.setattr(grid_run, "run_grid", first_trial_then_interrupt)
    code = launch_cli.main(["--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", str(tmp_path),
                           "--tracking-uri", "http://127.0.0.1:9"])
    assert code == ExitStatus.INTERRUPTED
    assert ended == ["KILLED"] and closed == [0]
    (run_dir,) = (tmp_path / "smoke").iterdir()
    assert logs == [run_dir / "logs" / "ray.log"]
    table = (run_dir / "table.txt").read_text()
    assert "(interrupted)" in table and "0.7900" in table
    assert (run_dir / "report" / "index.html").is_file()


def _nothing_starts(monkeypatch) -> None:
    """Make each first step of a launch (the run folder, Ray, the local MLflow server) fail the test."""
    from autowu_bench.platform.execution import ray_cluster
    from autowu_bench.platform.tracking.server import LocalMlflowServer

    monkeypatch.setattr(launch_plan, "new_run_dir", _no_start)
    monkeypatch.setattr(ray_cluster, "ray_session", _no_start)
    monkeypatch.setattr(LocalMlflowServer, "launch", _no_start)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--num-cpus", "0"], None, "argument --num-cpus: '0' is not a number of CPUs; give a whole number of at least 1"),
    (["--num-cpus", "two"], None, "argument --num-cpus: 'two' is not a number of CPUs"),
    (["--num-cpus", "2", "--address", "auto"], None, "--num-cpus sizes a new local Ray instance, but --address 'auto'"),
    (["--num-cpus", "2"], "auto", "(--address defaults to AUTOWU_RAY_ADDRESS); drop one of them"),
    (["--address", "head"], None, "argument --address: 'head' (from the flag or AUTOWU_RAY_ADDRESS) is not a Ray address"),
    (["--address", "http://head:8265"], None, "is not a Ray address; give 'auto'"),
    ([], "10.0.0.5", "argument --address: '10.0.0.5' (from the flag or AUTOWU_RAY_ADDRESS) is not a Ray address"),
])
def test_a_bad_num_cpus_or_address_exits_2_naming_the_flag(argv, env, message, monkeypatch, capsys):
    if env is None:
        monkeypatch.delenv("AUTOWU_RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("AUTOWU_RAY_ADDRESS", env)
    with pytest.raises(SystemExit) as info:
        launch_cli.main(argv)
    assert info.value.code == ExitStatus.INVALID
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_bad_suite_file_exits_2_with_one_message(tmp_path, monkeypatch, capsys):
    _nothing_starts(monkeypatch)
    for name, content, message in [
        ("twice.yaml", b"name: a\nepochs: 2\nname: b\n", "not valid YAML: line 3, column 1: key 'name' given twice"),
        ("latin1.yaml", b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 9); save the file as UTF-8"),
        ("list.yaml", b"- name: a\n", "the file holds list, not a mapping of suite fields"),
    ]:
        (tmp_path / name).write_bytes(content)
        assert launch_cli.main(["--suite", str(tmp_path / name)]) == ExitStatus.INVALID
        out, err = capsys.readouterr()
        assert err.startswith("autowu-bench: the suite cannot run: 1 problem(s) in ") and message in err, err
        assert out == ""


@pytest.mark.parametrize("bad", ["data=5", "data.root=[1, 2]", 'data.root="/tmp/a\\0b"', "data.root=~no-such-user-here/d",
                                 "data={root: /a, root: /b}", "data.val_size=-1", "data.rot=/d"])
def test_download_with_a_malformed_data_section_exits_2_and_downloads_nothing(bad, monkeypatch, capsys):
    _nothing_starts(monkeypatch)
    downloads = []
    monkeypatch.setattr("autowu_bench.platform.suite.loader.download_missing_data", downloads.append)
    code = launch_cli.main(["--suite", "smoke", "--set", "workloads=[cifar10-resnet18]", "--set", bad, "--download"])
    err = capsys.readouterr().err
    assert code == ExitStatus.INVALID and downloads == []
    assert "the suite cannot run: 1 problem(s)" in err and "data" in err and "Traceback" not in err


def test_an_unreachable_cluster_and_tracking_server_exit_2_within_seconds_starting_nothing(
        fmnist_root, tmp_path, monkeypatch, capsys):
    _nothing_starts(monkeypatch)
    ray_port, mlflow_port = _closed_port(), _closed_port()
    started = time.monotonic()
    code = launch_cli.main(["--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", str(tmp_path),
                           "--address", f"127.0.0.1:{ray_port}", "--tracking-uri", f"http://127.0.0.1:{mlflow_port}"])
    out, err = capsys.readouterr()
    assert code == ExitStatus.INVALID and time.monotonic() - started < 30
    assert "2 problem(s)" in err and out == ""
    assert f"tracking_uri 'http://127.0.0.1:{mlflow_port}': nothing answers" in err
    assert f"--address '127.0.0.1:{ray_port}': nothing answers" in err
    assert list(tmp_path.iterdir()) == []
    # a dry run lists the trials without reaching out: the cluster's addresses may resolve there only
    assert launch_cli.main(["--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", str(tmp_path),
                           "--tracking-uri", f"http://127.0.0.1:{mlflow_port}", "--dry-run"]) == ExitStatus.OK


def test_an_unwritable_results_folder_exits_2_and_is_a_dry_run_warning(fmnist_root, tmp_path, monkeypatch, capsys):
    _nothing_starts(monkeypatch)
    (tmp_path / "file").write_text("x")
    results = str(tmp_path / "file" / "runs")
    argv = ["--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", results,
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    assert launch_cli.main(argv) == ExitStatus.INVALID
    err = capsys.readouterr().err
    assert f"results '{results}': cannot write there ({tmp_path / 'file'} is a file, not a folder)" in err
    assert launch_cli.main([*argv, "--dry-run"]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert f"warning: results '{results}': cannot write there" in out and "exit status 2" in out


def test_too_little_free_disk_for_the_checkpoints_exits_2_with_the_numbers(fmnist_root, tmp_path, monkeypatch, capsys):
    from autowu_bench.platform.checks import environment

    _nothing_starts(monkeypatch)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(environment.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 10**6, 10**6))
    code = launch_cli.main(["--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", str(tmp_path),
                           "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err
    assert code == ExitStatus.INVALID
    assert "the trials' checkpoints need about" in err and "(6 trials x 2 kept" in err
    assert f"but {tmp_path} has 1 MB free" in err


def test_a_ray_that_does_not_start_is_exit_2_not_a_traceback(fmnist_root, tmp_path, monkeypatch, capsys):
    """The address answered the check, then ray.init failed (a version mismatch, say)."""
    import contextlib

    from autowu_bench.platform.execution import ray_cluster

    @contextlib.contextmanager
    def refuses(*args, **kwargs):
        raise ConnectionError("Version mismatch: the cluster runs Ray 2.9")
        yield

    monkeypatch.setattr(ray_cluster, "ray_session", refuses)
    code = launch_cli.main(["--suite", "smoke", "--set", f"data.root={fmnist_root}", "--results", str(tmp_path),
                           "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err
    assert code == ExitStatus.INVALID
    assert "Ray did not start (ConnectionError: Version mismatch: the cluster runs Ray 2.9); no trial started" in err


@pytest.mark.parametrize("command", [["run_suite.py"], ["autowu-bench"]], ids=["run_suite.py", "autowu-bench"])
def test_help_shows_the_examples_the_environments_defaults_and_the_exit_statuses(command):
    """The script at the repository's root and the installed console command are one command line."""
    if command == ["run_suite.py"]:
        argv, prog = [sys.executable, str(REPO / "run_suite.py")], "run_suite.py"
    else:  # installed by `pip install -e .` beside this interpreter (make venv)
        script = Path(sys.executable).parent / "autowu-bench"
        assert script.is_file(), f"{script} missing: the package's console entry point is not installed"
        argv, prog = [str(script)], "autowu-bench"
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"usage: {prog}" in text and "--resume RUN_DIR" in text
    assert "python run_suite.py --suite smoke --dry-run" in text and "ray job submit" in text
    assert "autowu-bench" in text
    for name in ("AUTOWU_RAY_ADDRESS", "MLFLOW_TRACKING_URI", "AUTOWU_RESULTS"):
        assert name in text
    assert "Exit status: 0 every trial ran to its end" in text and "130 interrupted" in text
    assert "``" not in text  # reST literals shown as plain backquotes


def test_list_names_every_packaged_suite_and_workload_and_starts_nothing(monkeypatch, capsys):
    from autowu_bench.platform.suite.loader import packaged_suites
    from autowu_bench.workloads.registry import workload_names

    _nothing_starts(monkeypatch)
    assert launch_cli.main(["--list"]) == ExitStatus.OK
    lines = capsys.readouterr().out.splitlines()
    suites = lines.index(next(line for line in lines if line.startswith("workloads")))
    rows = {line.split()[0]: line for line in lines[1:suites]}
    assert sorted(rows) == packaged_suites()
    assert "228 trials  cifar10-resnet18: 6 arms, batch 256..16384 (4 sizes), 200 ep, 3 seeds, 4 GPU" in rows["paper-cifar10"]
    assert " 20 trials  fmnist-mlp" in rows["quick"] and "7+18 trials" in rows["search-quick"]
    assert [line.split()[0] for line in lines[suites + 1:]] == workload_names()


def test_version_prints_the_package_version_and_exits_0(capsys):
    from autowu_bench import __version__

    with pytest.raises(SystemExit) as info:
        launch_cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"autowu-bench {__version__}"


def test_a_bad_set_is_named_as_typed_with_its_fix(monkeypatch, capsys):
    _nothing_starts(monkeypatch)
    code = launch_cli.main(["--suite", "smoke", "--set", "arms.baseline.peak_lr=0.1", "--dry-run"])
    err = capsys.readouterr().err
    assert code == ExitStatus.INVALID
    assert "the suite cannot run: 1 problem(s) in the --set values:" in err and "smoke.yaml" not in err
    assert "--set arms.baseline.peak_lr=0.1: no such field 'peak_lr' (got 0.1); fix the key (did you mean " \
           "'peak_lrs'?)" in err and "arms[" not in err


def test_ui_opens_the_store_a_run_folder_names_wherever_it_is_typed(tmp_path, monkeypatch, capsys):
    """``--ui RUN_DIR`` (``make ui RUN=...``) serves the mlflow.db that the run's own server wrote, not the
    one in the folder the command is typed in; no browser or server is started here."""
    from autowu_bench.launch import ui
    from autowu_bench.platform.records.run_manifest import RunManifest

    started = []
    def execv(path, argv):  # the real one replaces this process with mlflow's and never returns
        started.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(ui.os, "execv", execv)
    store, run_dir, elsewhere = tmp_path / "repo", tmp_path / "runs" / "quick" / "20261207-101500", tmp_path / "cwd"
    for folder in (store, run_dir, elsewhere):
        folder.mkdir(parents=True)
    RunManifest("quick", mlflow_store=str(store), parent_run_id="p").write(run_dir)
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SystemExit):
        launch_cli.main(["--ui", str(run_dir)])
    (argv,) = started
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{store / 'mlflow.db'}"
    assert argv[argv.index("--artifacts-destination") + 1] == str(store / "mlflow-artifacts")
    assert argv[argv.index("ui") + 1:argv.index("--backend-store-uri")] == ["--host", "127.0.0.1", "--port", "5000"]
    assert f"MLflow UI over sqlite:///{store / 'mlflow.db'} at http://127.0.0.1:5000" in capsys.readouterr().out
    # without a run folder: ./mlflow.db of the folder it is typed in (what `make ui` opened before)
    assert ui.ui_command(None)[-3:] == [f"sqlite:///{elsewhere / 'mlflow.db'}", "--artifacts-destination",
                                        str(elsewhere / "mlflow-artifacts")]
    # a run that logged to a server: where to browse, nothing started
    RunManifest("quick", tracking_uri="http://10.0.0.5:5000").write(run_dir)
    assert launch_cli.main(["--ui", str(run_dir)]) == ExitStatus.OK and len(started) == 1
    assert "the run logged to the MLflow server http://10.0.0.5:5000" in capsys.readouterr().out
    # a folder that is no run folder: exit 2, saying so
    assert launch_cli.main(["--ui", str(elsewhere)]) == ExitStatus.INVALID
    assert "is not a run folder" in capsys.readouterr().err


def test_make_ui_passes_the_run_folder():
    text = (REPO / "Makefile").read_text()
    assert "run_suite.py --ui $(RUN)" in text
