"""Typed trials: TrialKind and AutoWUOptions through to_dict / from_dict; one builder
(``suite/trials.ArmRecipe``) for a suite's trials, a search's proposals and the public trainable's configs."""

import json

import pytest

from autowu_bench.platform.records.spec import TrialKind, TrialSpec
from autowu_bench.schedulers.autowu import AUTOWU_DEFAULTS, AutoWUOptions, OptionProblem


def _spec(**over):
    values = dict(trial_id="t", suite="s", arm="a", kind="autowu", workload="fmnist-mlp", batch_size=64,
                  epochs=1, seed=0, optimizer="adamw", weight_decay=0.0)
    values.update(over)
    return TrialSpec(**values)


def test_trial_kind_round_trip():
    for kind in TrialKind:
        spec = _spec(kind=kind.value)
        assert spec.kind is kind
        values = spec.to_dict()
        assert type(values["kind"]) is str and values["kind"] == kind.value
        assert json.loads(json.dumps(values))["kind"] == kind.value
        back = TrialSpec.from_dict(values)
        assert back.kind is kind and back == spec


def test_trial_kind_refuses_unknown():
    with pytest.raises(ValueError):
        _spec(kind="grid")


def test_autowu_options_round_trip_as_the_dict_of_the_options_set():
    options = AutoWUOptions(test_interval="auto", patience=2, lr_max=0.5)
    spec = _spec(autowu=options)
    values = spec.to_dict()
    # the form of trial_specs.json, MLflow params and Parquet rows: a plain dict of the options set
    assert values["autowu"] == {"lr_max": 0.5, "patience": 2, "test_interval": "auto"}
    back = TrialSpec.from_dict(json.loads(json.dumps(values)))
    assert back.autowu == options and back == spec
    assert spec.autowu_kwargs() == {"lr_max": 0.5, "patience": 2, "test_interval": "auto", "seed": 0}  # no decay set
    assert spec.test_interval == "auto" and _spec().test_interval == AUTOWU_DEFAULTS.test_interval
    assert _spec().to_dict()["autowu"] == {} and _spec().autowu == AutoWUOptions()


def test_a_spec_dict_written_in_the_old_form_loads():
    """A run folder's trial_specs.json from before the options were typed: ``autowu`` a dict in any key
    order (a search's merge put its knobs last)."""
    old = dict(trial_id="k_t001", suite="s", arm="k", kind="autowu", workload="fmnist-mlp", batch_size=64,
               epochs=1, seed=3, optimizer="adamw", weight_decay=0.0, decay="cosine", decay_power=None,
               autowu={"test_interval": "auto", "patience": 3}, peak_lr=None, warmup_epochs=None,
               is_default=False, data_root=None, train_subset=None, val_size=5000, num_workers=1,
               use_gpu=False, cpus_per_worker=1.0, gpus_per_worker=0.0, micro_batch=None, amp=None,
               channels_last=False, compile=False, max_failures=3, search="random")
    spec = TrialSpec.from_dict(old)
    assert spec.autowu == AutoWUOptions(patience=3, test_interval="auto")
    assert spec.to_dict() == old  # written back the same (dicts compare without their order)
    assert spec.autowu_kwargs() == {"test_interval": "auto", "patience": 3, "decay": "cosine", "seed": 3}
    baseline = TrialSpec.from_dict({**old, "kind": "baseline", "autowu": {}, "decay": None})
    assert baseline.autowu == AutoWUOptions()


def test_an_unknown_autowu_option_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"unknown AutoWU options \['patiense'\]; known: \['lr_min', .*'patience'"):
        AutoWUOptions.from_dict({"patiense": 2})
    with pytest.raises(ValueError, match=r"unknown AutoWU options \['seed'\]"):
        TrialSpec.from_dict({**_spec().to_dict(), "autowu": {"seed": 1}})
    with pytest.raises(ValueError, match=r"unknown AutoWU options \['detector'\]"):
        AutoWUOptions().merged({"detector": object()})
    with pytest.raises(ValueError, match="must be AutoWUOptions"):
        _spec(autowu=["patience"])


