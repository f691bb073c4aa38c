#!/usr/bin/env python3
"""Run a suite: AutoWU against a grid-searched linear warmup, every trial on Ray Tune + Ray Train.

    python run_suite.py                          # the `quick` suite on a new local Ray instance
    python run_suite.py --suite smoke --dry-run  # validate and list the trials, start nothing
    python run_suite.py --suite suites/my.yaml --set epochs=5 --set data.root=/data --only 4096
    python run_suite.py --sync runs/quick/20250101-120000   # send what MLflow missed while it was away
    ray submit cluster.yaml run_suite.py -- --suite paper-cifar10   # on a cluster (cluster.yaml)

Command-line flags override the suite file; ``--set key=value`` overrides any field (dotted path,
YAML value); ``--only`` keeps the named arms, batch sizes or workloads. Defaults for --address,
--tracking-uri and --results come from AUTOWU_RAY_ADDRESS, MLFLOW_TRACKING_URI and AUTOWU_RESULTS
(cluster.yaml sets them on the head node).

Exit status: 0 every trial ran to its end (finished, or diverged: a loss that blew up is a result);
2 the suite or the cluster cannot run it (nothing started); 3 the suite ran but some trials failed
with an error (see the table and their summary.json); 4 every trial ran to its end but tracking is
incomplete: MLflow was away at the end, the tables and the report are written in the run folder and
what MLflow missed waits in its spools (``--sync RUN_DIR`` sends it; failed trials take precedence:
3); 130 interrupted (SIGINT or SIGTERM). ``--sync``: 0 when nothing is left to send, 4 otherwise, 2
when the folder is not a run folder or names no tracking store.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from autowu_bench.platform.expansion import expand
from autowu_bench.platform.preflight import data_problems, schedule_warnings
from autowu_bench.platform.suite_errors import SuiteError
from autowu_bench.platform.suites import load_suite, suite_to_yaml

EXIT_OK, EXIT_INVALID, EXIT_TRIALS_FAILED, EXIT_TRACKING_INCOMPLETE, EXIT_INTERRUPTED = 0, 2, 3, 4, 130
# How long the suite's end waits for MLflow to take what the trials spooled: long enough for the local
# server's watchdog to restart a server that died; a remote one gets less.
END_PATIENCE_LOCAL, END_PATIENCE_REMOTE = 60.0, 10.0
SYNC_PATIENCE = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_suite.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--suite", default="quick", help="packaged suite name or a YAML path (default: quick)")
    parser.add_argument("--address", default=os.environ.get("AUTOWU_RAY_ADDRESS"),
                        help="Ray cluster to join ('auto', 'ray://host:10001'); default: start a new local Ray")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="MLflow tracking URI; default: the suite's, else a local server over ./mlflow.db")
    parser.add_argument("--results", default=os.environ.get("AUTOWU_RESULTS"),
                        help="results folder (overrides the suite's `results`)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite field, e.g. --set epochs=5 --set arms.baseline.peak_lrs=[0.001,0.01]")
    parser.add_argument("--only", action="append", default=[], metavar="NAMES",
                        help="keep only these arms, batch sizes or workloads (comma list; repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="validate the suite and list its trials (missing data: a warning); start nothing")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--verbose", action="store_true",
                        help="one line per reported epoch per trial (default: a live progress line and the trials' ends)")
    parser.add_argument("--download", action="store_true",
                        help="fetch data sets missing under data.root with torchvision before starting (not ImageNet)")
    parser.add_argument("--sync", metavar="RUN_DIR", default=None,
                        help="send what MLflow missed (the run folder's spools) to the run's tracking store, then exit")
    return parser.parse_args(argv)


def resolve_suite(args: argparse.Namespace):
    """The suite the flags describe: loaded, overridden, validated, selected (SuiteError on any problem)."""
    return load_suite(args.suite, sets=args.sets, only=args.only, tracking_uri=args.tracking_uri,
                      results=args.results, download=args.download)


def describe(suite, trials) -> str:
    """The trial list that --dry-run prints (and every run prints before it starts)."""
    lines = [f"suite {suite.name}: {len(trials)} trials  (workloads {suite.workloads}, batch sizes "
             f"{suite.batch_sizes}, arms {[a.name for a in suite.arms]}, seeds {suite.seeds})"]
    width = max(len(t.trial_id) for t in trials)
    for t in trials:
        if t.kind == "autowu":
            what = " ".join([f"AutoWU {t.decay}"] + [f"{k}={v}" for k, v in sorted(t.autowu.items())])
        else:
            what = f"linear warmup {t.warmup_epochs:g} ep to lr {t.peak_lr:.4g}" + (" (untuned default)" if t.is_default else "")
        lines.append(f"  {t.trial_id:<{width}}  {t.epochs} ep  {t.num_workers} x {'GPU' if t.use_gpu else 'CPU'} "
                     f"worker(s)  {t.optimizer}  {what}")
    return "\n".join(lines)


def new_run_dir(results: str, suite_name: str) -> Path:
    base = Path(results).expanduser().absolute() / suite_name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = base / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) unwinds like Ctrl-C: runs marked KILLED, servers stopped."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    try:
        suite = resolve_suite(args)
        trials = expand(suite)
        missing = data_problems(suite)
        if missing and not args.dry_run:
            raise SuiteError(missing, source=suite.source)
    except SuiteError as exc:
        print(f"run_suite.py: the suite cannot run: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(describe(suite, trials), flush=True)
    for warning in schedule_warnings(trials):
        print(f"warning: {warning}", flush=True)
    if args.dry_run:
        for problem in missing:  # the data may be on the cluster only
            print(f"warning: {problem}", flush=True)
        if missing:
            print("warning: without that data a launch stops with exit status 2 before starting", flush=True)
        return EXIT_OK

    from autowu_bench.dashboards import publish
    from autowu_bench.platform import ray_cluster, results, runner, tracking
    from autowu_bench.platform.mlflow_server import MAKE_UI_URL, LocalMlflowServer
    from autowu_bench.platform.outcome import TrialStatus
    from autowu_bench.platform.run_record import RunRecord

    run_dir = new_run_dir(suite.results, suite.name)
    (run_dir / "suite.yaml").write_text(suite_to_yaml(suite))
    results.write_specs(run_dir, trials)
    print(f"results: {run_dir}", flush=True)

    with ExitStack() as stack:
        server = None
        tracking_uri = suite.tracking_uri
        if tracking_uri is None:
            # Launched first so that its start-up overlaps Ray's; stopped on any exit.
            server = LocalMlflowServer(Path.cwd(), log_path=run_dir / "mlflow-server.log").launch()
            stack.callback(server.stop)
        stack.enter_context(ray_cluster.ray_session(args.address, num_cpus=args.num_cpus))
        _interrupt_on_sigterm()  # after ray.init, which installs its own SIGTERM handler
        problems = ray_cluster.cluster_problems(trials, can_grow=args.address is not None)
        if problems:
            print("run_suite.py: the cluster cannot run the suite:\n" + "\n".join(f"  - {p}" for p in problems),
                  file=sys.stderr)
            return EXIT_INVALID
        if server is not None:
            tracking_uri = server.wait_ready().uri
        print(f"MLflow: {tracking_uri} (afterwards: make ui)", flush=True)
        # The local server stops with the suite: the report links to what `make ui` serves afterwards.
        ui = MAKE_UI_URL if server is not None else None
        parent = tracking.start_parent_run(
            tracking_uri, suite.name, run_name=f"{suite.name} {run_dir.name}", suite_file=suite.source,
            resolved_suite=suite_to_yaml(suite),
            params={"suite": suite.name, "trials": len(trials), "run_dir": str(run_dir), "address": args.address},
        )
        RunRecord(suite.name, tracking_uri=suite.tracking_uri, address=args.address, parent_run_id=parent,
                  mlflow_store=None if server is None else str(server.workdir)).write(run_dir)
        status, started = "FAILED", time.time()
        patience = 0.0
        try:
            outcomes = runner.run_trials(
                trials, run_dir=str(run_dir), tracking_uri=tracking_uri, parent_run_id=parent,
                max_concurrent=suite.resources.max_concurrent_trials, verbose=args.verbose,
            )
            # What the trials left spooled first, waiting for MLflow (a local server its watchdog is
            # restarting), so that the report can link to their runs.
            patience = END_PATIENCE_LOCAL if server is not None else END_PATIENCE_REMOTE
            if not tracking.send_spools(run_dir, tracking_uri, patience=patience).complete:
                patience = 0.0  # waited once already: the end below tries once more
            text = publish(run_dir, title=f"{suite.name}: test accuracy, mean (std) over seeds  [{run_dir}]",
                           tracking_uri=tracking_uri, parent_run_id=parent, tracking_ui=ui)
            print("\n" + text, flush=True)
            # A diverged trial ended as designed (its loss blew up); only errors count as failures.
            failed = [o.trial_id for o in outcomes if o.status is TrialStatus.FAILED]
            tracking.spool_summary(run_dir, parent, {
                "trials": len(trials), "trials_failed": len(failed),
                "device_hours": float(sum(o.device_hours for o in outcomes)),
                "wall_seconds": time.time() - started,
            })
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            # What finished stays readable: the tables and the report of the trials that have a summary.
            try:
                publish(run_dir, title=f"{suite.name} (interrupted): test accuracy, mean (std) over seeds  [{run_dir}]",
                        tracking_uri=tracking_uri, parent_run_id=parent, tracking_ui=ui)
            except Exception as exc:  # noqa: BLE001 - the interrupt, not this, is what the user must see
                print(f"run_suite.py: the tables of the interrupted run were not written ({exc})", file=sys.stderr)
            raise
        finally:
            tracked = end_tracking(run_dir, tracking_uri, parent, status, patience=0.0 if status == "KILLED" else patience)
    if failed:
        print(f"{len(failed)} of {len(trials)} trials did not finish: {failed}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return EXIT_OK if tracked.complete else EXIT_TRACKING_INCOMPLETE


def end_tracking(run_dir: Path, tracking_uri: str, parent: str, status: str, *, patience: float):
    """The suite's end in MLflow: the parent run's end spooled after everything else (its children left
    RUNNING closed, then its status), then every spool of the run folder sent, waiting up to
    ``patience`` seconds for MLflow; says on stderr what is left and how to send it. Returns
    ``tracking.send_spools``' report; never raises for MLflow."""
    from autowu_bench.platform import tracking

    tracking.spool_end(run_dir, parent, status, "KILLED" if status == "KILLED" else "FAILED")
    report = tracking.send_spools(run_dir, tracking_uri, patience=patience)
    if not report.complete:
        print(f"run_suite.py: tracking is incomplete: MLflow at {tracking_uri} did not take everything "
              f"({report.describe()}). The tables and the report are in {run_dir}; send the rest with: "
              f"python run_suite.py --sync {run_dir}", file=sys.stderr)
    return report


