"""Suites: the YAML schema, its validation, command-line overrides and the expansion into trials.

A suite names workloads, batch sizes, epochs, seeds and arms; ``expand`` turns it into one
``TrialSpec`` per arm x workload x batch size x grid point x seed. Validation runs before anything
starts and reports every problem at once, each with the field, the bad value and the fix.

Schema (every field but ``name``, ``workloads``, ``batch_sizes`` and ``arms`` has a default)::

    name: quick                    # experiment name in MLflow and folder under the results folder
    description: ""
    workloads: [fmnist-mlp]        # names from autowu_bench.workloads
    batch_sizes: [256, 4096]       # global batch: all workers and accumulation steps together
    epochs: 20                     # null: each workload's recipe epochs
    seeds: [0]
    arms:
      - name: autowu-cos           # letters, digits, "-" and "_"; unique
        kind: autowu
        decay: cosine              # "cosine" (or "cos") | "const-cos"
        optimizer: null            # null: the workload recipe's ("adamp" | "lamb" | "sgd")
        weight_decay: null         # null: the recipe's
        autowu: {test_interval: epoch}   # any AutoWU keyword: lr_min, lr_max, max_warmup_fraction,
                                         # warmup, confidence, patience, const_fraction, test_interval,
                                         # divergence_factor; unset ones keep AutoWU's defaults
      - name: baseline
        kind: baseline             # linear warmup to a peak LR, then cosine to 0
        peak_lrs: [0.001, 0.003]   # explicit peak LRs, the same for every batch size; or
        base_lrs: null             # base LRs scaled to each batch size by `scaling` from `base_batch`
        scaling: null              # "sqrt" | "linear"; null: the recipe's rule
        base_batch: null           # null: the recipe's base batch
        warmup_epochs: [1, 5]
        include_default: true      # add the untuned default: the recipe's base LR scaled by the rule,
        default_warmup_epochs: null  # with this many warmup epochs (null: the recipe's, 5 in the paper)
    resources:
      workers_per_trial: 2         # Ray Train workers (data-parallel ranks) per trial
      use_gpu: false
      cpus_per_worker: 1
      gpus_per_worker: null        # null: 1 with use_gpu, else 0
      max_concurrent_trials: null  # null: as many as the cluster fits
    training: {micro_batch: null, amp: null, channels_last: false, compile: false}
    data:
      root: null                   # null: the workload's default location
      train_subset: null           # train on this many images (after the validation split)
      val_size: 5000               # images held out of the training set for validation
    tracking_uri: null             # null: run_suite.py starts a local MLflow server
    results: runs                  # runs go to <results>/<name>/<timestamp>/
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autowu_bench.platform.spec import TrialSpec
from autowu_bench.schedulers.autowu import AutoWUCore
from autowu_bench.schedulers.lr_functions import SCALING_RULES, scaled_peak_lr
from autowu_bench.workloads.data.sharding import train_steps

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
OPTIMIZERS = ("adamp", "lamb", "sgd")


class SuiteError(ValueError):
    """A suite that cannot run; ``problems`` lists every problem, one line each (field: what, fix)."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