def test_autowu_options_give_only_the_set_ones_and_merge_over_them():
    options = AutoWUOptions(test_interval=5, divergence_factor=2.0)
    assert options.kwargs() == options.to_dict() == {"test_interval": 5, "divergence_factor": 2.0}
    assert AutoWUOptions.from_dict({"patience": None, "lr_min": 1e-4}) == AutoWUOptions(lr_min=1e-4)
    merged = options.merged({"patience": 4, "test_interval": "epoch"})
    assert merged == AutoWUOptions(test_interval="epoch", divergence_factor=2.0, patience=4)
    assert options == AutoWUOptions(test_interval=5, divergence_factor=2.0)  # frozen: merged is a new one
    assert merged.value("patience") == 4 and merged.value("lr_max") == AUTOWU_DEFAULTS.lr_max
    assert AutoWUOptions(patience=0).problems() == {"patience": OptionProblem("patience=0 must be an integer >= 1")}


def test_a_search_over_autowu_knobs_gives_the_typed_options():
    """The proposed knobs are set over the arm's options: the trial holds AutoWUOptions, not a dict."""
    from autowu_bench.platform.suite.expansion import search_jobs
    from autowu_bench.platform.suite.loader import validate_suite

    suite = validate_suite({
        "name": "s", "workloads": ["fmnist-mlp"], "batch_sizes": [64], "epochs": 2,
        "arms": [{"name": "k", "kind": "autowu", "autowu": {"test_interval": "auto", "patience": 2},
                  "search": {"searcher": "grid", "space": {"patience": [3, 4], "confidence": [0.9]}}}],
        "resources": {"workers_per_trial": 1}, "data": {"train_subset": 256, "val_size": 64},
    })
    (job,) = search_jobs(suite)
    assert job.base.autowu == AutoWUOptions(test_interval="auto", patience=2)
    spec = job.spec({"patience": 4, "confidence": 0.9}, job.trial_id(1))
    assert type(spec.autowu) is AutoWUOptions
    assert spec.autowu == AutoWUOptions(test_interval="auto", patience=4, confidence=0.9)
    assert spec.to_dict()["autowu"] == {"confidence": 0.9, "patience": 4, "test_interval": "auto"}
    assert TrialSpec.from_dict(spec.to_dict()) == spec


def test_a_tune_config_sets_autowu_options_and_refuses_none_and_the_detector():
    from autowu_bench.tune import spec_from_config

    spec = spec_from_config({"patience": 2, "test_interval": 5}, "t")
    assert spec.kind is TrialKind.AUTOWU and spec.autowu == AutoWUOptions(patience=2, test_interval=5)
    with pytest.raises(ValueError, match=r"AutoWU options \['divergence_factor'\] are None; leave them out"):
        spec_from_config({"divergence_factor": None}, "t")
    with pytest.raises(ValueError, match=r"unknown config keys \['detector'\]"):
        spec_from_config({"detector": None}, "t")


def _same_point(spec: TrialSpec) -> TrialSpec:
    """The spec without what names it (id, suite, arm, search) or where its data lie."""
    from dataclasses import replace

    return replace(spec, trial_id="t", suite="s", arm="a", search=None, data_root=None)


