"""Suite validation (every problem at once, with field and fix), overrides, --only, loading and expansion."""

from __future__ import annotations

import inspect
import math

import pytest
import yaml


from autowu_bench.platform.suite.expansion import expand
from autowu_bench.platform.checks.data import data_problems
from autowu_bench.platform.suite.errors import SuiteError
from autowu_bench.platform.suite.overrides import apply_overrides, select
from autowu_bench.platform.suite.schema import AutoWUOptionsSchema
from autowu_bench.platform.suite.loader import load_suite, read_suite, suite_to_yaml, validate_suite
from autowu_bench.schedulers import AutoWUCore, AutoWUOptions
from autowu_bench.workloads.data.sharding import batch_split_problem
from autowu_bench.workloads import get_workload, workload_names
from data_fixtures import write_fashion_mnist_idx


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    return str(write_fashion_mnist_idx(tmp_path_factory.mktemp("fmnist"), n_train=1500, n_test=100))


def suite_dict(root: str, **changes) -> dict:
    raw = {
        "name": "t",
        "workloads": ["fmnist-mlp"],
        "batch_sizes": [64, 128],
        "epochs": 6,
        "resources": {"workers_per_trial": 2},
        "data": {"root": root, "train_subset": 1000, "val_size": 200},
        "arms": [
            {"name": "autowu-auto", "kind": "autowu", "decay": "cos", "autowu": {"test_interval": "auto"}},
            {"name": "baseline", "kind": "baseline", "peak_lrs": [0.001, 0.003], "warmup_epochs": [1, 2]},
        ],
    }
    raw.update(changes)
    return raw


def problems(raw: dict) -> list[str]:
    with pytest.raises(SuiteError) as info:
        validate_suite(raw)
    return info.value.problems


def test_valid_suite_parses_and_normalises(fmnist_root):
    suite = validate_suite(suite_dict(fmnist_root))
    assert suite.arms[0].decay == "cosine"  # "cos" is an alias
    assert suite.resources.gpus == 0.0
    assert suite.results == "runs" and suite.tracking_uri is None


def test_every_independent_problem_is_reported_at_once(fmnist_root, tmp_path):
    raw = suite_dict(
        str(tmp_path / "no-such-folder"),
        epochs=0,
        seeds=[0, 0],
        batch_sizes=[64, 99],
        arms=[{"name": "a", "kind": "autowu", "decay": "linear"}],
        epoch=3,
    )
    found = problems(raw)
    assert len(found) == 5, found  # the missing data is no schema problem: see test_missing_data_...
    by_field = {p.split(":", 1)[0]: p for p in found}
    assert "greater than 0" in by_field["epochs"]
    assert "duplicate seed" in by_field["seeds"]
    assert "99 is not divisible by 2 workers" in by_field["batch_sizes"] and "multiple of 2" in by_field["batch_sizes"]
    assert "'const-cos' or 'cosine'" in by_field["arms[0].decay"] and "'linear'" in by_field["arms[0].decay"]
    assert "remove it or fix its spelling" in by_field["epoch"] and "'epochs'" in by_field["epoch"]


def test_missing_data_is_reported_after_validation_not_by_it(tmp_path):
    suite = validate_suite(suite_dict(str(tmp_path / "no-such-folder")))
    (problem,) = data_problems(suite)
    assert problem.startswith("data.root: ") and "no-such-folder" in problem
    assert "apt-get install dataset-fashion-mnist" in problem


def test_unknown_workload_lists_the_known_ones(fmnist_root):
    (problem,) = problems(suite_dict(fmnist_root, workloads=["fmnist-mpl"]))
    assert problem.startswith("workloads: ") and "fmnist-mpl" in problem
    for name in workload_names():
        assert name in problem


def test_warmups_must_fit_in_the_epochs(fmnist_root):
    arms = [{"name": "baseline", "kind": "baseline", "peak_lrs": [0.001], "warmup_epochs": [1, 6]}]
    found = problems(suite_dict(fmnist_root, epochs=2, arms=arms))
    # the grid's 6 warmup epochs and the recipe's default warmup (2 epochs) both reach the 2 epochs
    assert any(p.startswith("arms[0].warmup_epochs:") and "[6.0]" in p for p in found), found
    assert any(p.startswith("arms[0].default_warmup_epochs:") and "include_default: false" in p for p in found), found
    arms[0].update(warmup_epochs=[1], default_warmup_epochs=1)
    validate_suite(suite_dict(fmnist_root, epochs=2, arms=arms))


