"""The one way the platform builds a ``tune.Tuner``: ``runner.run_trials`` (a grid over the trial specs)
and ``search.run_search`` (a search arm's job) both call :func:`build_tuner` with what differs.

What they share: a function trainable bound to the run (``run_dir``, MLflow's ``tracking_uri`` and
``parent_run_id``) that holds no CPU (:data:`RESOURCES`), Tune/Train storage under ``run_dir/ray``,
Tune's own output off (``progress.py`` prints the progress line), no retry of a failed trial and no
stop of the others, the trial's name (its trial id) as its folder's name too.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

# The driver holds no CPU, so the trial's Train workers get the cores. Tune refuses an all-zero request;
# one byte of the "memory" resource (present on every node) is a request that costs nothing.
RESOURCES = {"CPU": 0, "memory": 1}


def build_tuner(
    function: Callable[..., None],
    *,
    run_dir: str,
    tracking_uri: str | None,
    parent_run_id: str | None,
    name: str,
    param_space: dict[str, Any],
    trial_name: Callable[[Any], str],
    callbacks: list,
    bound: dict[str, Any] | None = None,
    **tune_config: Any,
):
    """A ``tune.Tuner`` over ``function`` (a Tune function trainable, called with its config and
    ``run_dir``, ``tracking_uri``, ``parent_run_id`` and the keywords in ``bound``).

    Args:
        run_dir: the invocation's (absolute) results folder; Tune's experiment ``name`` is stored under
            ``run_dir/ray``.
        param_space: Tune's parameter space.
        trial_name: a trial's name, and its folder's (Tune's ``trial_name_creator`` and
            ``trial_dirname_creator``).
        callbacks: Tune callbacks (the progress line, a search's ``SearchBook``).
        tune_config: the rest of ``tune.TuneConfig`` (concurrency, searcher, scheduler, samples, ...).
    """
    from ray import tune

    trainable = tune.with_parameters(function, run_dir=run_dir, tracking_uri=tracking_uri,
                                     parent_run_id=parent_run_id, **(bound or {}))
    tuner = tune.Tuner(
        tune.with_resources(trainable, RESOURCES),
        param_space=param_space,
        tune_config=tune.TuneConfig(trial_name_creator=trial_name, trial_dirname_creator=trial_name, **tune_config),
        run_config=tune.RunConfig(
            name=name,
            storage_path=os.path.join(run_dir, "ray"),
            verbose=0,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )
    # With Tune's result files off, its end-of-run summary would warn that it cannot read them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    return tuner
