"""The suite schema: the YAML fields, their types and the rules between them (pydantic models).

Validation reads no files: whether the data is there is checked afterwards (``checks.data.data_problems``),
so that a dry run can list a suite whose data lives on the cluster only.

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
        kind: baseline             # linear warmup to a peak LR, then the decay
        optimizer: null            # any of workloads.optimizers.OPTIMIZERS: adamp, lamb, sgd, lars, clars,
                                   # clars-chunked, prodigy, schedulefree-adamw (docs/optimizers.md)
        decay: cosine              # "cosine" (or "cos") to 0 | "polynomial" to 0 | "constant"
        decay_power: 2.0           # the polynomial's power
        peak_lrs: [0.001, 0.003]   # explicit peak LRs, the same for every batch size; or
        base_lrs: null             # base LRs scaled to each batch size by `scaling` from `base_batch`
        scaling: null              # "sqrt" | "linear"; null: the recipe's rule
        base_batch: null           # null: the recipe's base batch
        warmup_epochs: [1, 5]      # 0: no warmup (the decay starts at the peak LR)
        include_default: true      # add the untuned default: the recipe's base LR scaled by the rule,
        default_warmup_epochs: null  # with this many warmup epochs (null: the recipe's, 5 in the paper)
      - name: baseline-tpe         # a baseline (or AutoWU) arm searched by Ray Tune instead of a grid
        kind: baseline             # (no peak_lrs/base_lrs/warmup_epochs/include_default then)
        search:
          searcher: tpe            # "grid" | "random" | "tpe" (OptunaSearch) | "hyperopt" (HyperOptSearch)
          space:                   # a list (a choice; grid: every value) or a range {low, high, log, integer}
            peak_lr: {low: 0.001, high: 0.1, log: true}   # or base_lr (scaled by `scaling`)
            warmup_epochs: {low: 0, high: 5}              # AutoWU arms: AutoWU options (patience: [2, 3])
          num_samples: 6           # trials (grid: its size, leave unset)
          max_concurrent: null     # null: resources.max_concurrent_trials, else what the cluster holds
          scheduler: null          # or {kind: asha, grace_period: 2, reduction_factor: 3}
          seed: 0                  # the searcher's seed: a rerun proposes the same points
          initial_points: null     # tpe/hyperopt: random trials before the model (null: num_samples // 3)
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

import math
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic_core import PydanticCustomError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from autowu_bench import workloads
from autowu_bench.schedulers.autowu import AUTOWU_DEFAULTS, DECAYS, AutoWUOptions, autowu_option_problems
from autowu_bench.schedulers.lr_functions import BASELINE_DECAYS, SCALING_RULES
from autowu_bench.workloads.data.sharding import batch_split_problem, train_steps
from autowu_bench.workloads.optimizers import OPTIMIZERS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
PROBLEMS_BELOW = "problems_below"  # the pydantic error type of problems at fields below the validated one


def below(subpath: str, message: str) -> tuple[str, str]:
    """A problem at a field below the one being validated (``[0].warmup_epochs``, ``lr_max``)."""
    return subpath, message


def problems_below(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """What a validator raises for ``problems`` (each made by :func:`below`): pydantic keeps them as data in
    the error's context, and ``suite.errors`` reports each at the validated field's path + its subpath."""
    summary = "; ".join(f"{subpath}: {message}" for subpath, message in problems)
    return PydanticCustomError(PROBLEMS_BELOW, "{summary}", {"summary": summary, "problems": list(problems)})


def _decay_alias(value: Any) -> Any:
    return "cosine" if value == "cos" else value


def local_path(value: str) -> Path:
    """``value`` as a path of this machine, ``~`` expanded; ValueError with the fix when it cannot be one."""
    if "\0" in value:
        raise ValueError("a path cannot hold a NUL character; remove it")
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        raise ValueError("a path of characters the file system cannot encode; use plain characters") from None
    try:
        return Path(value).expanduser()
    except RuntimeError:  # "~name/..." where no user is called name
        raise ValueError("'~' names no user of this machine; give an absolute path") from None


class _Strict(BaseModel):
    # No NaN or infinity in any float field: an infinite peak LR or CPU share is always a mistake.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _AutoWUOptionsRules(_Strict):
    """What an arm's ``autowu:`` mapping is validated by: :data:`AutoWUOptionsSchema` is this model with
    the fields of ``schedulers.autowu.AutoWUOptions`` (the one list of the options; every field None by
    default, None keeping AutoWU's default). :meth:`options` gives the validated ``AutoWUOptions``.

    Types are checked here, ranges by AutoWU's own ``autowu_option_problems`` (one rule, one message).
    """

    @model_validator(mode="before")
    @classmethod
    def _from_options(cls, value: Any) -> Any:
        return value.to_dict() if isinstance(value, AutoWUOptions) else value

    @model_validator(mode="after")
    def _autowu_accepts(self) -> "_AutoWUOptionsRules":
        given = self.kwargs()
        lines = []
        for name, problem in autowu_option_problems(**given).items():
            # The values the rule read that the arm does not set: the message shows AutoWU's defaults.
            unset = [n for n in (name, *problem.compared_with) if n not in given]
            note = f" ({', '.join(unset)}: AutoWU's default)" if unset else ""
            lines.append(below(name, problem.message + note))
        if lines:
            raise problems_below(lines)
        return self

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def options(self) -> AutoWUOptions:
        """The validated options, as a trial holds them (``TrialSpec.autowu``)."""
        return AutoWUOptions(**self.kwargs())


def _options_schema() -> type[_AutoWUOptionsRules]:
    # Named as the options are in pydantic's messages ("... or instance of AutoWUOptions").
    types = typing.get_type_hints(AutoWUOptions)
    fields: dict[str, Any] = {name: (types[name], None) for name in AutoWUOptions.names()}
    return create_model("AutoWUOptions", __base__=_AutoWUOptionsRules, __module__=__name__, **fields)


AutoWUOptionsSchema = _options_schema()


class Range(_Strict):
    """A continuous (or integer) range of a search space: uniform, or log-uniform with ``log``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low={self.low:g} must be below high={self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (low={self.low:g}); raise low or set log: false")
        return self

    def bounds(self) -> list[float]:
        return [self.low, self.high]


SpaceValue = Annotated[list[int | float | str], Field(min_length=1)] | Range
SEARCHERS = ("grid", "random", "tpe", "hyperopt")
BASELINE_SEARCH_KEYS = ("peak_lr", "base_lr", "warmup_epochs")


class Asha(_Strict):
    """Ray Tune's ASHA (``ASHAScheduler``) on the epochs, reading validation accuracy."""

    kind: Literal["asha"] = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0


class Search(_Strict):
    """An arm's Ray Tune search job (``platform/execution/search.py``): its space, searcher, scheduler and budget."""

    searcher: Literal[SEARCHERS]
    space: Annotated[dict[str, SpaceValue], Field(min_length=1)]
    num_samples: PositiveInt | None = None
    max_concurrent: PositiveInt | None = None
    scheduler: Asha | None = None
    seed: NonNegativeInt = 0
    initial_points: PositiveInt | None = None

    @model_validator(mode="after")
    def _budget(self) -> Search:
        if self.searcher == "grid":
            ranges = [k for k, v in self.space.items() if isinstance(v, Range)]
            if ranges:
                raise problems_below([below("space", f"the grid searcher needs a list for every key; {ranges} are ranges")])
            size = math.prod(len(v) for v in self.space.values())
            if self.num_samples is not None and self.num_samples != size:
                raise problems_below([below("num_samples", f"num_samples={self.num_samples} but the grid has {size} points; "
                                       "leave num_samples unset for the grid searcher")])
        elif self.num_samples is None:
            raise problems_below([below("num_samples", f"the {self.searcher} searcher needs num_samples (its trial budget)")])
        if self.initial_points is not None and self.searcher not in ("tpe", "hyperopt"):
            raise problems_below([below("initial_points", "initial_points is for the tpe and hyperopt searchers only")])
        return self

    @property
    def trials(self) -> int:
        """The trial budget: num_samples, or the grid's size."""
        if self.num_samples is not None:
            return self.num_samples
        return math.prod(len(v) for v in self.space.values())

    @property
    def label(self) -> str:
        """``tpe``, ``random+asha``: the ``search`` field of its trials and the name in the table."""
        return self.searcher + (f"+{self.scheduler.kind}" if self.scheduler is not None else "")


def _values(value: Any) -> list:
    return value.bounds() if isinstance(value, Range) else list(value)


class AutoWUArm(_Strict):
    """AutoWU with one decay (one run per seed, or a Tune ``search`` over AutoWU's own options)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["autowu"]
    decay: Annotated[Literal[DECAYS], BeforeValidator(_decay_alias)] = AUTOWU_DEFAULTS.decay
    optimizer: Literal[OPTIMIZERS] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    autowu: AutoWUOptionsSchema = AutoWUOptionsSchema()  # type: ignore[valid-type]
    search: Search | None = None

    @model_validator(mode="after")
    def _searchable(self) -> AutoWUArm:
        if self.search is None:
            return self
        known = list(AutoWUOptions.names())
        lines = [below(f"search.space.{k}", f"{k!r} is not an AutoWU option; searchable: {known}")
                 for k in self.search.space if k not in known]
        for key, value in self.search.space.items():
            if key not in known:
                continue
            for v in _values(value):
                for problem in autowu_option_problems(**{**self.autowu.kwargs(), key: v}).values():
                    lines.append(below(f"search.space.{key}", f"value {v!r}: {problem.message}"))
        if lines:
            raise problems_below(lines)
        return self


class BaselineArm(_Strict):
    """Linear warmup then a decay (cosine: the paper's), over a grid of peak LRs x warmup epochs (+ the
    untuned default). Every optimizer arm beyond the paper is one of these: CLARS without warmup
    (warmup_epochs [0]) and polynomial decay, Prodigy at peak LR 1, Schedule-Free with a constant LR."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["baseline"]
    optimizer: Literal[OPTIMIZERS] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    decay: Annotated[Literal[BASELINE_DECAYS], BeforeValidator(_decay_alias)] = "cosine"
    decay_power: PositiveFloat = 2.0
    peak_lrs: list[PositiveFloat] | None = None
    base_lrs: list[PositiveFloat] | None = None
    scaling: Literal[tuple(SCALING_RULES)] | None = None
    base_batch: PositiveInt | None = None
    warmup_epochs: list[Annotated[float, Field(ge=0)]] = [5.0]
    include_default: bool = True
    default_warmup_epochs: Annotated[float, Field(ge=0)] | None = None
    search: Search | None = None

    @field_validator("peak_lrs", "base_lrs", "warmup_epochs")
    @classmethod
    def _no_repeats(cls, values: list[float] | None, info: ValidationInfo) -> list[float] | None:
        return values if values is None else _unique(values, info.field_name.removesuffix("s"))

    @model_validator(mode="after")
    def _one_grid(self) -> "BaselineArm":
        if self.search is not None:
            return self._search_only()
        if self.peak_lrs is not None and self.base_lrs is not None:
            raise ValueError(
                "give either peak_lrs (the same for every batch size) or base_lrs (scaled to each batch "
                "size by `scaling`), not both; remove one"
            )
        if self.peak_lrs is None and self.base_lrs is None and not self.include_default:
            raise ValueError("the grid is empty: give peak_lrs or base_lrs, or set include_default: true")
        return self

    def _search_only(self) -> BaselineArm:
        # Set to anything but its default (a resolved suite.yaml writes the defaults out: still loadable).
        grid = [f for f in ("peak_lrs", "base_lrs", "warmup_epochs", "include_default", "default_warmup_epochs")
                if f in self.model_fields_set and getattr(self, f) != type(self).model_fields[f].default]
        if grid:
            raise ValueError(f"{grid} describe a grid; an arm with `search` takes its points from search.space; "
                             "remove them (or the search)")
        space = self.search.space
        lines = [below(f"search.space.{k}", f"{k!r} cannot be searched on a baseline arm; use {list(BASELINE_SEARCH_KEYS)}")
                 for k in space if k not in BASELINE_SEARCH_KEYS]
        if ("peak_lr" in space) == ("base_lr" in space):
            lines.append(below("search.space", "give exactly one of peak_lr (the same for every batch size) or "
                               "base_lr (scaled by `scaling` to each batch size)"))
        for key in ("peak_lr", "base_lr"):
            if key in space and any(not isinstance(v, (int, float)) or v <= 0 for v in _values(space[key])):
                lines.append(below(f"search.space.{key}", "learning rates must be numbers > 0"))
        if "warmup_epochs" in space and any(not isinstance(v, (int, float)) or v < 0 for v in _values(space["warmup_epochs"])):
            lines.append(below("search.space.warmup_epochs", "warmup epochs must be numbers >= 0"))
        if lines:
            raise problems_below(lines)
        return self

    def default_warmup(self, recipe: Any) -> float:
        """Warmup epochs of the untuned default point: the arm's, else the recipe's."""
        return self.default_warmup_epochs if self.default_warmup_epochs is not None else recipe.warmup_epochs


Arm = Annotated[Union[AutoWUArm, BaselineArm], Field(discriminator="kind")]
ARM_KINDS = {"autowu": AutoWUArm, "baseline": BaselineArm}


class Resources(_Strict):
    workers_per_trial: PositiveInt = 1
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] | None = None
    max_concurrent_trials: PositiveInt | None = None
    max_failures: NonNegativeInt = 3  # Ray Train worker-group restarts per trial, each from the last checkpoint

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
        return None if root is None else str(local_path(root).absolute())


class Suite(_Strict):
    """A validated suite. Fields are declared in dependency order: a validator may read the fields
    above its own (``info.data``), which are present only when they themselves were valid, so every
    independent problem is reported in one pass."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    workloads: Annotated[list[str], Field(min_length=1)]
    epochs: PositiveInt | None = None
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**32)]], Field(min_length=1)] = [0]  # numpy's seed range
    resources: Resources = Resources()
    training: Training = Training()
    batch_sizes: Annotated[list[PositiveInt], Field(min_length=1)]
    data: Data = Data()
    arms: Annotated[list[Arm], Field(min_length=1)]
    tracking_uri: Annotated[str, Field(min_length=1)] | None = None
    results: str = "runs"

    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The file the suite was read from (None: built from a mapping); kept by ``select``."""
        return self._source

    @field_validator("workloads")
    @classmethod
    def _known_workloads(cls, names: list[str]) -> list[str]:
        known = list(workloads.workload_names())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown workload(s) {unknown}; known: {known}")
        _unique(names, "workload")
        return names

    @field_validator("results")
    @classmethod
    def _results_path(cls, results: str) -> str:
        local_path(results)
        return results

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
        problems = [batch_split_problem(b, resources.workers_per_trial, training.micro_batch) for b in sizes]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError("\n".join(problems))
        return sizes

    @field_validator("data")
    @classmethod
    def _subset_holds_a_batch(cls, data: Data, info: ValidationInfo) -> Data:
        sizes, resources = info.data.get("batch_sizes"), info.data.get("resources")
        if data.train_subset is None or not sizes or not resources:
            return data
        workers = resources.workers_per_trial
        empty = [b for b in sizes if train_steps(data.train_subset, batch_size=b // workers, world_size=workers) == 0]
        if empty:
            raise problems_below([below(
                "train_subset", f"train_subset={data.train_subset} gives no full batch per epoch at batch size(s) "
                f"{empty}; raise train_subset to at least {max(empty)} or drop those batch sizes"
            )])
        return data

    @field_validator("arms")
    @classmethod
    def _arms_fit(cls, arms: list[AutoWUArm | BaselineArm], info: ValidationInfo) -> list:
        _unique([a.name for a in arms], "arm name")
        names = info.data.get("workloads")
        if not names:
            return arms
        problems = []
        for name in names:
            recipe = workloads.get_workload(name).recipe
            epochs = info.data.get("epochs") or recipe.epochs
            for i, arm in enumerate(arms):
                asha = arm.search.scheduler if arm.search is not None else None
                if asha is not None and asha.grace_period > epochs:
                    problems.append(below(f"[{i}].search.scheduler.grace_period", f"grace_period {asha.grace_period} "
                                          f"is past the {epochs} epochs of {name}: ASHA would never stop a trial; "
                                          f"give at most {epochs}, or drop the scheduler"))
                if not isinstance(arm, BaselineArm):
                    continue
                if arm.search is not None:
                    warmups = arm.search.space.get("warmup_epochs")
                    longest = max(_values(warmups)) if warmups is not None else recipe.warmup_epochs
                    if isinstance(longest, (int, float)) and longest >= epochs:
                        problems.append(below(f"[{i}].search.space.warmup_epochs", f"warmup epochs up to {longest:g} "
                                              f"not below the {epochs} epochs of {name}; shorten the warmups"))
                    continue
                too_long = [w for w in arm.warmup_epochs if w >= epochs]
                if too_long:
                    problems.append(below(
                        f"[{i}].warmup_epochs", f"warmup_epochs {too_long} not below the {epochs} epochs of "
                        f"{name}; use fewer warmup epochs or more epochs"
                    ))
                default_w = arm.default_warmup(recipe)
                if arm.include_default and default_w >= epochs:
                    problems.append(below(
                        f"[{i}].default_warmup_epochs", f"the untuned default's {default_w:g} warmup epochs are not below "
                        f"the {epochs} epochs of {name}; set default_warmup_epochs below {epochs} "
                        "or include_default: false"
                    ))
        if problems:
            raise problems_below(problems)
        return arms


def _unique(values: list, what: str) -> list:
    duplicates = sorted({v for v in values if values.count(v) > 1}, key=str)
    if duplicates:
        raise ValueError(f"duplicate {what}(s) {duplicates}; list each once")
    return values