def _decay_alias(value: Any) -> Any:
    return "cosine" if value == "cos" else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoWUOptions(_Strict):
    """Keyword arguments for ``AutoWUCore``; only the ones set reach the trial (the rest keep AutoWU's)."""

    lr_min: PositiveFloat | None = None
    lr_max: PositiveFloat | None = None
    max_warmup_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    warmup: Literal["exp", "linear"] | None = None
    confidence: Annotated[float, Field(gt=0, lt=1)] | None = None
    patience: PositiveInt | None = None
    const_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    test_interval: str | int | None = None
    divergence_factor: Annotated[float, Field(gt=1)] | None = None

    @field_validator("test_interval")
    @classmethod
    def _interval(cls, value: str | int | None) -> str | int | None:
        if value is None or value in ("epoch", "auto") or (isinstance(value, int) and value >= 1):
            return value
        raise ValueError(
            "test_interval must be 'epoch' (the paper's rule), 'auto' (a test per x1.12 LR growth) "
            "or a positive number of steps"
        )

    @model_validator(mode="after")
    def _lr_range(self) -> "AutoWUOptions":
        # One of the two may be AutoWU's default: compare with that (lr_max 1e-9 alone is below lr_min 1e-5).
        defaults = inspect.signature(AutoWUCore.__init__).parameters
        lo = self.lr_min if self.lr_min is not None else defaults["lr_min"].default
        hi = self.lr_max if self.lr_max is not None else defaults["lr_max"].default
        if hi <= lo:
            def said(name: str, value: float) -> str:
                return f"{name}={value:g}" + ("" if getattr(self, name) is not None else " (AutoWU's default)")

            raise ValueError(f"{said('lr_max', hi)} must be > {said('lr_min', lo)}; raise lr_max or lower lr_min")
        return self

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class AutoWUArm(_Strict):
    """AutoWU with one decay."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["autowu"]
    decay: Annotated[Literal["cosine", "const-cos"], BeforeValidator(_decay_alias)] = "const-cos"
    optimizer: Literal[OPTIMIZERS] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    autowu: AutoWUOptions = AutoWUOptions()


class BaselineArm(_Strict):
    """Linear warmup then cosine, over a grid of peak LRs x warmup epochs (+ the untuned default)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["baseline"]
    optimizer: Literal[OPTIMIZERS] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    peak_lrs: list[PositiveFloat] | None = None
    base_lrs: list[PositiveFloat] | None = None
    scaling: Literal[tuple(SCALING_RULES)] | None = None
    base_batch: PositiveInt | None = None
    warmup_epochs: list[Annotated[float, Field(ge=0)]] = [5.0]
    include_default: bool = True
    default_warmup_epochs: Annotated[float, Field(ge=0)] | None = None

    @field_validator("peak_lrs", "base_lrs", "warmup_epochs")
    @classmethod
    def _no_repeats(cls, values: list[float] | None, info: ValidationInfo) -> list[float] | None:
        return values if values is None else _unique(values, info.field_name.removesuffix("s"))

    @model_validator(mode="after")
    def _one_grid(self) -> "BaselineArm":
        if self.peak_lrs is not None and self.base_lrs is not None:
            raise ValueError(
                "give either peak_lrs (the same for every batch size) or base_lrs (scaled to each batch "
                "size by `scaling`), not both; remove one"
            )
        if self.peak_lrs is None and self.base_lrs is None and not self.include_default:
            raise ValueError("the grid is empty: give peak_lrs or base_lrs, or set include_default: true")
        return self


Arm = Annotated[Union[AutoWUArm, BaselineArm], Field(discriminator="kind")]


class Resources(_Strict):
    workers_per_trial: PositiveInt = 1
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] | None = None
    max_concurrent_trials: PositiveInt | None = None

    @model_validator(mode="after")
    def _gpus(self) -> "Resources":
        if not self.use_gpu and self.gpus_per_worker:
            raise ValueError(
                f"gpus_per_worker={self.gpus_per_worker} needs use_gpu: true; set use_gpu or remove gpus_per_worker"
            )
        if self.use_gpu and self.gpus_per_worker == 0:
            raise ValueError("use_gpu: true with gpus_per_worker: 0; give each worker a GPU share > 0")
        return self

    @property
    def gpus(self) -> float:
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        return 1.0 if self.use_gpu else 0.0


class Training(_Strict):
    micro_batch: PositiveInt | None = None
    amp: Literal["bf16"] | None = None  # bfloat16 autocast (fp16 would need loss scaling: not built)
    channels_last: bool = False
    compile: bool = False


class Data(_Strict):
    root: str | None = None
    train_subset: PositiveInt | None = None
    val_size: NonNegativeInt = 5000

    @field_validator("root")
    @classmethod
    def _absolute(cls, root: str | None) -> str | None:
        # Workers on other nodes resolve the same absolute path; "~" is the launching user's home.
        return None if root is None else str(Path(root).expanduser().absolute())


def _registry():
    from autowu_bench import workloads

    return workloads


def _recipe(name: str):
    return _registry().get_workload(name).recipe