@pytest.mark.parametrize("kind", ["baseline", "autowu"])
def test_one_builder_for_a_suite_arm_a_search_proposal_and_a_tune_config(kind):
    """The same point (SGD on a workload whose recipe is AdamP, batch 1024: the recipe's defaults for
    the optimizer, its weight decay and the scaled peak LR) gives one spec by all three ways."""
    from autowu_bench.platform.suite.expansion import expand, search_jobs
    from autowu_bench.platform.suite.loader import validate_suite
    from autowu_bench.tune import spec_from_config
    from autowu_bench.workloads.recipes import BASE_LR

    if kind == "baseline":
        grid = {"name": "grid", "kind": "baseline", "optimizer": "sgd", "base_lrs": [BASE_LR["sgd"]],
                "warmup_epochs": [2], "include_default": False}
        search = {"name": "rs", "kind": "baseline", "optimizer": "sgd",
                  "search": {"searcher": "grid", "space": {"base_lr": [BASE_LR["sgd"]], "warmup_epochs": [2]}}}
        proposal = {"base_lr": BASE_LR["sgd"], "warmup_epochs": 2}
        config = {"warmup_epochs": 2}
    else:
        grid = {"name": "grid", "kind": "autowu", "optimizer": "sgd", "autowu": {"patience": 2}}
        search = {"name": "rs", "kind": "autowu", "optimizer": "sgd",
                  "search": {"searcher": "grid", "space": {"patience": [2]}}}
        proposal = {"patience": 2}
        config = {"patience": 2}
    suite = validate_suite({
        "name": "s", "workloads": ["fmnist-mlp"], "batch_sizes": [1024], "epochs": 5, "seeds": [0],
        "arms": [grid, search], "resources": {"workers_per_trial": 1},
        "data": {"train_subset": 1024, "val_size": 256},
    })
    (from_arm,) = expand(suite)
    (job,) = search_jobs(suite)
    from_search = job.spec(proposal, job.trial_id(1))
    from_tune = spec_from_config({"workload": "fmnist-mlp", "batch_size": 1024, "epochs": 5, "optimizer": "sgd",
                                  "train_subset": 1024, "val_size": 256, **config}, "t")
    assert from_arm.optimizer == "sgd" and from_arm.weight_decay == 5e-4 and from_arm.kind is TrialKind(kind)
    if kind == "baseline":
        assert from_arm.peak_lr == pytest.approx(BASE_LR["sgd"] * 2)  # sqrt(1024 / 256)
    assert _same_point(from_arm) == _same_point(from_search) == _same_point(from_tune)


def test_arm_recipe_applies_an_arms_choices_once():
    """Another optimizer brings its base LR and weight decay; an arm's weight decay, epochs and scaling
    rule (linear from its own base batch) override the recipe's; None keeps the recipe's."""
    from autowu_bench import workloads
    from autowu_bench.platform.suite.trials import RECIPE_FIELDS, ArmRecipe
    from autowu_bench.workloads.recipes import BASE_LR, WEIGHT_DECAY

    recipe = workloads.get_workload("fmnist-mlp").recipe
    plain = ArmRecipe.of("fmnist-mlp")
    assert (plain.optimizer, plain.weight_decay, plain.epochs) == (recipe.optimizer, recipe.weight_decay, recipe.epochs)
    assert plain.peak_lr(4 * recipe.base_batch) == pytest.approx(2 * recipe.base_lr)  # sqrt
    assert ArmRecipe.of(recipe, optimizer=recipe.optimizer) == plain

    sgd = ArmRecipe.of(recipe, optimizer="sgd", epochs=3, scaling="linear", base_batch=128)
    assert (sgd.optimizer, sgd.weight_decay, sgd.epochs) == ("sgd", WEIGHT_DECAY["sgd"], 3)
    assert sgd.peak_lr(512) == pytest.approx(4 * BASE_LR["sgd"]) and sgd.peak_lr(512, 0.01) == pytest.approx(0.04)
    assert ArmRecipe.of(recipe, optimizer="sgd", weight_decay=0.0).weight_decay == 0.0

    spec = sgd.baseline_trial("t", peak_lr=1, warmup_epochs=0, suite="s", arm="a", workload="fmnist-mlp",
                              batch_size=512, seed=0)
    assert spec.kind is TrialKind.BASELINE and (spec.peak_lr, spec.warmup_epochs) == (1.0, 0.0)
    assert {k: spec.to_dict()[k] for k in RECIPE_FIELDS} == {"optimizer": "sgd", "weight_decay": WEIGHT_DECAY["sgd"],
                                                             "epochs": 3}