def test_arm_level_problems_name_the_arm_field(fmnist_root):
    arms = [
        {"name": "b", "kind": "baseline", "peak_lrs": [0.1], "base_lrs": [0.1]},
        {"name": "c", "kind": "bsaeline"},
        {"name": "d", "kind": "autowu", "autowu": {"test_interval": "often", "lr_min": -1}},
        {"name": "bad name!", "kind": "autowu"},
    ]
    found = problems(suite_dict(fmnist_root, arms=arms))
    text = "\n".join(found)
    assert "arms[0]: give either peak_lrs" in text
    assert "arms[1]:" in text and "set kind to 'autowu' or 'baseline'" in text
    assert "arms[2].autowu.test_interval: test_interval='often' must be 'epoch', 'auto' or a positive" in text
    assert "arms[2].autowu.lr_min: lr_min=-1.0 must be a number > 0" in text
    assert "arms[3].name:" in text and "letters, digits" in text


def test_duplicate_arm_names_and_unknown_nested_field(fmnist_root):
    arms = [{"name": "x", "kind": "autowu"}, {"name": "x", "kind": "autowu", "autowu": {"patiense": 2}}]
    found = problems(suite_dict(fmnist_root, arms=arms))
    assert any(p.startswith("arms[1].autowu.patiense:") and "'patience'" in p for p in found), found
    found = problems(suite_dict(fmnist_root, arms=arms[:1] * 2))
    assert found == ["arms: duplicate arm name(s) ['x']; list each once"]


def test_train_subset_must_hold_a_batch_and_micro_batch_divides(fmnist_root):
    raw = suite_dict(fmnist_root, data={"root": fmnist_root, "train_subset": 100}, batch_sizes=[64, 128])
    (problem,) = problems(raw)
    assert problem.startswith("data.train_subset:") and "[128]" in problem
    raw = suite_dict(fmnist_root, batch_sizes=[64, 80], training={"micro_batch": 16})
    (problem,) = problems(raw)
    assert problem == "batch_sizes: " + batch_split_problem(80, 2, 16)


def test_batch_split_rule_and_message():
    assert batch_split_problem(64, 2, 16) is None and batch_split_problem(96, 3) is None
    assert batch_split_problem(80, 2, 16) == (
        "batch size 80 is not divisible by 2 workers x micro_batch 16 = 32; use a multiple of 32 "
        "or change the number of workers or micro_batch"
    )
    assert batch_split_problem(33, 2) == (
        "batch size 33 is not divisible by 2 workers = 2; use a multiple of 2 or change the number of workers"
    )
    assert batch_split_problem(32, 2, 32) is not None  # a micro-batch larger than the per-worker batch


def test_every_batch_size_that_does_not_split_is_reported(fmnist_root):
    found = problems(suite_dict(fmnist_root, batch_sizes=[63, 64, 65]))
    assert found == [f"batch_sizes: {batch_split_problem(b, 2)}" for b in (63, 65)]


def test_gpu_resources_are_consistent(fmnist_root):
    (problem,) = problems(suite_dict(fmnist_root, resources={"workers_per_trial": 2, "gpus_per_worker": 1}))
    assert problem.startswith("resources:") and "use_gpu" in problem
    suite = validate_suite(suite_dict(fmnist_root, resources={"workers_per_trial": 2, "use_gpu": True}))
    assert suite.resources.gpus == 1.0


def test_only_the_training_options_the_step_supports_are_accepted(fmnist_root):
    (problem,) = problems(suite_dict(fmnist_root, training={"amp": "fp16"}))
    assert problem.startswith("training.amp:") and "bf16" in problem
    assert validate_suite(suite_dict(fmnist_root, training={"amp": "bf16"})).training.amp == "bf16"


