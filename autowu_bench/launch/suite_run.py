"""A planned run from start to end (:class:`SuiteRun`): MLflow and Ray started (or joined), the cluster
checked, the parent MLflow run opened (or reopened), the fixed trials and then each Tune search run,
the tables and report written and logged, MLflow's end sent, an exit status returned."""

from __future__ import annotations

import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from autowu_bench.launch.exit_status import ExitStatus
from autowu_bench.launch.plan import RunPlan
from autowu_bench.launch.stop import SignalStop
from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.suite.loader import suite_to_yaml

# How long the suite's end waits for MLflow to take what the trials spooled: long enough for the local
# server's watchdog to restart a server that died; a remote one gets less.
END_PATIENCE_LOCAL, END_PATIENCE_REMOTE = 60.0, 10.0


@dataclass(frozen=True)
class LaunchOptions:
    """How the run meets this machine, beside its plan. ``address``: the Ray cluster to join (None: a new
    local Ray with ``num_cpus``); ``verbose``: a line per epoch per trial and Ray's output on the
    console (otherwise in the run folder's ``logs/ray.log``); ``prog``: the command's name
    in messages and in the resume command."""

    address: str | None = None
    num_cpus: int | None = None
    verbose: bool = False
    prog: str = "run_suite.py"

    def command(self, *args: str) -> str:
        """This command line with ``args`` (``--resume RUN_DIR``, ``--sync RUN_DIR``), shell-quoted."""
        words = (["python", self.prog] if self.prog.endswith(".py") else [self.prog]) + list(args)
        return " ".join(shlex.quote(w) for w in words)

    def resume_command(self, run_dir: Path) -> str:
        """The command that picks ``run_dir`` up again."""
        words = ["--resume", str(run_dir)]
        if self.address:
            words += ["--address", self.address]
        if self.num_cpus is not None:
            words += ["--num-cpus", str(self.num_cpus)]
        return self.command(*words)


@dataclass
class RunTrials:
    """The run's trials: the plan's, then each search trial as Tune starts it (:meth:`add`), which also
    rewrites ``trial_specs.json`` at once, so that a run killed mid-search resumes knowing its trials. The
    one writer of that file during a run. It pickles (a search's callback holds :meth:`add`, and Tune
    keeps a copy of its callbacks)."""

    run_dir: Path
    trials: list[TrialSpec] = field(default_factory=list)

    def add(self, spec: TrialSpec) -> None:
        from autowu_bench.platform.records import tables

        self.trials.append(spec)
        tables.write_specs(self.run_dir, self.trials)


