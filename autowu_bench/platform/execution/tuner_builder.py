"""The one way the platform builds a ``tune.Tuner``: ``grid_run.run_grid`` (a grid over the trial specs)
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

# What a trial's driver (the Tune function trainable, ``trial_driver.run_trial``) holds: no CPU, so the trial's
# Train workers get the cores (Tune refuses an all-zero request: one byte of "memory", present on every node,
# costs nothing), and a sliver of the head node's own resource, so that it runs on the head. The driver's
# node also gets the trial's Ray Train controller (Train pins it there) and, as a rule, its AutoWU controller
# (an actor of no CPU, which Ray places on its owner's node when it can; one lost elsewhere restarts and
# is refilled from the checkpoint). On a cluster whose worker nodes can go away (spot instances, a node
# lost), a lost worker node then takes only Train workers with it, which Ray Train restarts from the last
# checkpoint on another node (tests/test_multinode.py); a driver lost with its node would fail the whole
# trial. 0.001 of the head's 1.0: up to 1000 trials at once.
RESOURCES = {"CPU": 0, "memory": 1, "node:__internal_head__": 0.001}


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
        callbacks: Tune callbacks (the progress line, a search's ``SearchCallback``).
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