def test_an_lr_range_against_autowus_default_is_checked_too(fmnist_root):
    raw = suite_dict(fmnist_root)
    raw["arms"][0]["autowu"]["lr_max"] = 1e-9
    (problem,) = problems(raw)
    assert problem == "arms[0].autowu.lr_max: lr_max=1e-09 must be a number > lr_min=1e-05 (lr_min: AutoWU's default)"
    # Given the other way round, the default is the option the problem is reported at.
    raw = suite_dict(fmnist_root)
    raw["arms"][0]["autowu"]["lr_min"] = 2.0
    (problem,) = problems(raw)
    assert problem == "arms[0].autowu.lr_max: lr_max=1.0 must be a number > lr_min=2.0 (lr_max: AutoWU's default)"
    # An option that compares with nothing gets no note.
    raw = suite_dict(fmnist_root)
    raw["arms"][0]["autowu"]["patience"] = 0
    (problem,) = problems(raw)
    assert problem == "arms[0].autowu.patience: patience=0 must be an integer >= 1"


@pytest.mark.parametrize("option, value", [
    ("lr_min", 0.0), ("lr_max", 1e-6), ("max_warmup_fraction", 1.5), ("warmup", "cubic"), ("confidence", 1.0),
    ("patience", 0), ("const_fraction", -0.1), ("test_interval", 0), ("test_interval", "often"),
    ("divergence_factor", 1.0),
])
def test_autowu_option_errors_are_autowus_own_at_their_field(fmnist_root, option, value):
    with pytest.raises(ValueError) as raised:
        AutoWUCore(10, 10, **{option: value})
    raw = suite_dict(fmnist_root)
    raw["arms"][0]["autowu"] = {option: value}
    (problem,) = problems(raw)
    assert problem.startswith(f"arms[0].autowu.{option}: {raised.value}")


def test_every_autowu_option_problem_of_an_arm_is_reported(fmnist_root):
    raw = suite_dict(fmnist_root)
    raw["arms"][0]["autowu"] = {"confidence": 2, "patience": 0, "max_warmup_fraction": 0}
    found = problems(raw)
    assert [p.split(":")[0] for p in found] == ["arms[0].autowu.confidence", "arms[0].autowu.patience"]


def test_autowu_options_are_autowu_keywords():
    """One list of the options: the dataclass's fields are AutoWUCore keywords (all of them but the step
    counts, the trial's own decay and seed, and the detector), and the suite schema's fields are the
    dataclass's, in its order."""
    parameters = inspect.signature(AutoWUCore.__init__).parameters.values()
    keywords = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
    assert list(AutoWUOptions.names()) == [k for k in keywords if k not in ("decay", "seed", "detector")]
    assert list(AutoWUOptionsSchema.model_fields) == list(AutoWUOptions.names())


def test_packaged_suites_load_by_name_and_unknown_names_list_them(fmnist_root):
    for name in ("quick", "smoke"):
        suite = load_suite(name, sets=[f"data.root={fmnist_root}", "data.train_subset=1024", "data.val_size=200",
                                       "batch_sizes=[256]"])
        assert suite.name == name
    with pytest.raises(SuiteError) as info:
        load_suite("quik")
    assert "quick" in str(info.value) and "smoke" in str(info.value)


def test_load_suite_applies_flags_after_the_file_and_keeps_the_source(fmnist_root):
    suite = load_suite("smoke", sets=[f"data.root={fmnist_root}"], only=["baseline"], tracking_uri="sqlite:///x.db",
                       results="/tmp/r")
    assert suite.tracking_uri == "sqlite:///x.db" and suite.results == "/tmp/r"
    assert [a.name for a in suite.arms] == ["baseline"]
    assert suite.source.endswith("smoke.yaml")  # kept through the --only selection
    assert validate_suite(suite_dict(fmnist_root)).source is None


def test_quick_suite_meets_the_brief():
    raw = read_suite("quick")
    assert raw["workloads"] == ["fmnist-mlp"] and raw["data"]["root"] is None
    assert len(raw["batch_sizes"]) >= 2 and max(raw["batch_sizes"]) >= 4096
    arms = {a["name"]: a for a in raw["arms"]}
    decays = {a["decay"] for a in arms.values() if a["kind"] == "autowu" and a["autowu"]["test_interval"] == "epoch"}
    assert decays == {"cosine", "const-cos"}
    assert any(a["kind"] == "autowu" and a["autowu"]["test_interval"] == "auto" for a in arms.values())
    grid = arms["baseline"]
    assert len(grid["base_lrs"]) >= 3 and len(grid["warmup_epochs"]) >= 2 and grid["include_default"]
    assert raw["resources"]["workers_per_trial"] == 2 and not raw["resources"]["use_gpu"]