def sync(args: argparse.Namespace) -> int:
    """``--sync RUN_DIR``: send what the run folder's spools hold to the run's tracking store (a new local
    server over the folder the suite's server used, else the suite's tracking URI, else --tracking-uri)."""
    from autowu_bench.platform import tracking
    from autowu_bench.platform.mlflow_server import LocalMlflowServer
    from autowu_bench.platform.run_record import RunRecord

    run_dir = Path(args.sync).expanduser().absolute()
    try:
        record = RunRecord.read(run_dir)
    except ValueError as exc:
        print(f"run_suite.py --sync: {exc}", file=sys.stderr)
        return EXIT_INVALID
    with ExitStack() as stack:
        if record.mlflow_store is not None:
            server = LocalMlflowServer(record.mlflow_store, log_path=run_dir / "mlflow-server.log")
            try:
                tracking_uri = stack.enter_context(server).uri
            except RuntimeError as exc:
                print(f"run_suite.py --sync: the MLflow server over {record.mlflow_store} did not start: {exc}",
                      file=sys.stderr)
                return EXIT_TRACKING_INCOMPLETE
        else:
            tracking_uri = record.tracking_uri or args.tracking_uri
            if tracking_uri is None:
                print(f"run_suite.py --sync: {run_dir}/run.json names no tracking store; pass --tracking-uri",
                      file=sys.stderr)
                return EXIT_INVALID
        report = tracking.send_spools(run_dir, tracking_uri, patience=SYNC_PATIENCE)
    print(f"run_suite.py --sync {run_dir}: {report.describe()}", flush=True)
    return EXIT_OK if report.complete else EXIT_TRACKING_INCOMPLETE


def main(argv: list[str] | None = None) -> int:
    from autowu_bench.platform.mlflow_env import apply_process_env

    apply_process_env()  # before anything imports MLflow; the server and Ray's processes get it from here
    try:
        args = parse_args(argv)
        if args.sync is not None:
            return sync(args)
        return run(args)
    except KeyboardInterrupt:
        print("run_suite.py: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