class SuiteRun:
    """One run of a :class:`~autowu_bench.launch.plan.RunPlan`: ``execute()`` runs it and returns its exit
    status; an interruption (SIGINT, SIGTERM) stops the trials, writes the tables of what ended, ends the
    MLflow runs KILLED and raises KeyboardInterrupt."""

    def __init__(self, plan: RunPlan, options: LaunchOptions) -> None:
        self.plan, self.options = plan, options
        self.stop = SignalStop(options.prog)
        self.server = None  # the suite's own MLflow server (LocalMlflowServer), when no tracking URI is given
        self.session = None  # the RaySession
        self.tracking_uri: str | None = plan.suite.tracking_uri
        self.parent: str | None = None  # the parent MLflow run
        self.started = time.time()  # the trials' start, for the suite's wall time
        self.pending: list[TrialSpec] = []  # the fixed trials to run (set by execute)
        self.trials = RunTrials(plan.run_dir, list(plan.trials))  # and the searches' as they start

    def execute(self) -> ExitStatus:
        from autowu_bench.platform.execution.grid_run import pending_trials

        # The fixed trials that have not ended (all of a new run's): what is announced and run.
        self.pending = pending_trials(str(self.plan.run_dir), self.plan.fixed_trials)
        self._announce()
        with ExitStack() as stack:
            refused = self._start(stack)
            if refused is not None:
                return refused
            return self._run()

    # -- start ------------------------------------------------------------------------------------------

    def _announce(self) -> None:
        plan = self.plan
        print(f"results: {plan.run_dir}", flush=True)
        if plan.record is not None:
            fixed, pending = plan.fixed_trials, self.pending
            print(f"resuming: {len(fixed) - len(pending)} of {len(fixed)} trials ended before, "
                  f"{len(pending)} to run: {[t.trial_id for t in pending]}", flush=True)
            if plan.jobs:
                print(f"resuming: the searches {[job.name for job in plan.jobs]} run again with their seeds; their "
                      "trials that ended are replayed to the searcher, not trained again", flush=True)
        print(f"if it stops, resume with: {self.options.resume_command(plan.run_dir)}", flush=True)

    def _start(self, stack: ExitStack) -> ExitStatus | None:
        """MLflow, Ray, the cluster's checks, the parent run; an exit status when the run cannot start."""
        from autowu_bench.platform.execution import ray_cluster
        from autowu_bench.platform.execution.ray_logs import ray_log_path

        address, prog = self.options.address, self.options.prog
        if self.tracking_uri is None and address is None:
            self._launch_server(stack)  # first, so that its start-up overlaps Ray's
        # Ray's output goes to the run folder, the console keeps the suite's lines; --verbose shows it all.
        log_path = None if self.options.verbose else ray_log_path(self.plan.run_dir)
        try:
            self.session = stack.enter_context(ray_cluster.ray_session(address, num_cpus=self.options.num_cpus,
                                                                       log_path=log_path))
        except (ConnectionError, RuntimeError, ValueError) as exc:  # it answered the check, then ray.init failed
            print(f"{prog}: Ray did not start ({type(exc).__name__}: {exc}); no trial started", file=sys.stderr)
            return ExitStatus.INVALID
        if self.tracking_uri is None and address is not None:
            # Once joined: on the address Ray knows this node by, which the trials on other nodes reach.
            self._launch_server(stack)
        self.stop.install(self.session, self.plan.run_dir)
        problems = ray_cluster.cluster_problems(self.plan.trials + [job.base for job in self.plan.jobs],
                                                can_grow=address is not None)
        if address is not None and self.server is None:
            problems += [p for p in [ray_cluster.tracking_reach_problem(self.tracking_uri)] if p]
            if warning := ray_cluster.tracking_reach_warning(self.tracking_uri):
                print(f"warning: {warning}", file=sys.stderr, flush=True)
        if problems:
            print(f"{prog}: the cluster cannot run the suite:\n" + "\n".join(f"  - {p}" for p in problems),
                  file=sys.stderr)
            return ExitStatus.INVALID
        if self.server is not None:
            self.tracking_uri = self.server.wait_ready().uri
        afterwards = f"; afterwards: make ui RUN={self.plan.run_dir}" if self.server is not None else ""
        print(f"MLflow: {self.tracking_uri}{afterwards}", flush=True)
        if self.server is not None and self.server.host != "127.0.0.1":
            print(f"note: the suite's MLflow server listens on {self.server.host}, without authentication, for "
                  "the cluster's nodes; keep the port closed to the outside, or pass --tracking-uri", flush=True)
        self._open_parent()
        return None

    def _launch_server(self, stack: ExitStack) -> None:
        from autowu_bench.platform.execution.ray_cluster import tracking_host
        from autowu_bench.platform.tracking.server import LocalMlflowServer

        # Stopped on any exit.
        self.server = LocalMlflowServer(self.plan.server_store, host=tracking_host(self.options.address),
                                        log_path=self.plan.run_dir / "mlflow-server.log").launch()
        stack.callback(self.server.stop)

    def _open_parent(self) -> None:
        """The suite's parent MLflow run, new or (resuming) reopened, and ``run.json`` naming it."""
        from autowu_bench.platform.records.run_manifest import RunManifest
        from autowu_bench.platform.tracking.client import reopen_run, start_parent_run
        from autowu_bench.platform.tracking.delivery import send_spools

        plan, record = self.plan, self.plan.record
        if record is not None and record.parent_run_id is not None:
            self.parent = record.parent_run_id
            # What MLflow missed before the interruption goes first, in order (each trial's spool, then
            # the parent's, which may end the parent KILLED); then the parent is RUNNING again.
            left = send_spools(plan.run_dir, self.tracking_uri, patience=END_PATIENCE_REMOTE)
            if not left.complete:
                print(f"warning: tracking of the earlier run still incomplete ({left.describe()}); it stays "
                      "spooled and is sent at the end", file=sys.stderr, flush=True)
            reopen_run(self.tracking_uri, self.parent)
        else:
            suite = plan.suite
            self.parent = start_parent_run(
                self.tracking_uri, suite.name, run_name=f"{suite.name} {plan.run_dir.name}", suite_file=suite.source,
                resolved_suite=suite_to_yaml(suite),
                params={"suite": suite.name, "trials": len(plan.trials), "run_dir": str(plan.run_dir),
                        "address": self.options.address},
            )
        RunManifest(plan.suite.name, tracking_uri=plan.suite.tracking_uri, address=self.options.address,
                  parent_run_id=self.parent,
                  mlflow_store=None if self.server is None else str(self.server.workdir)).write(plan.run_dir)

    # -- run and finish ---------------------------------------------------------------------------------

    def _run(self) -> ExitStatus:
        from autowu_bench.platform.execution.search import SearchReplayError
        from autowu_bench.platform.tracking.client import RunStatus

        status, patience, prog = RunStatus.FAILED, 0.0, self.options.prog
        try:
            self.started = time.time()
            self._run_grid()
            failed, patience = self._finish()
            status = RunStatus.FINISHED
        except SearchReplayError as exc:
            self.session.close()
            print(f"{prog}: {exc}", file=sys.stderr)
            return ExitStatus.INVALID
        except KeyboardInterrupt:
            status = RunStatus.KILLED
            self.session.close()  # the trials stop before the tables of what finished are collected
            try:
                self._write_outputs(interrupted=True)
            except Exception as exc:  # noqa: BLE001 - the interrupt, not this, is what the user must see
                print(f"{prog}: the tables of the interrupted run were not written ({exc})", file=sys.stderr)
            print(f"{prog}: interrupted; resume with: {self.options.resume_command(self.plan.run_dir)}",
                  file=sys.stderr)
            raise
        finally:
            tracked = self._end_tracking(status, patience=0.0 if status == RunStatus.KILLED else patience)
        if failed:
            print(f"{len(failed)} of {len(self.trials.trials)} trials did not finish: {failed}", file=sys.stderr)
            return ExitStatus.TRIALS_FAILED
        return ExitStatus.OK if tracked.complete else ExitStatus.TRACKING_INCOMPLETE

    def _run_grid(self) -> None:
        """The fixed trials not ended yet, then each search as its own Tune job (a search's trials join
        ``self.trials`` as they start)."""
        from autowu_bench.platform.execution import grid_run, ray_cluster, search

        plan, run_dir = self.plan, str(self.plan.run_dir)
        limit = plan.suite.resources.max_concurrent_trials
        grid_run.run_grid(self.pending, run_dir=run_dir,
                          tracking_uri=self.tracking_uri, parent_run_id=self.parent, max_concurrent=limit,
                          verbose=self.options.verbose)
        for job in plan.jobs:
            search.run_search(job, run_dir=run_dir, tracking_uri=self.tracking_uri, parent_run_id=self.parent,
                              known=self.trials.trials, on_new=self.trials.add, verbose=self.options.verbose,
                              default_concurrency=limit or ray_cluster.default_concurrency([job.base]))

    def _finish(self) -> tuple[list[str], float]:
        """The trials' outcomes, the tables and report written and logged, the suite's summary spooled;
        returns the failed trials and how long the end still waits for MLflow."""
        from autowu_bench.platform.execution.grid_run import collect_outcomes
        from autowu_bench.platform.records.outcome import TrialStatus
        from autowu_bench.platform.tracking.lifecycle import spool_summary
        from autowu_bench.platform.tracking.delivery import send_spools

        plan = self.plan
        trials = self.trials.trials
        outcomes = collect_outcomes(trials, str(plan.run_dir))
        # What the trials left spooled first, waiting for MLflow (a local server its watchdog is
        # restarting), so that the report can link to their runs.
        patience = END_PATIENCE_LOCAL if self.server is not None else END_PATIENCE_REMOTE
        if not send_spools(plan.run_dir, self.tracking_uri, patience=patience).complete:
            patience = 0.0  # waited once already: the end tries once more
        print("\n" + self._write_outputs(interrupted=False), flush=True)
        # A diverged trial ended as designed (its loss blew up); only errors count as failures.
        failed = [o.trial_id for o in outcomes if o.status is TrialStatus.FAILED]
        spool_summary(plan.run_dir, self.parent, {
            "trials": len(trials), "trials_failed": len(failed),
            "device_hours": float(sum(o.device_hours for o in outcomes)),
            "wall_seconds": time.time() - self.started,
        })
        return failed, patience

    def _write_outputs(self, *, interrupted: bool) -> str:
        """The tables and the report in the run folder, then spooled to the parent run and sent once;
        returns the text table. MLflow never fails this: what it does not take stays spooled."""
        from autowu_bench.dashboards.outputs import write_outputs
        from autowu_bench.platform.tracking.lifecycle import spool_artifacts
        from autowu_bench.platform.tracking.delivery import send_spools

        plan = self.plan
        what = f"{plan.suite.name} (interrupted)" if interrupted else plan.suite.name
        ui, experiment = self._report_links()
        outputs = write_outputs(plan.run_dir, title=f"{what}: test accuracy, mean (std) over seeds  [{plan.run_dir}]",
                                tracking_ui=ui, experiment_id=experiment)
        for folder, files in outputs.files.items():
            spool_artifacts(plan.run_dir, self.parent, files, folder or None)
        sent = send_spools(plan.run_dir, self.tracking_uri)
        if not sent.complete:
            print(f"{self.options.prog}: MLflow did not take the tables and report yet ({sent.describe()}); they "
                  f"stay spooled in {plan.run_dir}", file=sys.stderr)
        return outputs.text

    def _report_links(self) -> tuple[str | None, str | None]:
        """Where the report links each trial: the MLflow UI (``make ui`` when the suite ran its own server,
        which stops with it) and the suite's experiment; (None, None) when MLflow has no web UI or is away."""
        from autowu_bench.platform.tracking.client import run_experiment_id
        from autowu_bench.platform.tracking.server import MAKE_UI_URL

        if not self.tracking_uri.startswith(("http://", "https://")):
            return None, None
        try:
            experiment = run_experiment_id(self.tracking_uri, self.parent)
        except Exception as exc:  # noqa: BLE001 - MLflow away: the report, without links to the runs
            print(f"{self.options.prog}: MLflow did not answer ({type(exc).__name__}); the report has no links "
                  "to the runs", file=sys.stderr)
            return None, None
        return (MAKE_UI_URL if self.server is not None else self.tracking_uri), experiment

    def _end_tracking(self, status: str, *, patience: float):
        """The suite's end in MLflow: the parent run's end spooled after everything else (its children left
        RUNNING closed, then its status), then every spool of the run folder sent, waiting up to
        ``patience`` seconds for MLflow; says on stderr what is left and how to send it. Returns
        ``tracking.delivery.send_spools``' report; never raises for MLflow."""
        from autowu_bench.platform.tracking.client import RunStatus
        from autowu_bench.platform.tracking.lifecycle import spool_end
        from autowu_bench.platform.tracking.delivery import send_spools

        run_dir = self.plan.run_dir
        spool_end(run_dir, self.parent, status, RunStatus.KILLED if status == RunStatus.KILLED else RunStatus.FAILED)
        report = send_spools(run_dir, self.tracking_uri, patience=patience)
        if not report.complete:
            print(f"{self.options.prog}: tracking is incomplete: MLflow at {self.tracking_uri} did not take "
                  f"everything ({report.describe()}). The tables and the report are in {run_dir}; send the rest "
                  f"with: {self.options.command('--sync', str(run_dir))}",
                  file=sys.stderr)
        return report