class Suite(_Strict):
    """A validated suite. Fields are declared in dependency order: a validator may read the fields
    above its own (``info.data``), which are present only when they themselves were valid, so every
    independent problem is reported in one pass."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    workloads: Annotated[list[str], Field(min_length=1)]
    epochs: PositiveInt | None = None
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] = [0]
    resources: Resources = Resources()
    training: Training = Training()
    batch_sizes: Annotated[list[PositiveInt], Field(min_length=1)]
    data: Data = Data()
    arms: Annotated[list[Arm], Field(min_length=1)]
    tracking_uri: str | None = None
    results: str = "runs"

    @field_validator("workloads")
    @classmethod
    def _known_workloads(cls, names: list[str]) -> list[str]:
        known = list(_registry().workload_names())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown workload(s) {unknown}; known: {known}")
        _unique(names, "workload")
        return names

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        return _unique(seeds, "seed")

    @field_validator("batch_sizes")
    @classmethod
    def _divisible(cls, sizes: list[int], info: ValidationInfo) -> list[int]:
        _unique(sizes, "batch size")
        resources, training = info.data.get("resources"), info.data.get("training")
        if resources is None or training is None:
            return sizes
        workers, micro = resources.workers_per_trial, training.micro_batch
        unit = workers * (micro or 1)
        bad = [b for b in sizes if b % unit]
        if bad:
            what = f"{workers} workers" + (f" x micro_batch {micro}" if micro else "")
            raise ValueError(
                f"batch size(s) {bad} not divisible by {what} = {unit}; use multiples of {unit} "
                "or change resources.workers_per_trial" + (" / training.micro_batch" if micro else "")
            )
        return sizes

    @field_validator("data")
    @classmethod
    def _data_present(cls, data: Data, info: ValidationInfo) -> Data:
        problems: list[str] = []
        for name in info.data.get("workloads") or []:
            for problem in _registry().get_workload(name).check_data(data.root):
                problems += [] if _at("root", problem) in problems else [_at("root", problem)]
        sizes, resources = info.data.get("batch_sizes"), info.data.get("resources")
        if data.train_subset is not None and sizes and resources:
            workers = resources.workers_per_trial
            empty = [b for b in sizes if train_steps(data.train_subset, batch_size=b // workers, world_size=workers) == 0]
            if empty:
                problems.append(_at(
                    "train_subset", f"train_subset={data.train_subset} gives no full batch per epoch at batch size(s) "
                    f"{empty}; raise train_subset to at least {max(empty)} or drop those batch sizes"
                ))
        if problems:
            raise ValueError("\n".join(problems))
        return data

    @field_validator("arms")
    @classmethod
    def _arms_fit(cls, arms: list[AutoWUArm | BaselineArm], info: ValidationInfo) -> list:
        _unique([a.name for a in arms], "arm name")
        workloads = info.data.get("workloads")
        if not workloads:
            return arms
        problems = []
        for name in workloads:
            recipe = _recipe(name)
            epochs = info.data.get("epochs") or recipe.epochs
            for i, arm in enumerate(arms):
                if not isinstance(arm, BaselineArm):
                    continue
                too_long = [w for w in arm.warmup_epochs if w >= epochs]
                if too_long:
                    problems.append(_at(
                        f"[{i}].warmup_epochs", f"warmup_epochs {too_long} not below the {epochs} epochs of "
                        f"{name}; use fewer warmup epochs or more epochs"
                    ))
                default_w = _default_warmup(arm, recipe)
                if arm.include_default and default_w >= epochs:
                    problems.append(_at(
                        f"[{i}].default_warmup_epochs", f"the untuned default's {default_w:g} warmup epochs are not below "
                        f"the {epochs} epochs of {name}; set default_warmup_epochs below {epochs} "
                        "or include_default: false"
                    ))
        if problems:
            raise ValueError("\n".join(problems))
        return arms


def _at(subpath: str, message: str) -> str:
    """A problem below the field being validated: ``_problems`` appends ``subpath`` to the field's path."""
    return f"@{subpath} {message}"


def _unique(values: list, what: str) -> list:
    duplicates = sorted({v for v in values if values.count(v) > 1}, key=str)
    if duplicates:
        raise ValueError(f"duplicate {what}(s) {duplicates}; list each once")
    return values


