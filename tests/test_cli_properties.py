"""Property: whatever suite document, ``--set`` and ``--only`` values the command line is given, a dry run
either lists a valid suite (exit 0) or prints the problems (exit 2); it never raises anything else.

Documents are random YAML text, random mappings, and a valid suite with random values at its fields;
``--set`` values are random keys (the suite's field paths among them) with random YAML values. Every
example goes through ``launch.cli.main`` with ``--dry-run``, the entry point the command line uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from autowu_bench.launch import cli as launch_cli
from autowu_bench.launch import plan as launch_plan
from autowu_bench.launch.exit_status import ExitStatus
from autowu_bench.platform.suite.loader import load_suite, suite_to_yaml
from autowu_bench.workloads import workload_names


FIELDS = [
    "name", "description", "workloads", "batch_sizes", "epochs", "seeds", "arms", "arms.0", "arms.1",
    "arms.0.kind", "arms.0.decay", "arms.0.optimizer", "arms.0.weight_decay", "arms.0.autowu",
    "arms.0.autowu.lr_min", "arms.0.autowu.lr_max", "arms.0.autowu.test_interval", "arms.0.autowu.patience",
    "arms.0.autowu.max_warmup_fraction", "arms.0.autowu.warmup", "arms.baseline.peak_lrs",
    "arms.baseline.base_lrs", "arms.baseline.scaling", "arms.baseline.warmup_epochs",
    "arms.baseline.include_default", "arms.baseline.default_warmup_epochs", "resources",
    "resources.workers_per_trial", "resources.use_gpu", "resources.cpus_per_worker",
    "resources.gpus_per_worker", "resources.max_concurrent_trials", "resources.max_failures", "training",
    "training.micro_batch", "training.amp", "data", "data.root", "data.train_subset", "data.val_size",
    "tracking_uri", "results", "nope", "arms.7.name",
]
NAMES = [*workload_names(), "autowu-auto", "baseline", "32", "64", "cos", "cosine", "const-cos", "sqrt", "bf16",
         "sgd", "adamp", "lamb", "auto", "epoch"]

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(NAMES)
scalars = (st.none() | st.booleans() | st.integers(-3, 5000) | st.integers() | st.floats(allow_nan=True) | text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                      max_leaves=12)
# Values a suite field could well hold, so that many examples stay valid and reach expansion and planning.
plausible = (st.none() | st.booleans() | st.integers(0, 64) | st.integers(2**31, 2**70) | st.floats(1e-5, 2.0)
             | st.sampled_from(NAMES) | st.lists(st.integers(1, 128) | st.integers(2**31, 2**70), min_size=1, max_size=3)
             | st.lists(st.floats(1e-5, 1.0), min_size=1, max_size=2))
# Text of YAML's own syntax, to reach the parser's errors (and a repeated key now and then).
yaml_text = st.lists(st.sampled_from(list("abz019 :-[]{},\n\t'\"#&*!|>%@`.~\\\xffé") + ["epochs: 3\n", "name: x\n"]),
                     max_size=40).map("".join)


@st.composite
def mutated_suite(draw, base: dict) -> dict:
    """The valid ``base`` suite with a few of its fields (or new ones) set to random values."""
    raw = yaml.safe_load(yaml.safe_dump(base))
    for path in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        node, *keys = path.split(".")
        parent, key = raw, node
        for part in keys:
            child = parent[key] if isinstance(parent, list) else parent.get(key)
            if isinstance(child, list):
                index = int(part) if part.isdigit() else next(
                    (i for i, item in enumerate(child) if isinstance(item, dict) and item.get("name") == part), None)
                if index is None or index >= len(child):
                    break
                parent, key = child, index
            elif isinstance(child, dict):
                parent, key = child, part
            else:
                break
        else:
            parent[key] = draw(st.one_of(plausible, plausible, plausible, values))  # mostly plausible
    return raw


def documents(base: dict) -> st.SearchStrategy[str]:
    as_yaml = st.builds(lambda v: yaml.safe_dump(v, allow_unicode=True), mutated_suite(base) | values)
    return mutated_suite(base).map(yaml.safe_dump) | as_yaml | yaml_text


assignments = st.builds(
    lambda key, value: f"{key}={value}",
    st.sampled_from(FIELDS) | text,
    st.builds(lambda v: yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("..."),
              plausible | values) | yaml_text,
) | text


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """The smoke suite over an empty data root (a missing data set is a warning in a dry run)."""
    root = tmp_path_factory.mktemp("no-data")
    suite = load_suite("smoke", sets=[f"data.root={root}"])
    return yaml.safe_load(suite_to_yaml(suite))


def test_any_document_and_overrides_give_a_suite_or_exit_2(base, tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("suites")
    monkeypatch.chdir(folder)  # relative data roots and results folders land here (nothing is written)
    monkeypatch.delenv("AUTOWU_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(launch_plan, "new_run_dir", lambda *a: pytest.fail("a dry run created a run folder"))

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(document=documents(base), sets=st.lists(assignments, max_size=3),
           only=st.lists(st.sampled_from(NAMES) | text, max_size=2))
    def check(document: str, sets: list[str], only: list[str]) -> None:
        path = folder / "suite.yaml"
        path.write_text(document, encoding="utf-8")
        argv = ["--suite", str(path), "--dry-run", *(f"--set={s}" for s in sets), *(f"--only={o}" for o in only)]
        code = launch_cli.main(argv)
        event(f"exit status {code}")
        assert code in (ExitStatus.OK, ExitStatus.INVALID)

    check()
    assert sorted(p.name for p in folder.iterdir()) == ["suite.yaml"]
