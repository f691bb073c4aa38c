"""Run a suite: AutoWU against a grid-searched linear warmup, every trial on Ray Tune + Ray Train.

    python run_suite.py                          # the `quick` suite on a new local Ray instance
    python run_suite.py --list                   # the packaged suites and the workloads
    python run_suite.py --suite smoke --dry-run  # validate and list the trials, start nothing
    python run_suite.py --suite suites/my.yaml --set epochs=5 --set data.root=/data --only 4096
    python run_suite.py --sync runs/quick/20250101-120000   # send what MLflow missed while it was away
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python run_suite.py --address auto \\
        --suite paper-cifar10 --results /mnt/shared/runs --tracking-uri http://HEAD:5000   # a Ray job
    python run_suite.py --resume runs/quick/20261201-101500   # go on with an interrupted run
    python run_suite.py --ui runs/quick/20261201-101500       # the MLflow UI over that run's store

The installed command ``autowu-bench`` is the same as ``python run_suite.py``. Command-line flags
override the suite file; ``--set key=value`` overrides any field (dotted path, YAML value); ``--only``
keeps the named arms, batch sizes or workloads. Defaults for --address, --tracking-uri and --results
come from AUTOWU_RAY_ADDRESS, MLFLOW_TRACKING_URI and AUTOWU_RESULTS (cluster.yaml sets them on the head
node).

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
import sys
from contextlib import ExitStack
from pathlib import Path

from autowu_bench import __version__
from autowu_bench.launch.exit_status import ExitStatus
from autowu_bench.platform.checks.environment import address_endpoint
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.loader import load_suite
from autowu_bench.platform.suite.schema import Suite

# How long --sync waits for MLflow to answer before it leaves the rest spooled.
SYNC_PATIENCE = 30.0


def parse_args(argv: list[str] | None = None, prog: str = "autowu-bench") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0],
        # The examples, the environment's defaults and the exit statuses: the rest of this docstring.
        epilog=__doc__.split("\n\n", 1)[1].replace("``", "`"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--list", action="store_true",
                        help="list the packaged suites (name, trials, what they run) and the workloads, then exit")
    parser.add_argument("--suite", help="packaged suite name or a YAML path (default: quick; --list names them)")
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
                        help="one line per reported epoch per trial and Ray's own output (default: a live progress line and "
                             "the trials' ends; Ray's output goes to RUN_DIR/logs/ray.log)")
    parser.add_argument("--download", action="store_true",
                        help="fetch data sets missing under data.root with torchvision before starting (not ImageNet)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="go on with an interrupted run: trials that ended are kept, the others continue from "
                             "their last checkpoint, in the same MLflow runs (--address, --tracking-uri, --num-cpus "
                             "and --verbose may be given again; the suite is the run's)")
    parser.add_argument("--ui", metavar="RUN_DIR", nargs="?", const="", default=None,
                        help="the MLflow UI (127.0.0.1:5000) over the tracking store that RUN_DIR's run wrote to "
                             "(its run.json says where); without RUN_DIR over ./mlflow.db (make ui RUN=RUN_DIR)")
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
    args.prog = prog
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


def resolve_suite(args: argparse.Namespace) -> Suite:
    """The suite the flags describe: loaded, overridden, validated, selected (SuiteError on any problem)."""
    return load_suite(args.suite, sets=args.sets, only=args.only, tracking_uri=args.tracking_uri,
                      results=args.results, download=args.download)


def run(args: argparse.Namespace) -> ExitStatus:
    """A new run of the flags' suite, its dry run, or ``--resume``; the run's exit status."""
    from autowu_bench.launch.plan import plan_new, plan_resume

    try:
        if args.resume:
            _refuse_changes_to_a_resumed_run(args)
            plan = plan_resume(args.resume, tracking_uri=args.tracking_uri, address=args.address)
        else:
            plan = plan_new(resolve_suite(args), address=args.address, dry_run=args.dry_run)
    except SuiteError as exc:
        print(f"{args.prog}: the suite cannot run: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    if plan is None:  # a dry run
        return ExitStatus.OK
    from autowu_bench.launch.suite_run import LaunchOptions, SuiteRun

    options = LaunchOptions(address=args.address, num_cpus=args.num_cpus, verbose=args.verbose, prog=args.prog)
    return SuiteRun(plan, options).execute()


def _refuse_changes_to_a_resumed_run(args: argparse.Namespace) -> None:
    fixed = [flag for flag, given in (("--suite", args.suite_given), ("--set", args.sets), ("--only", args.only),
                                      ("--results", args.results_given), ("--download", args.download),
                                      ("--dry-run", args.dry_run)) if given]
    if fixed:
        raise SuiteError([f"--resume: {', '.join(fixed)} cannot change a run being resumed (its suite, trials "
                          "and folder are fixed); drop them, or start a new run without --resume"])


def sync(args: argparse.Namespace) -> ExitStatus:
    """``--sync RUN_DIR``: send what the run folder's spools hold to the run's tracking store (a new local
    server over the folder the suite's server used, else the suite's tracking URI, else --tracking-uri)."""
    from autowu_bench.platform.records.run_manifest import RunManifest
    from autowu_bench.platform.tracking.server import LocalMlflowServer
    from autowu_bench.platform.tracking.delivery import send_spools

    run_dir = Path(args.sync).expanduser().absolute()
    try:
        record = RunManifest.read(run_dir)
    except ValueError as exc:
        print(f"{args.prog} --sync: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    with ExitStack() as stack:
        if record.mlflow_store is not None:
            server = LocalMlflowServer(record.mlflow_store, log_path=run_dir / "mlflow-server.log")
            try:
                tracking_uri = stack.enter_context(server).uri
            except RuntimeError as exc:
                print(f"{args.prog} --sync: the MLflow server over {record.mlflow_store} did not start: {exc}",
                      file=sys.stderr)
                return ExitStatus.TRACKING_INCOMPLETE
        else:
            tracking_uri = record.tracking_uri or args.tracking_uri
            if tracking_uri is None:
                print(f"{args.prog} --sync: {run_dir}/run.json names no tracking store; pass --tracking-uri",
                      file=sys.stderr)
                return ExitStatus.INVALID
        report = send_spools(run_dir, tracking_uri, patience=SYNC_PATIENCE)
    print(f"{args.prog} --sync {run_dir}: {report.describe()}", flush=True)
    return ExitStatus.OK if report.complete else ExitStatus.TRACKING_INCOMPLETE


def main(argv: list[str] | None = None, prog: str = "autowu-bench") -> int:
    """The command line (``autowu-bench``; ``run_suite.py`` passes its own name as ``prog``)."""
    from autowu_bench.platform.tracking.env import apply_process_env

    apply_process_env()  # before anything imports MLflow; the server and Ray's processes get it from here
    try:
        args = parse_args(argv, prog)
        if args.list:
            from autowu_bench.launch.catalogue import catalogue

            print(catalogue())
            return int(ExitStatus.OK)
        if args.ui is not None:
            from autowu_bench.launch.ui import open_ui

            return int(open_ui(args.ui or None, prog))
        return int(sync(args) if args.sync is not None else run(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