def _default_warmup(arm: BaselineArm, recipe: Any) -> float:
    return arm.default_warmup_epochs if arm.default_warmup_epochs is not None else recipe.warmup_epochs


# -- error messages ----------------------------------------------------------------------------------

_FIX = {
    "missing": "add it",
    "extra_forbidden": "remove it or fix its spelling",
    "union_tag_invalid": "set kind to 'autowu' or 'baseline'",
    "union_tag_not_found": "add kind: autowu or kind: baseline",
    "string_pattern_mismatch": "use letters, digits, '-' and '_' only",
}


def _field_path(loc: tuple, raw: Any) -> str:
    """``("arms", 1, "baseline", "peak_lrs", 0)`` -> ``arms[1].peak_lrs[0]`` (the union tag dropped)."""
    parts: list[str] = []
    for key, _ in _walk(loc, raw):
        parts.append(f"[{key}]" if isinstance(key, int) else ("." if parts else "") + str(key))
    return "".join(parts) or "(suite)"


def _walk(loc: tuple, raw: Any) -> Iterable[tuple[Any, Any]]:
    """(key, raw value there) along ``loc``, skipping the tag pydantic inserts after a union's index."""
    node = raw
    after_index = False
    for key in loc:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and -len(node) <= key < len(node) else None
            after_index = True
            yield key, node
            continue
        if after_index and isinstance(node, dict) and key == node.get("kind"):
            after_index = False
            continue
        after_index = False
        node = node.get(key) if isinstance(node, dict) else None
        yield key, node


_ARM_LIST = object()  # marks "inside the arms list" while walking a location


def _allowed_fields(loc: tuple, raw: Any) -> list[str]:
    """The field names allowed where ``loc`` points (for 'unknown field' messages)."""
    model: Any = Suite
    for key, node in list(_walk(loc, raw))[:-1]:
        if isinstance(key, int):
            if model is _ARM_LIST:
                kind = node.get("kind") if isinstance(node, dict) else None
                model = {"autowu": AutoWUArm, "baseline": BaselineArm}.get(kind)
            continue
        if not (isinstance(model, type) and key in model.model_fields):
            return []
        if model is Suite and key == "arms":
            model = _ARM_LIST
            continue
        annotation = model.model_fields[key].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if isinstance(model, type) else []


def _problems(error: ValidationError, raw: Any) -> list[str]:
    problems = []
    for item in error.errors():
        path = _field_path(item["loc"], raw)
        if item["type"] == "value_error":
            for line in str(item["msg"]).removeprefix("Value error, ").split("\n"):
                if line.startswith("@"):
                    subpath, _, line = line[1:].partition(" ")
                    problems.append(f"{path}{'' if subpath.startswith('[') else '.'}{subpath}: {line}")
                elif isinstance(item.get("input"), (int, float, str)):
                    problems.append(f"{path}: {line} (got {item['input']!r})")
                else:
                    problems.append(f"{path}: {line}")
            continue
        message = item["msg"]
        if item["type"] != "missing":
            message += f" (got {item.get('input')!r})"
        fix = _FIX.get(item["type"])
        if item["type"] == "extra_forbidden":
            allowed = _allowed_fields(item["loc"], raw)
            fix = f"{fix}; allowed: {allowed}" if allowed else fix
        problems.append(f"{path}: {message}" + (f"; {fix}" if fix else ""))
    return problems


# -- loading, overrides, selection ---------------------------------------------------------------------