def test_overrides_by_path_index_and_arm_name(fmnist_root):
    raw, _ = apply_overrides(
        suite_dict(fmnist_root),
        ["epochs=3", "data.val_size=100", "arms.baseline.peak_lrs=[0.01, 0.02]", "arms.0.decay=const-cos",
         "training.amp=bf16", "tracking_uri=http://h:5000"],
    )
    suite = validate_suite(raw)
    assert suite.epochs == 3 and suite.data.val_size == 100
    assert suite.arms[1].peak_lrs == [0.01, 0.02] and suite.arms[0].decay == "const-cos"
    assert suite.training.amp == "bf16" and suite.tracking_uri == "http://h:5000"
    assert suite_dict(fmnist_root)["epochs"] == 6  # the input is not modified


def test_bad_overrides_are_all_reported(fmnist_root):
    with pytest.raises(SuiteError) as info:
        apply_overrides(suite_dict(fmnist_root), ["epochs", "arms.nosuch.decay=cosine", "epochs.x=1"])
    found = info.value.problems
    assert len(found) == 3
    assert "expected key=value" in found[0]
    assert "'nosuch'" in found[1] and "autowu-auto" in found[1] and "baseline" in found[1]
    assert "epochs holds 6, which has no field 'x'" in found[2]


def test_an_overridden_value_is_validated_like_the_file(fmnist_root):
    raw, _ = apply_overrides(suite_dict(fmnist_root), ["epochs=-1", "batch_sizes=[63]"])
    assert {p.split(":")[0] for p in problems(raw)} == {"epochs", "batch_sizes"}


def test_only_picks_arms_batch_sizes_and_workloads(fmnist_root):
    suite = validate_suite(suite_dict(fmnist_root))
    picked = select(suite, ["baseline", "128"])
    assert [a.name for a in picked.arms] == ["baseline"] and picked.batch_sizes == [128]
    assert all(t.arm == "baseline" and t.batch_size == 128 for t in expand(picked))
    assert select(suite, ["autowu-auto,64"]).batch_sizes == [64]
    assert select(suite, []) is suite
    with pytest.raises(SuiteError) as info:
        select(suite, ["4096", "autowu-cos"])
    assert "['4096', 'autowu-cos']" in str(info.value) and "batch sizes: [64, 128]" in str(info.value)


def test_expansion_counts_ids_and_default_point(fmnist_root):
    suite = validate_suite(suite_dict(fmnist_root, seeds=[0, 1]))
    trials = expand(suite)
    recipe = get_workload("fmnist-mlp").recipe
    # per batch size: 1 AutoWU + 2 x 2 grid + the default point; x 2 seeds
    assert len(trials) == 2 * 2 * (1 + 4 + 1)
    ids = [t.trial_id for t in trials]
    assert len(set(ids)) == len(ids)
    assert ids == [t.trial_id for t in expand(validate_suite(suite_dict(fmnist_root, seeds=[0, 1])))]
    assert "baseline_fmnist-mlp_b64_lr0.003_w2_s1" in ids and "autowu-auto_fmnist-mlp_b128_s0" in ids
    for batch in (64, 128):
        defaults = [t for t in trials if t.batch_size == batch and t.is_default]
        assert len(defaults) == 2  # one per seed
        assert defaults[0].peak_lr == pytest.approx(recipe.base_lr * math.sqrt(batch / recipe.base_batch))
        assert defaults[0].warmup_epochs == recipe.warmup_epochs
    auto = trials[0]
    assert auto.kind == "autowu" and auto.autowu == AutoWUOptions(test_interval="auto") and auto.decay == "cosine"
    assert auto.optimizer == recipe.optimizer and auto.weight_decay == recipe.weight_decay
    assert auto.num_workers == 2 and auto.data_root == fmnist_root and auto.train_subset == 1000


