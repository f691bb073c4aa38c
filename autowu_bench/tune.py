"""The platform's trial as a public Ray Tune function trainable, for your own ``tune.Tuner``.

    from ray import tune
    from autowu_bench.tune import RESOURCES, trainable

    tuner = tune.Tuner(
        tune.with_resources(trainable, RESOURCES),
        param_space={"workload": "fmnist-mlp", "batch_size": 1024, "epochs": 5,
                     "peak_lr": tune.loguniform(1e-3, 1e-1), "warmup_epochs": tune.choice([0, 1, 2])},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", num_samples=8),
    )
    tuner.fit()

Each call trains one trial exactly as ``run_suite.py`` does (``platform/trial_driver.run_trial``): a Ray
Train ``TorchTrainer`` of ``num_workers`` data-parallel workers, the AutoWU controller actor for an
AutoWU trial, a ``summary.json``, Parquet fragments and (with a tracking URI) an MLflow run.

Config keys (all optional; unknown keys are an error, so a typo is not silently ignored):
    schedule          "baseline" (linear warmup to ``peak_lr``, then ``decay``) or "autowu"; default:
                      "autowu" if any AutoWU option below (or decay "const-cos") is given, else "baseline"
    workload          a name of ``autowu_bench.workloads`` (default "fmnist-mlp")
    batch_size        global batch (default: the recipe's base batch); epochs (default: the recipe's);
                      seed (default 0)
    optimizer, weight_decay   default: the recipe's
    peak_lr, warmup_epochs    baseline; default: the recipe's base LR scaled to ``batch_size`` by its
                      rule, and the recipe's warmup epochs
    decay             baseline: "cosine" (default), "polynomial" (with ``decay_power``, default 2) or
                      "constant"; AutoWU: "cosine" or "const-cos"
    AutoWU options    lr_min, lr_max,
                      max_warmup_fraction, warmup, confidence, patience, const_fraction, test_interval,
                      divergence_factor (``schedulers.autowu.AutoWUOptions``; unset ones keep AutoWU's
                      defaults; None is not a value: leave the key out)
    num_workers (1), cpus_per_worker (1.0), use_gpu (False), gpus_per_worker, max_failures (3)
    data_root, train_subset, val_size (5000)    the data (default root: the workload's)
    micro_batch, amp, channels_last, compile     training options, as in a suite's ``training``
    run_dir           where trial folders go (``<run_dir>/trials/<trial name>``) and Ray Train's storage
                      (``<run_dir>/ray/train``); default: the Tune trial's own folder
    tracking_uri      MLflow tracking URI (default None: no MLflow); mlflow_parent_run_id: the run the
                      trial's run goes under (default: a top-level run in experiment ``suite``)
    suite             the MLflow experiment and the trial's ``suite`` field (default "tune")

Reported each epoch (one Tune result per epoch; ``tune.TuneConfig(metric="val_acc", mode="max")`` is
what the platform's own searches and ASHA use; ``time_attr="epoch"`` for schedulers): ``epoch``,
``step``, ``phase``, ``lr``, ``train_loss``, ``val_loss``, ``val_acc``, ``best_val_acc``,
``epoch_seconds``, ``sync_seconds``, ``images_per_second``, ``rollbacks``, ``restarts``, ``status``
("running", "finished" on the last epoch, "diverged"), ``steps_per_epoch``, the switch facts
(``switch_step``, ``switch_epoch``, ``switch_reason``, ``decay_start_lr``), and on the last epoch
``test_loss`` and ``test_acc`` (never read by a searcher: select on ``val_acc``). ``checkpoint_path``
is the epoch's Ray Train checkpoint (``state.pt``: model, optimizer, RNG, schedule state), kept two
deep under ``<run_dir>/ray/train/<trial name>``; a worker-group restart resumes from it.

Resources: the trainable itself needs no CPU (its Train workers take ``num_workers`` x
``cpus_per_worker``): wrap it with ``tune.with_resources(trainable, RESOURCES)``, which also keeps it (and
the trial's Ray Train controller) on the head node, so that a lost worker node costs a restart, not the trial. A trial that your
scheduler stops early leaves its per-epoch rows and MLflow metrics, but no ``summary.json``, and its
MLflow run stays RUNNING (run_suite.py's searches record both through a Tune callback,
``platform/execution/search.py``'s ``SearchCallback``). Start Ray with its dashboard (``include_dashboard=True``): Ray
Train frees the cores of a trial stopped from outside through the State API the dashboard serves.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from autowu_bench.platform.execution.tuner_builder import RESOURCES  # noqa: F401 (public: the trainable's request)
from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.schedulers.autowu import AUTOWU_DEFAULTS, DECAYS, AutoWUOptions
from autowu_bench.schedulers.lr_functions import BASELINE_DECAYS

AUTOWU_OPTIONS = AutoWUOptions.names()
_OWN_KEYS = ("schedule", "run_dir", "tracking_uri", "mlflow_parent_run_id")
_SPEC_KEYS = tuple(f.name for f in dataclasses.fields(TrialSpec)
                   if f.name not in ("trial_id", "kind", "autowu", "arm", "is_default", "search"))


def spec_from_config(config: dict[str, Any], trial_id: str) -> TrialSpec:
    """The trial a config describes (the keys of the module docstring), defaults from the workload's recipe."""
    from autowu_bench.platform.suite.trials import RECIPE_FIELDS, ArmRecipe

    known = set(_OWN_KEYS) | set(_SPEC_KEYS) | set(AUTOWU_OPTIONS)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"autowu_bench.tune.trainable: unknown config keys {unknown}; known: {sorted(known)}")
    autowu = {k: _plain(config[k]) for k in AUTOWU_OPTIONS if k in config}
    unset = sorted(k for k, v in autowu.items() if v is None)
    if unset:
        raise ValueError(f"AutoWU options {unset} are None; leave them out to keep AutoWU's defaults")
    decay = config.get("decay")
    only_autowu = set(DECAYS) - set(BASELINE_DECAYS)
    schedule = config.get("schedule") or (TrialKind.AUTOWU if autowu or decay in only_autowu else TrialKind.BASELINE)
    if schedule not in (TrialKind.BASELINE, TrialKind.AUTOWU):
        raise ValueError(f"schedule={schedule!r} must be 'baseline' or 'autowu'")
    workload = config.get("workload", "fmnist-mlp")
    recipe = ArmRecipe.of(workload, optimizer=config.get("optimizer"), weight_decay=_plain(config.get("weight_decay")),
                          epochs=_plain(config.get("epochs")))
    batch = int(config.get("batch_size", recipe.base_batch))
    # optimizer, weight decay and epochs: the recipe's, or the config's through the recipe
    values = {k: _plain(config[k]) for k in _SPEC_KEYS if k in config and k not in RECIPE_FIELDS}
    values.update(workload=workload, batch_size=batch, suite=config.get("suite", "tune"),
                  seed=int(config.get("seed", 0)))
    if "data_root" in values and values["data_root"] is not None:
        values["data_root"] = os.path.abspath(os.path.expanduser(values["data_root"]))
    if schedule == TrialKind.AUTOWU:
        if decay is not None and decay not in DECAYS or "decay_power" in config:
            raise ValueError(f"schedule 'autowu': decay={decay!r} must be one of {list(DECAYS)}, without decay_power")
        values.pop("peak_lr", None)
        values.pop("warmup_epochs", None)
        values.setdefault("decay", AUTOWU_DEFAULTS.decay)
        return recipe.autowu_trial(trial_id, arm="autowu", autowu=AutoWUOptions(**autowu), **values)
    if autowu:
        raise ValueError(f"schedule 'baseline' takes no AutoWU options; got {sorted(autowu)}")
    values.setdefault("decay", "cosine")
    if values["decay"] not in BASELINE_DECAYS:
        raise ValueError(f"schedule 'baseline': decay={values['decay']!r} must be one of {list(BASELINE_DECAYS)}")
    if values["decay"] == "polynomial":
        values["decay_power"] = float(values.get("decay_power") or 2.0)
    elif "decay_power" in values:
        raise ValueError(f"decay_power is for decay 'polynomial', not {values['decay']!r}; remove it")
    peak_lr = float(values.pop("peak_lr", None) or recipe.peak_lr(batch))
    warmup_epochs = float(values.pop("warmup_epochs", recipe.warmup_epochs))
    return recipe.baseline_trial(trial_id, arm="baseline", peak_lr=peak_lr, warmup_epochs=warmup_epochs, **values)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and callable(value.item) else value


def trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one platform trial from ``config`` (see the module docstring)."""
    from ray import tune

    from autowu_bench.platform.execution.trial_driver import run_trial

    context = tune.get_context()
    trial_id = re.sub(r"[^A-Za-z0-9_.-]", "_", context.get_trial_name() or context.get_trial_id())
    spec = spec_from_config(config, trial_id)
    run_dir = config.get("run_dir") or context.get_trial_dir()
    run_trial({"spec": spec.to_dict()}, run_dir=os.path.abspath(run_dir), tracking_uri=config.get("tracking_uri"),
              parent_run_id=config.get("mlflow_parent_run_id"))