def packaged_suites() -> list[str]:
    """Names of the suites shipped in ``autowu_bench/suites``."""
    folder = importlib_resources.files("autowu_bench") / "suites"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def find_suite(name_or_path: str | Path) -> Path:
    """A suite file: ``name_or_path`` if it is a file, else the packaged suite of that name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.absolute()
    packaged = Path(str(importlib_resources.files("autowu_bench") / "suites" / f"{name_or_path}.yaml"))
    if re.fullmatch(NAME_PATTERN, str(name_or_path)) and packaged.is_file():
        return packaged
    raise SuiteError(
        [f"suite {str(name_or_path)!r}: no such file and no packaged suite of that name; "
         f"give a path to a YAML file or one of {packaged_suites()}"]
    )


def read_suite(name_or_path: str | Path) -> dict[str, Any]:
    """The raw suite mapping of a packaged suite name or a YAML path."""
    path = find_suite(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError([f"not valid YAML: {exc}"], source=str(path)) from None
    if not isinstance(raw, dict):
        raise SuiteError([f"the file holds {type(raw).__name__}, not a mapping of suite fields"], source=str(path))
    return raw


def apply_overrides(raw: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``key=value`` applied; values are YAML (``--set epochs=3``).

    Keys are dotted paths; a list element is picked by index or, for arms, by name
    (``arms.baseline.peak_lrs=[0.001,0.01]``). Missing mappings on the way are created.
    """
    result = copy.deepcopy(raw)
    problems = []
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {assignment!r}: expected key=value, e.g. --set epochs=3")
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problems.append(f"--set {assignment!r}: the value is not valid YAML ({exc}); quote it")
            continue
        error = _assign(result, key.strip().split("."), value)
        if error:
            problems.append(f"--set {assignment!r}: {error}")
    if problems:
        raise SuiteError(problems)
    return result


def _assign(node: Any, path: list[str], value: Any) -> str | None:
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, key)
            if index is None:
                names = [item.get("name") for item in node if isinstance(item, dict) and "name" in item]
                return f"{where}: no element {key!r}; use an index below {len(node)}" + (
                    f" or one of the names {names}" if names else ""
                )
            if last:
                node[index] = value
                return None
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return None
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            return f"{'.'.join(path[:depth])} holds {node!r}, which has no field {key!r}"
    return None


def _list_index(items: list, key: str) -> int | None:
    if re.fullmatch(r"-?\d+", key):
        index = int(key)
        return index if -len(items) <= index < len(items) else None
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == key:
            return i
    return None


def validate_suite(raw: dict[str, Any], source: str | None = None) -> Suite:
    """The validated suite, or a ``SuiteError`` listing every problem at once."""
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(_problems(exc, raw), source=source) from None


def select(suite: Suite, only: Iterable[str]) -> Suite:
    """Keep the arms, batch sizes and workloads named in ``only`` (comma lists allowed).

    Each kind is filtered only when at least one of its values is named: ``--only baseline,4096``
    keeps the baseline arm at batch 4096 for every workload.
    """
    tokens = [t.strip() for item in only for t in str(item).split(",") if t.strip()]
    if not tokens:
        return suite
    arm_names = [a.name for a in suite.arms]
    arms, sizes, workloads, unknown = set(), set(), set(), []
    for token in tokens:
        if token in arm_names:
            arms.add(token)
        elif token in suite.workloads:
            workloads.add(token)
        elif token.isdigit() and int(token) in suite.batch_sizes:
            sizes.add(int(token))
        else:
            unknown.append(token)
    if unknown:
        raise SuiteError(
            [f"--only {unknown}: not an arm, batch size or workload of suite {suite.name!r}; "
             f"arms: {arm_names}, batch sizes: {suite.batch_sizes}, workloads: {suite.workloads}"]
        )
    update: dict[str, Any] = {}
    if arms:
        update["arms"] = [a for a in suite.arms if a.name in arms]
    if sizes:
        update["batch_sizes"] = [b for b in suite.batch_sizes if b in sizes]
    if workloads:
        update["workloads"] = [w for w in suite.workloads if w in workloads]
    return suite.model_copy(update=update)


def load_suite(
    name_or_path: str | Path, *, sets: Iterable[str] = (), only: Iterable[str] = ()
) -> Suite:
    """Read, override (``--set``), validate and select (``--only``) a suite in one step."""
    path = find_suite(name_or_path)
    raw = apply_overrides(read_suite(path), sets)
    return select(validate_suite(raw, source=str(path)), only)


def suite_to_yaml(suite: Suite) -> str:
    """The resolved suite (after overrides and selection) as YAML, loadable by ``load_suite``."""
    return yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False)


# -- expansion ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridPoint:
    peak_lr: float
    warmup_epochs: float
    is_default: bool