def test_default_point_merges_with_an_equal_grid_point(fmnist_root):
    recipe = get_workload("fmnist-mlp").recipe
    arms = [{"name": "baseline", "kind": "baseline", "base_lrs": [recipe.base_lr, 3 * recipe.base_lr],
             "warmup_epochs": [recipe.warmup_epochs]}]
    trials = expand(validate_suite(suite_dict(fmnist_root, arms=arms, batch_sizes=[1024],
                                              data={"root": fmnist_root, "val_size": 200})))
    assert len(trials) == 2
    assert [t.is_default for t in trials] == [True, False]
    assert trials[1].peak_lr == pytest.approx(3 * recipe.base_lr * 2)  # sqrt(1024 / 256) = 2


def test_linear_scaling_rule(fmnist_root):
    arms = [{"name": "bl", "kind": "baseline", "base_lrs": [0.001], "scaling": "linear", "base_batch": 64,
             "warmup_epochs": [1], "include_default": False}]
    (trial,) = expand(validate_suite(suite_dict(fmnist_root, arms=arms, batch_sizes=[128])))
    assert trial.peak_lr == pytest.approx(0.002) and trial.trial_id == "bl_fmnist-mlp_b128_lr0.002_w1_s0"


def test_resolved_yaml_reloads_to_the_same_trials(fmnist_root, tmp_path):
    suite = select(validate_suite(suite_dict(fmnist_root)), ["64"])
    path = tmp_path / "resolved.yaml"
    path.write_text(suite_to_yaml(suite))
    assert yaml.safe_load(path.read_text())["batch_sizes"] == [64]
    assert expand(load_suite(str(path))) == expand(suite)


def test_error_text_names_the_source_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nworkloads: [fmnist-mlp]\n")
    with pytest.raises(SuiteError) as info:
        load_suite(str(path))
    assert str(path) in str(info.value)
    assert {p.split(":")[0] for p in info.value.problems} == {"batch_sizes", "arms"}


def test_an_arm_with_another_optimizer_takes_its_base_lr_and_weight_decay(fmnist_root):
    raw = suite_dict(fmnist_root, batch_sizes=[256], arms=[
        {"name": "sgd-baseline", "kind": "baseline", "optimizer": "sgd", "warmup_epochs": [1],
         "include_default": True}])
    (trial,) = expand(validate_suite(raw))
    sgd = get_workload("fmnist-mlp").recipe.with_optimizer("sgd")
    assert trial.optimizer == "sgd" and trial.is_default
    assert trial.weight_decay == sgd.weight_decay != get_workload("fmnist-mlp").recipe.weight_decay
    assert trial.peak_lr == pytest.approx(sgd.base_lr * math.sqrt(256 / sgd.base_batch))


def test_a_key_given_twice_is_refused_not_last_wins(fmnist_root, tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(suite_dict(fmnist_root), sort_keys=False) + "epochs: 3\n")
    with pytest.raises(SuiteError) as info:
        read_suite(str(path))
    (problem,) = info.value.problems
    assert problem.startswith("not valid YAML: line ") and "key 'epochs' given twice (first on line " in problem
    nested = "name: t\ndata:\n  root: /a\n  val_size: 10\n  root: /b\n"
    path.write_text(nested)
    with pytest.raises(SuiteError, match="line 5, column 3: key 'root' given twice \\(first on line 3\\); keep one"):
        read_suite(str(path))
    with pytest.raises(SuiteError, match="key 'root' given twice"):
        apply_overrides(suite_dict(fmnist_root), ["data={root: /a, root: /b}"])
    # a merge key (<<) may still be overridden: that is what it is for
    path.write_text("base: &b {epochs: 2, seeds: [0]}\nname: t\nmore:\n  <<: *b\n  epochs: 3\n")
    assert read_suite(str(path))["more"] == {"epochs": 3, "seeds": [0]}


def test_a_suite_file_that_is_not_utf8_or_cannot_be_read_is_one_problem(tmp_path, monkeypatch):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SuiteError) as info:
        read_suite(str(path))
    assert info.value.problems == ["not UTF-8 text (byte 0xe9 at offset 9); save the file as UTF-8"]
    assert str(path) in str(info.value)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    path.write_text("name: t\n")
    monkeypatch.setattr("pathlib.Path.read_bytes", denied)  # root reads any file: the refusal is simulated
    with pytest.raises(SuiteError) as info:
        read_suite(str(path))
    assert info.value.problems == ["the file cannot be read (Permission denied); check that it is a readable file"]


