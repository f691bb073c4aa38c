"""Typed trials: TrialKind through to_dict / from_dict; one builder (``suite/trials.ArmRecipe``) for a
suite's trials, a search's proposals and the public trainable's configs."""

import json

import pytest

from autowu_bench.platform.records.spec import TrialKind, TrialSpec


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