def baseline_grid(arm: BaselineArm, recipe: Any, batch_size: int) -> list[GridPoint]:
    """The baseline arm's grid points at ``batch_size``; the untuned default is flagged (and merged
    into the grid when it coincides with a grid point)."""
    rule = arm.scaling or recipe.scaling
    base_batch = arm.base_batch or recipe.base_batch
    if arm.peak_lrs is not None:
        peaks = list(arm.peak_lrs)
    elif arm.base_lrs is not None:
        peaks = [scaled_peak_lr(rule, lr, batch_size, base_batch) for lr in arm.base_lrs]
    else:
        peaks = []
    points = [GridPoint(p, float(w), False) for p in peaks for w in arm.warmup_epochs]
    if arm.include_default:
        default = GridPoint(
            scaled_peak_lr(rule, recipe.base_lr, batch_size, base_batch), float(_default_warmup(arm, recipe)), True
        )
        same = [i for i, p in enumerate(points) if _close(p.peak_lr, default.peak_lr) and p.warmup_epochs == default.warmup_epochs]
        if same:
            points[same[0]] = GridPoint(points[same[0]].peak_lr, points[same[0]].warmup_epochs, True)
        else:
            points.append(default)
    return points


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def _lr_tag(lr: float) -> str:
    return f"{lr:.4g}"


def expand(suite: Suite) -> list[TrialSpec]:
    """One TrialSpec per workload x batch size x arm x grid point x seed, in that order.

    Trial ids are stable (a function of the suite's values) and unique; they name the trial folders and
    MLflow child runs: ``autowu-cos_fmnist-mlp_b4096_s0``, ``baseline_fmnist-mlp_b4096_lr0.003_w5_s0``.
    """
    trials: list[TrialSpec] = []
    res, train, data = suite.resources, suite.training, suite.data
    common = dict(
        suite=suite.name, data_root=data.root, train_subset=data.train_subset, val_size=data.val_size,
        num_workers=res.workers_per_trial, use_gpu=res.use_gpu, cpus_per_worker=res.cpus_per_worker,
        gpus_per_worker=res.gpus, micro_batch=train.micro_batch, amp=train.amp,
        channels_last=train.channels_last, compile=train.compile,
    )
    for workload in suite.workloads:
        recipe = _recipe(workload)
        epochs = suite.epochs or recipe.epochs
        for batch in suite.batch_sizes:
            for arm in suite.arms:
                # An arm with another optimizer takes that optimizer's base LR and weight decay.
                arm_recipe = recipe.with_optimizer(arm.optimizer) if arm.optimizer not in (None, recipe.optimizer) else recipe
                optimizer = arm_recipe.optimizer
                weight_decay = arm.weight_decay if arm.weight_decay is not None else arm_recipe.weight_decay
                base = dict(common, arm=arm.name, workload=workload, batch_size=batch, epochs=epochs,
                            optimizer=optimizer, weight_decay=float(weight_decay))
                if isinstance(arm, AutoWUArm):
                    for seed in suite.seeds:
                        trials.append(TrialSpec(
                            trial_id=f"{arm.name}_{workload}_b{batch}_s{seed}", kind="autowu", seed=seed,
                            decay=arm.decay, autowu=arm.autowu.kwargs(), **base,
                        ))
                    continue
                for point in baseline_grid(arm, arm_recipe, batch):
                    for seed in suite.seeds:
                        trials.append(TrialSpec(
                            trial_id=(f"{arm.name}_{workload}_b{batch}_lr{_lr_tag(point.peak_lr)}"
                                      f"_w{point.warmup_epochs:g}_s{seed}"),
                            kind="baseline", seed=seed, peak_lr=point.peak_lr,
                            warmup_epochs=point.warmup_epochs, is_default=point.is_default, **base,
                        ))
    ids = [t.trial_id for t in trials]
    clashes = sorted({i for i in ids if ids.count(i) > 1})
    if clashes:
        raise SuiteError([f"arms: grid points that round to the same trial id {clashes}; "
                          "make the peak LRs differ in their first 4 significant digits"])
    return trials
