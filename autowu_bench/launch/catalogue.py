"""What there is to run (``--list``): the packaged suites, one line each (name, trials, what they run),
and the registered workloads. Nothing is started and no data is read."""

from __future__ import annotations

from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.expansion import SearchJob, expand, search_jobs
from autowu_bench.platform.suite.loader import load_suite, packaged_suites
from autowu_bench.platform.suite.schema import Suite
from autowu_bench.workloads.registry import WORKLOADS, workload_names


def catalogue() -> str:
    """The packaged suites, then the workloads, as ``--list`` prints them."""
    lines = ["suites (--suite NAME; files in autowu_bench/suites/; trials: fixed + a Tune search's, if any):"]
    rows = [suite_row(name) for name in packaged_suites()]
    width = max(len(name) for name, _, _ in rows)
    lines += [f"  {name:<{width}}  {trials:>11}  {what}" for name, trials, what in rows]
    lines.append("workloads (the suites' `workloads:`):")
    width = max(len(name) for name in workload_names())
    for name in workload_names():
        w = WORKLOADS[name]
        lines.append(f"  {name:<{width}}  {w.dataset} ({w.train_images} training images), {w.arch}, "
                     f"{w.num_classes} classes, recipe {w.recipe.epochs} epochs")
    return "\n".join(lines)


def suite_row(name: str) -> tuple[str, str, str]:
    """(name, its trials in words, what it runs) of the packaged suite ``name``."""
    try:
        suite = load_suite(name)
    except SuiteError as exc:  # a packaged suite always loads (tests/test_suites.py); said, not raised
        return name, "-", f"does not load: {exc.problems[0]}"
    trials, jobs = expand(suite), search_jobs(suite)
    count = f"{len(trials)} trials" if not jobs else f"{len(trials)}+{sum(j.search.trials for j in jobs)} trials"
    return name, count, _what(suite, trials, jobs)


def _what(suite: Suite, trials: list[TrialSpec], jobs: list[SearchJob]) -> str:
    epochs = sorted({t.epochs for t in trials} | {j.base.epochs for j in jobs})
    sizes = suite.batch_sizes
    res = suite.resources
    return (f"{', '.join(suite.workloads)}: {len(suite.arms)} arms, batch "
            f"{sizes[0] if len(sizes) == 1 else f'{min(sizes)}..{max(sizes)} ({len(sizes)} sizes)'}, "
            f"{'/'.join(map(str, epochs))} ep, {_plural(len(suite.seeds), 'seed')}, "
            f"{res.workers_per_trial} {'GPU' if res.use_gpu else 'CPU'} worker(s) per trial")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
