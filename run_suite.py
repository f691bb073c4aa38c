#!/usr/bin/env python3
"""Run a suite: AutoWU against a grid-searched linear warmup, every trial on Ray Tune + Ray Train.

    python run_suite.py                          # the `quick` suite on a new local Ray instance
    python run_suite.py --suite smoke --dry-run  # validate and list the trials, start nothing
    python run_suite.py --suite suites/my.yaml --set epochs=5 --set data.root=/data --only 4096
    python run_suite.py --sync runs/quick/20250101-120000   # send what MLflow missed while it was away
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python run_suite.py --address auto \\
        --suite paper-cifar10 --results /mnt/shared/runs --tracking-uri http://HEAD:5000   # a Ray job
    python run_suite.py --resume runs/quick/20261201-101500   # go on with an interrupted run

Command-line flags override the suite file; ``--set key=value`` overrides any field (dotted path,
YAML value); ``--only`` keeps the named arms, batch sizes or workloads. Defaults for --address,
--tracking-uri and --results come from AUTOWU_RAY_ADDRESS, MLFLOW_TRACKING_URI and AUTOWU_RESULTS
(cluster.yaml sets them on the head node).

Exit status: 0 every trial ran to its end (finished, or diverged: a loss that blew up is a result);
2 the suite, a flag or this machine cannot run it (nothing started), or the folder given to --resume
cannot be resumed; 3 the suite ran but some trials failed
with an error (see the table and their summary.json); 4 every trial ran to its end but tracking is
incomplete: MLflow was away at the end, the tables and the report are written in the run folder and
what MLflow missed waits in its spools (``--sync RUN_DIR`` sends it; failed trials take precedence:
3); 130 interrupted (SIGINT or SIGTERM). ``--sync``: 0 when nothing is left to send, 4 otherwise, 2
when the folder is not a run folder or names no tracking store.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from autowu_bench.platform.checks.environment import (
    address_endpoint,
    address_problems,
    checkpoint_disk_problems,
    environment_problems,
    tracking_problems,
)
from autowu_bench.platform.records.spec import TrialKind
from autowu_bench.platform.suite.expansion import expand, search_jobs
from autowu_bench.platform.checks.data import data_problems
from autowu_bench.platform.checks.schedules import schedule_warnings
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.loader import load_suite, suite_to_yaml
from autowu_bench.workloads.optimizers import optimizer_note

EXIT_OK, EXIT_INVALID, EXIT_TRIALS_FAILED, EXIT_TRACKING_INCOMPLETE, EXIT_INTERRUPTED = 0, 2, 3, 4, 130
# How long the suite's end waits for MLflow to take what the trials spooled: long enough for the local
# server's watchdog to restart a server that died; a remote one gets less.
END_PATIENCE_LOCAL, END_PATIENCE_REMOTE = 60.0, 10.0
SYNC_PATIENCE = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_suite.py", description=__doc__.split("\n\n")[0],
        # The examples, the environment's defaults and the exit statuses: the rest of this docstring.
        epilog=__doc__.split("\n\n", 1)[1].replace("``", "`"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--suite", help="packaged suite name or a YAML path (default: quick)")
    parser.add_argument("--address", default=os.environ.get("AUTOWU_RAY_ADDRESS") or None, type=_ray_address,
                        help="Ray cluster to join ('auto', 'ray://host:10001'); default: start a new local Ray")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="MLflow tracking URI; default: the suite's, else a local server over ./mlflow.db")
    parser.add_argument("--results", help="results folder (overrides the suite's `results`; default: $AUTOWU_RESULTS)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite field, e.g. --set epochs=5 --set arms.baseline.peak_lrs=[0.001,0.01]")
    parser.add_argument("--only", action="append", default=[], metavar="NAMES",
                        help="keep only these arms, batch sizes or workloads (comma list; repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="validate the suite and list its trials (missing data: a warning); start nothing")
    parser.add_argument("--num-cpus", type=_cpu_count, default=None, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--verbose", action="store_true",
                        help="one line per reported epoch per trial (default: a live progress line and the trials' ends)")
    parser.add_argument("--download", action="store_true",
                        help="fetch data sets missing under data.root with torchvision before starting (not ImageNet)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="go on with an interrupted run: trials that ended are kept, the others continue from "
                             "their last checkpoint, in the same MLflow runs (--address, --tracking-uri, --num-cpus "
                             "and --verbose may be given again; the suite is the run's)")
    parser.add_argument("--sync", metavar="RUN_DIR", default=None,
                        help="send what MLflow missed (the run folder's spools) to the run's tracking store, then exit")
    args = parser.parse_args(argv)
    if args.num_cpus is not None and args.address is not None:
        parser.error(f"--num-cpus sizes a new local Ray instance, but --address {args.address!r} joins a cluster "
                     "(--address defaults to AUTOWU_RAY_ADDRESS); drop one of them")
    # Which of these were given matters to --resume, which refuses to change a run's suite or folder.
    args.suite_given, args.results_given = args.suite is not None, args.results is not None
    args.suite = args.suite or "quick"
    args.results = args.results or os.environ.get("AUTOWU_RESULTS")
    return args


def _ray_address(text: str) -> str:
    """argparse type of --address (its default from AUTOWU_RAY_ADDRESS too): the form only; whether the
    cluster answers is checked at launch (``environment.address_problems``)."""
    try:
        address_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} (from the flag or AUTOWU_RAY_ADDRESS) is {exc}") from None
    return text


def _cpu_count(text: str) -> int:
    if not text.strip().isascii() or not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of CPUs; give a whole number of at least 1")
    return int(text)


def resolve_suite(args: argparse.Namespace):
    """The suite the flags describe: loaded, overridden, validated, selected (SuiteError on any problem)."""
    return load_suite(args.suite, sets=args.sets, only=args.only, tracking_uri=args.tracking_uri,
                      results=args.results, download=args.download)


def describe(suite, trials, jobs=()) -> str:
    """The trial list that --dry-run prints (and every run prints before it starts), then the searches."""
    searched = sum(job.search.trials for job in jobs)
    lines = [f"suite {suite.name}: {len(trials)} trials" + (f" + {len(jobs)} Tune search{'es' if len(jobs) != 1 else ''} of {searched} trials"
                                                             if jobs else "")
             + f"  (workloads {suite.workloads}, batch sizes {suite.batch_sizes}, arms {[a.name for a in suite.arms]}, "
             f"seeds {suite.seeds})"]
    width = max([len(t.trial_id) for t in trials] + [len(j.name) for j in jobs] + [1])
    for t in trials:
        if t.kind is TrialKind.AUTOWU:
            what = " ".join([f"AutoWU {t.decay}"] + [f"{k}={v}" for k, v in sorted(t.autowu.items())])
        else:
            decay = t.decay or "cosine"
            decay += f" {t.decay_power:g}" if t.decay_power is not None else ""
            warmup = f"linear warmup {t.warmup_epochs:g} ep to lr {t.peak_lr:.4g}" if t.warmup_epochs else \
                f"no warmup, lr {t.peak_lr:.4g}"
            what = f"{warmup}, {decay}" + (" (untuned default)" if t.is_default else "")
        note = optimizer_note(t.optimizer)
        what += f" [{note}]" if note else ""
        lines.append(f"  {t.trial_id:<{width}}  {t.epochs} ep  {t.num_workers} x {'GPU' if t.use_gpu else 'CPU'} "
                     f"worker(s)  {t.optimizer}  {what}")
    for job in jobs:
        s = job.search
        space = ", ".join(f"{k} {v.model_dump() if hasattr(v, 'model_dump') else v}" for k, v in s.space.items())
        asha = "" if s.scheduler is None else f", ASHA grace {s.scheduler.grace_period} x{s.scheduler.reduction_factor:g}"
        lines.append(f"  {job.name:<{width}}  {job.base.epochs} ep  search: {s.searcher}{asha}, {s.trials} trials, "
                     f"seed {s.seed}, over {space}")
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


def resume_hint(run_dir: Path, args: argparse.Namespace) -> str:
    """What to do if the run stops (printed at the start and at an interruption): the command that picks
    ``run_dir`` up again."""
    return f"resume with: {resume_command(run_dir, args)}"


def resume_command(run_dir: Path, args: argparse.Namespace) -> str:
    """The command that picks ``run_dir`` up again."""
    words = ["python", "run_suite.py", "--resume", str(run_dir)]
    if args.address:
        words += ["--address", args.address]
    if args.num_cpus is not None:
        words += ["--num-cpus", str(args.num_cpus)]
    return " ".join(shlex.quote(w) for w in words)


class _Stop:
    """SIGINT and SIGTERM stop the suite: the first raises KeyboardInterrupt in the main thread (the
    trials are stopped, the tables of what finished written, the MLflow runs marked KILLED, exit 130);
    a second one, while that clean-up runs, stops at once: this process's children are killed and it
    exits 130 (the run folder can still be resumed; the MLflow runs stay RUNNING until then)."""

    def __init__(self) -> None:
        self.signals = 0
        self.session = None  # the RaySession whose processes a second signal kills
        self.run_dir: Path | None = None

    def install(self, session, run_dir: Path) -> None:
        self.session, self.run_dir = session, run_dir
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signals += 1
        if self.signals == 1:
            from autowu_bench.platform.records.run_record import mark_interrupted

            # First, before anything stops: the trials that fail from here on were interrupted.
            try:
                mark_interrupted(self.run_dir, signal.Signals(signum).name)
            except OSError as exc:  # a full disk: the stop goes on (their runs may then end FAILED)
                print(f"run_suite.py: {exc}", file=sys.stderr, flush=True)
            print(f"\nrun_suite.py: {signal.Signals(signum).name}: stopping the trials (again to stop at once)",
                  file=sys.stderr, flush=True)
            raise KeyboardInterrupt(signal.Signals(signum).name)
        if self.session is not None:
            self.session.kill()
        # The MLflow server's watchdog sees its owner gone and stops the server.
        print("run_suite.py: stopped at once", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)


def _new_run(args: argparse.Namespace):
    """(suite, trials, run folder, None) of a new run, after validation and the trial list; None for --dry-run."""
    suite = resolve_suite(args)
    trials = expand(suite)
    # What the suite needs here: its data, a results folder with room for its checkpoints, and at
    # launch a Ray cluster and an MLflow server that answer. All checked before anything starts.
    missing = data_problems(suite) + environment_problems(suite, trials, address=args.address,
                                                          network=not args.dry_run)
    if missing and not args.dry_run:
        raise SuiteError(missing, source=suite.source)
    print(describe(suite, trials, search_jobs(suite)), flush=True)
    for warning in schedule_warnings(trials):
        print(f"warning: {warning}", flush=True)
    if args.dry_run:
        for problem in missing:  # the data and folders may be on the cluster only
            print(f"warning: {problem}", flush=True)
        if missing:
            print("warning: without that a launch stops with exit status 2 before starting", flush=True)
        return None
    from autowu_bench.platform.records import tables

    run_dir = new_run_dir(suite.results, suite.name)
    (run_dir / "suite.yaml").write_text(suite_to_yaml(suite))
    tables.write_specs(run_dir, trials)
    return suite, trials, run_dir, None


def _resumed_run(args: argparse.Namespace):
    """(suite, trials, run folder, its RunRecord) of ``--resume RUN_DIR``: the suite and trials as that
    run resolved them; SuiteError when the folder cannot be resumed."""
    from autowu_bench.platform.records import tables
    from autowu_bench.platform.records.run_record import RunRecord

    fixed = [flag for flag, given in (("--suite", args.suite_given), ("--set", args.sets), ("--only", args.only),
                                      ("--results", args.results_given), ("--download", args.download),
                                      ("--dry-run", args.dry_run)) if given]
    if fixed:
        raise SuiteError([f"--resume: {', '.join(fixed)} cannot change a run being resumed (its suite, trials "
                          "and folder are fixed); drop them, or start a new run without --resume"])
    run_dir = Path(args.resume).expanduser().absolute()
    try:
        record = RunRecord.read(run_dir)
    except ValueError as exc:
        raise SuiteError([f"--resume: {exc}"]) from None
    suite = load_suite(run_dir / "suite.yaml", tracking_uri=args.tracking_uri)
    trials = tables.read_specs(run_dir)
    if not trials:
        raise SuiteError([f"--resume: {run_dir} has no trial list ({tables.SPECS_FILE}); it cannot be resumed"])
    missing = (data_problems(suite) + checkpoint_disk_problems(trials, str(run_dir))
               + tracking_problems(suite.tracking_uri, network=True) + address_problems(args.address))
    if missing:
        raise SuiteError(missing, source=suite.source)
    return suite, trials, run_dir, record


def run(args: argparse.Namespace) -> int:
    try:
        planned = _resumed_run(args) if args.resume else _new_run(args)
    except SuiteError as exc:
        print(f"run_suite.py: the suite cannot run: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if planned is None:
        return EXIT_OK
    suite, trials, run_dir, record = planned

    from autowu_bench.dashboards import publish
    from autowu_bench.platform.execution import ray_cluster
    from autowu_bench.platform.execution import runner
    from autowu_bench.platform.execution import search
    from autowu_bench.platform.tracking.client import RunStatus, reopen_run, start_parent_run
    from autowu_bench.platform.tracking.lifecycle import spool_summary
    from autowu_bench.platform.tracking.server import MAKE_UI_URL, LocalMlflowServer
    from autowu_bench.platform.tracking.sync import send_spools
    from autowu_bench.platform.records.outcome import TrialStatus
    from autowu_bench.platform.records.run_record import RunRecord

    jobs = search_jobs(suite)
    # A search's trials (those of an earlier run of the folder too) are its job's: it runs again, and
    # replays those that ended (search.recorded_reports).
    fixed = [t for t in trials if not any(job.owns(t) for job in jobs)]
    pending = runner.pending_trials(str(run_dir), fixed)
    print(f"results: {run_dir}", flush=True)
    if record is not None:
        print(f"resuming: {len(fixed) - len(pending)} of {len(fixed)} trials ended before, "
              f"{len(pending)} to run: {[t.trial_id for t in pending]}", flush=True)
        if jobs:
            print(f"resuming: the searches {[job.name for job in jobs]} run again with their seeds; their trials "
                  "that ended are replayed to the searcher, not trained again", flush=True)
    print(f"if it stops, {resume_hint(run_dir, args)}", flush=True)

    stop = _Stop()
    failed: list[str] = []
    with ExitStack() as stack:
        server = None
        tracking_uri = suite.tracking_uri

        def launch_server() -> LocalMlflowServer:
            # A resumed run's server serves the store the run began in; stopped on any exit.
            store = record.mlflow_store if record is not None and record.mlflow_store else Path.cwd()
            launched = LocalMlflowServer(store, host=ray_cluster.tracking_host(args.address),
                                         log_path=run_dir / "mlflow-server.log").launch()
            stack.callback(launched.stop)
            return launched

        if tracking_uri is None and args.address is None:
            server = launch_server()  # first, so that its start-up overlaps Ray's
        try:
            session = stack.enter_context(ray_cluster.ray_session(args.address, num_cpus=args.num_cpus))
        except (ConnectionError, RuntimeError, ValueError) as exc:  # it answered the check, then ray.init failed
            print(f"run_suite.py: Ray did not start ({type(exc).__name__}: {exc}); no trial started",
                  file=sys.stderr)
            return EXIT_INVALID
        if tracking_uri is None and args.address is not None:
            # Once joined: on the address Ray knows this node by, which the trials on other nodes reach.
            server = launch_server()
        stop.install(session, run_dir)  # after ray.init, which installs its own SIGTERM handler
        problems = ray_cluster.cluster_problems(trials + [job.base for job in jobs], can_grow=args.address is not None)
        if args.address is not None and server is None:
            problems += [p for p in [ray_cluster.tracking_reach_problem(tracking_uri)] if p]
            if warning := ray_cluster.tracking_reach_warning(tracking_uri):
                print(f"warning: {warning}", file=sys.stderr, flush=True)
        if problems:
            print("run_suite.py: the cluster cannot run the suite:\n" + "\n".join(f"  - {p}" for p in problems),
                  file=sys.stderr)
            return EXIT_INVALID
        if server is not None:
            tracking_uri = server.wait_ready().uri
        print(f"MLflow: {tracking_uri} (afterwards: make ui)", flush=True)
        if server is not None and server.host != "127.0.0.1":
            print(f"note: the suite's MLflow server listens on {server.host}, without authentication, for the "
                  "cluster's nodes; keep the port closed to the outside, or pass --tracking-uri", flush=True)
        # The local server stops with the suite: the report links to what `make ui` serves afterwards.
        ui = MAKE_UI_URL if server is not None else None
        if record is not None and record.parent_run_id is not None:
            parent = record.parent_run_id
            # What MLflow missed before the interruption goes first, in order (each trial's spool, then
            # the parent's, which may end the parent KILLED); then the parent is RUNNING again.
            left = send_spools(run_dir, tracking_uri, patience=END_PATIENCE_REMOTE)
            if not left.complete:
                print(f"warning: tracking of the earlier run still incomplete ({left.describe()}); it stays "
                      "spooled and is sent at the end", file=sys.stderr, flush=True)
            reopen_run(tracking_uri, parent)
        else:
            parent = start_parent_run(
                tracking_uri, suite.name, run_name=f"{suite.name} {run_dir.name}", suite_file=suite.source,
                resolved_suite=suite_to_yaml(suite),
                params={"suite": suite.name, "trials": len(trials), "run_dir": str(run_dir), "address": args.address},
            )
        RunRecord(suite.name, tracking_uri=suite.tracking_uri, address=args.address, parent_run_id=parent,
                  mlflow_store=None if server is None else str(server.workdir)).write(run_dir)
        status, started = RunStatus.FAILED, time.time()
        patience = 0.0
        try:
            runner.run_trials(
                pending, run_dir=str(run_dir), tracking_uri=tracking_uri, parent_run_id=parent,
                max_concurrent=suite.resources.max_concurrent_trials, verbose=args.verbose,
            )
            for job in jobs:  # each search is its own Tune job; its trials join `trials` as they start
                search.run_search(job, run_dir=str(run_dir), tracking_uri=tracking_uri, parent_run_id=parent,
                                  specs=trials, verbose=args.verbose,
                                  default_concurrency=(suite.resources.max_concurrent_trials
                                                       or ray_cluster.default_concurrency([job.base])))
            outcomes = runner.collect_outcomes(trials, str(run_dir))
            # What the trials left spooled first, waiting for MLflow (a local server its watchdog is
            # restarting), so that the report can link to their runs.
            patience = END_PATIENCE_LOCAL if server is not None else END_PATIENCE_REMOTE
            if not send_spools(run_dir, tracking_uri, patience=patience).complete:
                patience = 0.0  # waited once already: the end below tries once more
            text = publish(run_dir, title=f"{suite.name}: test accuracy, mean (std) over seeds  [{run_dir}]",
                           tracking_uri=tracking_uri, parent_run_id=parent, tracking_ui=ui)
            print("\n" + text, flush=True)
            # A diverged trial ended as designed (its loss blew up); only errors count as failures.
            failed = [o.trial_id for o in outcomes if o.status is TrialStatus.FAILED]
            spool_summary(run_dir, parent, {
                "trials": len(trials), "trials_failed": len(failed),
                "device_hours": float(sum(o.device_hours for o in outcomes)),
                "wall_seconds": time.time() - started,
            })
            status = RunStatus.FINISHED
        except search.SearchReplayError as exc:
            session.close()
            print(f"run_suite.py: {exc}", file=sys.stderr)
            return EXIT_INVALID
        except KeyboardInterrupt:
            status = RunStatus.KILLED
            session.close()  # the trials stop before the tables of what finished are collected
            try:
                publish(run_dir, title=f"{suite.name} (interrupted): test accuracy, mean (std) over seeds  [{run_dir}]",
                        tracking_uri=tracking_uri, parent_run_id=parent, tracking_ui=ui)
            except Exception as exc:  # noqa: BLE001 - the interrupt, not this, is what the user must see
                print(f"run_suite.py: the tables of the interrupted run were not written ({exc})", file=sys.stderr)
            print(f"run_suite.py: interrupted; {resume_hint(run_dir, args)}", file=sys.stderr)
            raise
        finally:
            tracked = end_tracking(run_dir, tracking_uri, parent, status, patience=0.0 if status == RunStatus.KILLED else patience)
    if failed:
        print(f"{len(failed)} of {len(trials)} trials did not finish: {failed}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return EXIT_OK if tracked.complete else EXIT_TRACKING_INCOMPLETE


def end_tracking(run_dir: Path, tracking_uri: str, parent: str, status: str, *, patience: float):
    """The suite's end in MLflow: the parent run's end spooled after everything else (its children left
    RUNNING closed, then its status), then every spool of the run folder sent, waiting up to
    ``patience`` seconds for MLflow; says on stderr what is left and how to send it. Returns
    ``tracking.sync.send_spools``' report; never raises for MLflow."""
    from autowu_bench.platform.tracking.client import RunStatus
    from autowu_bench.platform.tracking.lifecycle import spool_end
    from autowu_bench.platform.tracking.sync import send_spools

    spool_end(run_dir, parent, status, RunStatus.KILLED if status == RunStatus.KILLED else RunStatus.FAILED)
    report = send_spools(run_dir, tracking_uri, patience=patience)
    if not report.complete:
        print(f"run_suite.py: tracking is incomplete: MLflow at {tracking_uri} did not take everything "
              f"({report.describe()}). The tables and the report are in {run_dir}; send the rest with: "
              f"python run_suite.py --sync {run_dir}", file=sys.stderr)
    return report


def sync(args: argparse.Namespace) -> int:
    """``--sync RUN_DIR``: send what the run folder's spools hold to the run's tracking store (a new local
    server over the folder the suite's server used, else the suite's tracking URI, else --tracking-uri)."""
    from autowu_bench.platform.tracking.server import LocalMlflowServer
    from autowu_bench.platform.tracking.sync import send_spools
    from autowu_bench.platform.records.run_record import RunRecord

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
        report = send_spools(run_dir, tracking_uri, patience=SYNC_PATIENCE)
    print(f"run_suite.py --sync {run_dir}: {report.describe()}", flush=True)
    return EXIT_OK if report.complete else EXIT_TRACKING_INCOMPLETE


def main(argv: list[str] | None = None) -> int:
    from autowu_bench.platform.tracking.env import apply_process_env

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