def test_paths_that_cannot_be_paths_are_refused(fmnist_root):
    found = problems(suite_dict("/tmp/a\0b", results="~no-such-user-here/runs"))
    assert any(p.startswith("data.root: a path cannot hold a NUL character") for p in found), found
    assert any(p.startswith("results: '~' names no user of this machine") for p in found), found


def test_infinite_values_and_seeds_outside_numpys_range_are_refused(fmnist_root):
    arms = [{"name": "b", "kind": "baseline", "peak_lrs": [float("inf")]},
            {"name": "a", "kind": "autowu", "autowu": {"lr_max": float("nan")}}]
    found = problems(suite_dict(fmnist_root, arms=arms, seeds=[0, 2**32], resources={"cpus_per_worker": float("inf")}))
    fields = {p.split(":")[0] for p in found}
    assert fields == {"arms[0].peak_lrs[0]", "arms[1].autowu.lr_max", "seeds[1]", "resources.cpus_per_worker"}, found
    assert all("finite number" in p for p in found if not p.startswith("seeds")), found


def test_a_test_interval_far_beyond_the_budget_is_a_warning_not_a_crash(fmnist_root):
    from autowu_bench.platform.checks.autowu_density import schedule_warnings

    arms = [{"name": "a", "kind": "autowu", "autowu": {"test_interval": 10**20}}]
    (warning,) = schedule_warnings(expand(validate_suite(suite_dict(fmnist_root, batch_sizes=[64], arms=arms))))
    assert "lets the LR grow xinf between tests" in warning


def test_only_takes_batch_sizes_in_ascii_digits(fmnist_root):
    suite = validate_suite(suite_dict(fmnist_root))
    with pytest.raises(SuiteError, match="'²'"):
        select(suite, ["²"])


def test_a_bad_set_is_named_as_typed_not_by_the_files_index(fmnist_root):
    sets = ["arms.baseline.peak_lr=0.1", "epochs=0", "arms.baseline.peak_lrs=[-1]", "resources={workers_per_trial: 0}"]
    raw, overrides = apply_overrides(suite_dict(fmnist_root), sets)
    with pytest.raises(SuiteError) as info:
        validate_suite(raw, source="smoke.yaml", overrides=overrides)
    found = sorted(info.value.problems)
    assert info.value.source == "the --set values" and "in the --set values:" in str(info.value)
    assert found[0].startswith("--set arms.baseline.peak_lr=0.1: no such field 'peak_lr' (got 0.1); fix the key "
                               "(did you mean 'peak_lrs'?); allowed: [")
    assert found[1] == "--set arms.baseline.peak_lrs=[-1]: [0]: Input should be greater than 0 (got -1)"
    assert found[2] == "--set epochs=0: Input should be greater than 0 (got 0)"
    assert found[3] == "--set resources={workers_per_trial: 0}: workers_per_trial: Input should be greater than 0 (got 0)"
    assert not any("arms[" in p for p in found)
    # a later --set that replaces an earlier one's value takes its blame
    raw, overrides = apply_overrides(suite_dict(fmnist_root), ["epochs=0", "arms.1.peak_lrs=[-1]",
                                                               "arms=[{name: b, kind: baseline, peak_lrs: [0]}]"])
    assert overrides == {"epochs": "epochs=0", "arms": "arms=[{name: b, kind: baseline, peak_lrs: [0]}]"}


def test_the_file_is_blamed_only_for_its_own_problems(fmnist_root):
    raw, overrides = apply_overrides(suite_dict(fmnist_root, batch_sizes=[63]), ["arms.1.peak_lrs=[0]"])
    with pytest.raises(SuiteError) as info:
        validate_suite(raw, source="my.yaml", overrides=overrides)
    assert info.value.source == "my.yaml and the --set values"
    assert sorted(p.split(":")[0] for p in info.value.problems) == ["--set arms.1.peak_lrs=[0]", "batch_sizes"]
    # a --set that does not touch the bad field leaves it the file's
    raw, overrides = apply_overrides(suite_dict(fmnist_root, batch_sizes=[63]), ["epochs=3"])
    with pytest.raises(SuiteError) as info:
        validate_suite(raw, source="my.yaml", overrides=overrides)
    assert info.value.source == "my.yaml" and info.value.problems[0].startswith("batch_sizes:")
