"""What a launch runs: a new run's suite, trials and folder (checked, the trial list printed), or those of
an interrupted run read back from its folder (``--resume``). Nothing here starts Ray or MLflow."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from autowu_bench.launch.estimate import cost_lines
from autowu_bench.platform.checks.data import data_problems
from autowu_bench.platform.checks.environment import (
    address_problems,
    checkpoint_disk_problems,
    environment_problems,
    ray_job_problems,
    tracking_problems,
)
from autowu_bench.platform.checks.autowu_density import schedule_warnings
from autowu_bench.platform.records import tables
from autowu_bench.platform.records.run_manifest import RunManifest
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.expansion import SearchJob, expand, search_jobs
from autowu_bench.platform.suite.loader import load_suite, suite_to_yaml
from autowu_bench.platform.suite.schema import Suite
from autowu_bench.workloads.optimizers import optimizer_note


@dataclass(frozen=True)
class RunPlan:
    """A run about to start. ``trials``: the fixed trials and, when resuming, the search trials an earlier
    run proposed (the searches' new trials join ``suite_run.RunTrials``, not this list); ``jobs``: the suite's Tune searches;
    ``record``: the run folder's ``run.json`` when resuming (None: a new run)."""

    suite: Suite
    trials: list[TrialSpec]
    jobs: list[SearchJob]
    run_dir: Path
    record: RunManifest | None = None

    @property
    def fixed_trials(self) -> list[TrialSpec]:
        """The trials that are no search's (a search runs again and replays its trials that ended)."""
        return [t for t in self.trials if not any(job.owns(t) for job in self.jobs)]

    @property
    def server_store(self) -> Path | None:
        """The folder of the ``mlflow.db`` that the suite's own MLflow server serves: a resumed run's, the
        one it began in; otherwise the working folder. None when the suite has a tracking URI."""
        if self.suite.tracking_uri is not None:
            return None
        if self.record is not None and self.record.mlflow_store:
            return Path(self.record.mlflow_store)
        return Path.cwd()


def plan_new(suite: Suite, *, address: str | None, dry_run: bool = False) -> RunPlan | None:
    """A new run of ``suite``: its data, a results folder with room for the checkpoints and, unless
    ``dry_run``, a Ray cluster and tracking server that answer, all checked before anything is created
    (SuiteError with every problem); the trial list printed; the run folder created with the resolved
    suite and the trial list. None for a dry run, which also prints an estimate of the suite's cost
    (``estimate``; missing data or folders are warnings: they may be on the cluster only)."""
    trials = expand(suite)
    jobs = search_jobs(suite)
    missing = data_problems(suite) + environment_problems(suite, trials, address=address, network=not dry_run)
    if missing and not dry_run:
        raise SuiteError(missing, source=suite.source)
    print(describe(suite, trials, jobs), flush=True)
    for warning in schedule_warnings(trials):
        print(f"warning: {warning}", flush=True)
    if dry_run:
        searched = [spec for job in jobs for spec in job.planned()]
        for line in cost_lines(trials + searched, max_concurrent=suite.resources.max_concurrent_trials):
            print(line, flush=True)
        for problem in missing:
            print(f"warning: {problem}", flush=True)
        if missing:
            print("warning: without that a launch stops with exit status 2 before starting", flush=True)
        return None
    run_dir = new_run_dir(suite.results, suite.name)
    (run_dir / "suite.yaml").write_text(suite_to_yaml(suite))
    tables.write_specs(run_dir, trials)
    return RunPlan(suite, trials, jobs, run_dir)


def plan_resume(run_dir: str | Path, *, tracking_uri: str | None, address: str | None) -> RunPlan:
    """The interrupted run in ``run_dir``: its suite and trials as it resolved them (``tracking_uri``, when
    given, replaces the suite's); SuiteError when the folder cannot be resumed or this machine cannot run
    it (its data, the checkpoints' disk, the tracking server, the cluster, a Ray job's folder)."""
    run_dir = Path(run_dir).expanduser().absolute()
    try:
        record = RunManifest.read(run_dir)
    except ValueError as exc:
        raise SuiteError([f"--resume: {exc}"]) from None
    suite = load_suite(run_dir / "suite.yaml", tracking_uri=tracking_uri)
    trials = tables.read_specs(run_dir)
    if not trials:
        raise SuiteError([f"--resume: {run_dir} has no trial list ({tables.SPECS_FILE}); it cannot be resumed"])
    plan = RunPlan(suite, trials, search_jobs(suite), run_dir, record)
    missing = (data_problems(suite) + checkpoint_disk_problems(trials, str(run_dir))
               + tracking_problems(suite.tracking_uri, network=True)
               + ray_job_problems(str(run_dir), plan.server_store) + address_problems(address))
    if missing:
        raise SuiteError(missing, source=suite.source)
    return plan


def describe(suite: Suite, trials: list[TrialSpec], jobs: list[SearchJob] = ()) -> str:
    """The trial list that a dry run prints (and every new run before it starts), then the searches."""
    searched = sum(job.search.trials for job in jobs)
    lines = [f"suite {suite.name}: {len(trials)} trials" + (f" + {len(jobs)} Tune search{'es' if len(jobs) != 1 else ''} of {searched} trials"
                                                             if jobs else "")
             + f"  (workloads {suite.workloads}, batch sizes {suite.batch_sizes}, arms {[a.name for a in suite.arms]}, "
             f"seeds {suite.seeds})"]
    width = max([len(t.trial_id) for t in trials] + [len(j.name) for j in jobs] + [1])
    for t in trials:
        if t.kind is TrialKind.AUTOWU:
            what = " ".join([f"AutoWU {t.decay}"] + [f"{k}={v}" for k, v in sorted(t.autowu.kwargs().items())])
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
    """A new folder ``<results>/<suite>/<date-time>`` (numbered when two runs start in the same second)."""
    base = Path(results).expanduser().absolute() / suite_name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = base / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir
