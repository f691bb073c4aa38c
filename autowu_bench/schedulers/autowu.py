"""AutoWU (Kim et al. 2021, arXiv 2107.05855): exponential warmup until a GP test finds the loss minimum.

``AutoWUCore`` is the state machine, with no optimizer: it observes step losses and decides when the
warmup ends and from which LR the decay starts. ``AutoWU`` drives a torch optimizer with it. The
platform's per-trial controller holds an ``AutoWUCore`` and hands out its ``AutoWUPlan`` values.

Step convention (docs/autowu.md, "Step conventions"): ``t`` counts ``step(loss)`` calls, one after each
optimizer step; after ``t`` calls, the LR in the optimizer is ``lr_t``, the LR of step ``t + 1``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from typing import Any, Iterable, Mapping, Sequence

import torch

from autowu_bench.schedulers.lr_functions import WARMUPS
from autowu_bench.schedulers.lr_plan import NEVER, AutoWUPlan, Phase, SwitchReason
from autowu_bench.schedulers.schedule import set_lr
from autowu_bench.schedulers.switch_tests import Decision, SwitchTest

DECAYS = ("const-cos", "cosine")
TEST_INTERVALS = ("epoch", "auto")
# Warn when the exponential warmup grows the LR by more than this between two tests: the patience then
# overshoots the minimum by more than this factor cubed (docs/autowu.md, "Test density").
MAX_GROWTH_PER_TEST = 1.5


@dataclasses.dataclass(frozen=True)
class AutoWUDefaults:
    """AutoWU's defaults, their one definition: ``AutoWUCore``'s keyword arguments (which document them)
    default to :data:`AUTOWU_DEFAULTS`' fields; an ``AutoWUOptions`` field left None means the one here."""

    decay: str = "const-cos"
    lr_min: float = 1e-5
    lr_max: float = 1.0
    max_warmup_fraction: float = 0.5
    warmup: str = "exp"
    confidence: float = 0.95
    patience: int = 3
    const_fraction: float = 0.8
    test_interval: str | int = "epoch"
    seed: int = 0
    divergence_factor: float | None = 3.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


AUTOWU_DEFAULTS = AutoWUDefaults()


class AutoWUCore:
    """AutoWU's decisions as a state machine over the per-step losses.

    Args:
        steps_per_epoch: optimizer steps per epoch (S).
        total_epochs: epochs of the whole run (E); T = S * E optimizer steps.
        decay: "const-cos" (hold the start LR until ``const_fraction`` of T, then cosine; the default) or
            "cosine" (cosine to 0 from the switch).
        lr_min: first LR of the warmup.
        lr_max: LR the warmup reaches at its longest.
        max_warmup_fraction: rho; the longest warmup is W = floor(rho * T) steps, after which the
            decay starts from the current LR ("fallback").
        warmup: "exp" (eq. 1, the paper's) or "linear" (the paper's appendix C.2 ablation).
        confidence: gamma; a vote is positive when its probability p is strictly above it.
        patience: k; the switch happens after this many consecutive positive tests.
        const_fraction: share of T after which const-cos starts its cosine (1 - c in docs/autowu.md).
        test_interval: "epoch" (a test after every S steps, the paper's rule), "auto" (every
            max(1, round(W / 100)) steps: a test each time the LR grew by (lr_max/lr_min)^(1/100)), or a
            positive number of steps.
        seed: seeds the detector's random subsets.
        divergence_factor: a finite loss above this factor times the first finite loss counts as a
            divergence, like a non-finite one (None: only non-finite losses). At lr_min the first loss is
            that of the untrained model, so a loss several times higher means the weights are broken.
        detector: the GP minimum detector; by default the fast ``GPMinimumDetector``.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        total_epochs: int,
        *,
        decay: str = AUTOWU_DEFAULTS.decay,
        lr_min: float = AUTOWU_DEFAULTS.lr_min,
        lr_max: float = AUTOWU_DEFAULTS.lr_max,
        max_warmup_fraction: float = AUTOWU_DEFAULTS.max_warmup_fraction,
        warmup: str = AUTOWU_DEFAULTS.warmup,
        confidence: float = AUTOWU_DEFAULTS.confidence,
        patience: int = AUTOWU_DEFAULTS.patience,
        const_fraction: float = AUTOWU_DEFAULTS.const_fraction,
        test_interval: str | int = AUTOWU_DEFAULTS.test_interval,
        seed: int = AUTOWU_DEFAULTS.seed,
        divergence_factor: float | None = AUTOWU_DEFAULTS.divergence_factor,
        detector: Any = None,
    ) -> None:
        _check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        _check_int("total_epochs", total_epochs, minimum=1)
        check_autowu_options(
            decay=decay, lr_min=lr_min, lr_max=lr_max, max_warmup_fraction=max_warmup_fraction, warmup=warmup,
            confidence=confidence, patience=patience, const_fraction=const_fraction, test_interval=test_interval,
            divergence_factor=divergence_factor,
        )

        self.steps_per_epoch = steps_per_epoch
        self.total_epochs = total_epochs
        self.total_steps = steps_per_epoch * total_epochs
        self.warmup_steps = math.floor(max_warmup_fraction * self.total_steps)
        self.decay = decay
        self.warmup = warmup
        self.lr_min = float(lr_min)
        self.lr_max = float(lr_max)
        self.patience = patience
        self.const_fraction = float(const_fraction)
        self.divergence_factor = divergence_factor
        self.test_interval = self._resolve_interval(test_interval)
        if detector is None:
            from autowu_bench.schedulers.detector import GPMinimumDetector

            detector = GPMinimumDetector(confidence=confidence, seed=seed)
        self.detector = detector

        self.t = 0
        self.history: list[float] = []
        self.tests: list[SwitchTest] = []
        self.positives = 0
        self.loss_reference: float | None = None
        self.switch_step: int | None = None
        self.switch_reason: SwitchReason | None = None
        self.decay_start_lr: float | None = None
        self.divergence_step: int | None = None
        self._warned_past_end = False
        if self.warmup_steps <= 0:
            self._switch(0, SwitchReason.FALLBACK, self.lr_max)

    def _resolve_interval(self, test_interval: str | int) -> int:
        if test_interval == "epoch":
            interval = self.steps_per_epoch
        elif test_interval == "auto":
            interval = max(1, round(self.warmup_steps / 100))
        else:  # a positive number of steps (check_autowu_options)
            interval = test_interval
        if self.warmup == "exp" and self.warmup_steps > 0:
            self._warn_if_coarse(interval, test_interval)
        return interval

    def _warn_if_coarse(self, interval: int, test_interval: str | int) -> None:
        growth = _power(self.lr_max / self.lr_min, interval / self.warmup_steps)
        if growth <= MAX_GROWTH_PER_TEST:
            return
        overshoot = (f"with patience {self.patience} the switch can overshoot the loss minimum by "
                     f"x{_power(growth, self.patience):.3g}")
        if (self.lr_max / self.lr_min) ** (1 / self.warmup_steps) <= MAX_GROWTH_PER_TEST:
            fix = f"Use test_interval='auto' for short budgets ({self.total_epochs} epochs here)."
        else:  # even a test every step is that coarse: only a longer warmup helps
            fix = (
                f"The longest warmup has only {self.warmup_steps} steps ({self.steps_per_epoch} per epoch, "
                f"{self.total_steps} in all): give AutoWU more steps (more epochs or training data, or a smaller "
                "batch); about 100 warmup steps test at the paper's density."
            )
        warnings.warn(
            f"test_interval={test_interval!r} lets the LR grow x{growth:.2f} between tests (more than "
            f"x{MAX_GROWTH_PER_TEST}): {overshoot}. {fix}",
            stacklevel=4,
        )

    # -- queries ---------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return Phase.WARMUP if self.switch_step is None else Phase.DECAY

    def plan(self) -> AutoWUPlan:
        """The schedule as known now: exact for every step before its ``next_switch``.

        ``next_test`` is the next step whose loss must be seen: step 1 while the explosion threshold is
        unknown, else the next test or the longest warmup W. ``next_switch`` is the first step after
        which the LR may change: with ``positives`` positive tests running, the next
        ``patience - positives - 1`` tests cannot complete the patience, so it is the test after them,
        or W when that comes first.
        """
        if self.switch_step is not None:
            next_test = next_switch = NEVER
        elif self.divergence_factor is not None and self.loss_reference is None:
            next_test = next_switch = self.t + 1
        else:
            test_step = (self.t // self.test_interval + 1) * self.test_interval
            next_test = min(test_step, self.warmup_steps)
            next_switch = next_test
            if self.loss_reference is not None:
                tests_to_switch = max(1, self.patience - self.positives)
                last_needed = test_step + (tests_to_switch - 1) * self.test_interval
                next_switch = max(next_test, min(last_needed, self.warmup_steps))
        threshold = None
        if self.divergence_factor is not None and self.loss_reference is not None:
            threshold = self.divergence_factor * self.loss_reference
        return AutoWUPlan(
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            lr_min=self.lr_min,
            lr_max=self.lr_max,
            warmup=self.warmup,
            decay=self.decay,
            const_fraction=self.const_fraction,
            next_test=next_test,
            next_switch=next_switch,
            test_interval=self.test_interval,
            switch_step=self.switch_step,
            switch_reason=self.switch_reason,
            decay_start_lr=self.decay_start_lr,
            divergence_step=self.divergence_step,
            divergence_threshold=threshold,
        )

    def lr(self, t: int | None = None) -> float:
        """The scheduled LR after ``t`` calls (default: now), before any parameter group's lr_scale."""
        return self.plan().lr(self.t if t is None else t)

    # -- updates ---------------------------------------------------------------------------------

    def observe(self, losses: Iterable[float]) -> None:
        """Feed the losses of the next steps, in order, one per optimizer step."""
        for loss in losses:
            self._observe_one(float(loss))

    def _observe_one(self, loss: float) -> None:
        self.t += 1
        if self.switch_step is not None:
            if self.t > self.total_steps and not self._warned_past_end:
                self._warned_past_end = True
                warnings.warn(
                    f"AutoWU stepped {self.t} times, past the planned {self.total_steps} steps "
                    f"({self.steps_per_epoch} x {self.total_epochs}); the LR stays at 0",
                    stacklevel=3,
                )
            return
        lr_now = self.lr(self.t - 1)  # the LR of the step whose loss this is
        self.history.append(loss)
        if math.isfinite(loss) and self.loss_reference is None:
            self.loss_reference = loss
        if self._divergent(loss):
            self._diverge(lr_now)
            return
        if self.t % self.test_interval == 0:
            self._test(lr_now)
        if self.switch_step is None and self.t >= self.warmup_steps:
            self._switch(self.t, SwitchReason.FALLBACK, lr_now)

    def _divergent(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        return self.divergence_factor is not None and loss > self.divergence_factor * self.loss_reference

    def _test(self, lr_now: float) -> None:
        result = self.detector.test(self.history, lr_min=self.lr_min, lr_now=lr_now, warmup=self.warmup)
        self.positives = self.positives + 1 if result.positive else 0
        decide = self.positives >= self.patience
        if not decide:
            self.tests.append(self._record(result, Decision.POSITIVE if result.positive else Decision.NEGATIVE))
            return
        self.tests.append(self._record(result, Decision.SWITCH, start_lr=result.start_lr))
        self._switch(self.t, SwitchReason.TEST, result.start_lr)

    def _diverge(self, lr_now: float) -> None:
        """Switch at once: the weights are already broken, so never start above the LR that broke them."""
        start = time.perf_counter()
        # The diverged loss keeps its place in the history but, like a NaN, is not fitted.
        finite_part = self.history[:-1] + [math.nan]
        result = self.detector.test(finite_part, lr_min=self.lr_min, lr_now=lr_now, warmup=self.warmup)
        start_lr = min(result.start_lr, lr_now)
        self.tests.append(self._record(result, Decision.DIVERGENCE, start_lr=start_lr,
                                       seconds=time.perf_counter() - start))
        self.divergence_step = self.t
        self._switch(self.t, SwitchReason.DIVERGENCE, start_lr)

    def _record(self, result: Any, decision: Decision, *, start_lr: float | None = None,
                seconds: float | None = None) -> SwitchTest:
        """The record of one test; a ``start_lr`` marks the deciding test, which also keeps the fit."""
        deciding = start_lr is not None
        return SwitchTest(
            step=self.t,
            epoch=self.t / self.steps_per_epoch,
            p=tuple(float(p) for p in result.p),
            votes=tuple(bool(v) for v in result.votes),
            positive=bool(result.positive),
            decision=decision,
            n_finite=int(result.n_finite),
            seconds=float(result.seconds if seconds is None else seconds),
            mu=tuple(float(m) for m in result.mu) if deciding else None,
            x_star=tuple(float(x) for x in result.x_star) if deciding else None,
            start_lr=float(start_lr) if deciding else None,
        )

    def _switch(self, t: int, reason: SwitchReason, start_lr: float) -> None:
        self.switch_step = t
        self.switch_reason = reason
        self.decay_start_lr = float(start_lr)

    # -- state -----------------------------------------------------------------------------------

    _STATE = (
        "t", "history", "tests", "positives", "loss_reference", "switch_step", "switch_reason",
        "decay_start_lr", "divergence_step", "_warned_past_end",
    )
    _CONFIG = (
        "steps_per_epoch", "total_epochs", "warmup_steps", "decay", "warmup", "lr_min", "lr_max",
        "patience", "const_fraction", "test_interval", "divergence_factor",
    )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-for-bit: progress, history, tests, the detector's state; plain
        data (the switch reason and the tests' decisions as strings), so ``torch.load(weights_only=True)``
        reads it back."""
        state = {name: copy.deepcopy(getattr(self, name)) for name in self._STATE}
        if state["switch_reason"] is not None:
            state["switch_reason"] = str(state["switch_reason"])
        state["tests"] = [record.to_dict() for record in self.tests]
        state["config"] = {name: getattr(self, name) for name in self._CONFIG}
        state["detector"] = self.detector.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mismatched = {
            name: (value, getattr(self, name))
            for name, value in state["config"].items()
            if getattr(self, name) != value
        }
        if mismatched:
            detail = ", ".join(f"{k}: saved {v[0]!r}, here {v[1]!r}" for k, v in mismatched.items())
            raise ValueError(f"AutoWU state was saved with another configuration ({detail})")
        for name in self._STATE:
            setattr(self, name, copy.deepcopy(state[name]))
        if self.switch_reason is not None:
            self.switch_reason = SwitchReason(self.switch_reason)
        self.tests = [SwitchTest.from_dict(record) for record in state["tests"]]
        self.detector.load_state_dict(state["detector"])


class AutoWU:
    """AutoWU driving a torch optimizer; call ``step(loss)`` once after every optimizer step.

    The constructor writes lr_0 (lr_min) into the optimizer. A parameter group may carry ``lr_scale``
    (default 1.0): its LR is the scheduled LR times that scale, so groups keep their ratios. Keyword
    arguments are those of ``AutoWUCore``, which documents them.

    Example::

        scheduler = AutoWU(optimizer, steps_per_epoch=len(loader), total_epochs=epochs)
        for x, y in loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            scheduler.step(loss)
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_epochs: int, **kwargs: Any
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer={optimizer!r} must be a torch.optim.Optimizer")
        self.optimizer = optimizer
        self.core = AutoWUCore(steps_per_epoch, total_epochs, **kwargs)
        self._apply()

    def step(self, loss: float | torch.Tensor) -> None:
        """Record the loss of the optimizer step just taken and set the LR of the next one."""
        self.core.observe([float(loss)])
        self._apply()

    def _apply(self) -> None:
        set_lr(self.optimizer, self.core.lr())

    def get_last_lr(self) -> list[float]:
        """One LR per parameter group: the LR the next optimizer step uses."""
        return [group["lr"] for group in self.optimizer.param_groups]

    @property
    def phase(self) -> Phase:
        return self.core.phase

    @property
    def switch_step(self) -> int | None:
        return self.core.switch_step

    @property
    def switch_reason(self) -> SwitchReason | None:
        return self.core.switch_reason

    @property
    def decay_start_lr(self) -> float | None:
        return self.core.decay_start_lr

    @property
    def divergence_step(self) -> int | None:
        return self.core.divergence_step

    @property
    def tests(self) -> list[SwitchTest]:
        return self.core.tests

    def state_dict(self) -> dict[str, Any]:
        return self.core.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.core.load_state_dict(state)
        self._apply()


@dataclasses.dataclass(frozen=True)
class AutoWUOptions:
    """The ``AutoWUCore`` options a trial sets, by name: the one list of them (a suite arm's ``autowu:``,
    ``TrialSpec.autowu``, a Tune config's AutoWU keys, a search over AutoWU's knobs).

    Every field is optional: None keeps AutoWU's default (``AUTOWU_DEFAULTS``), so only the options
    set reach ``AutoWUCore`` (:meth:`kwargs`). The step counts, ``decay`` and ``seed`` are not options
    here (a trial has its own decay and seed) and neither is ``detector``. Values are taken as given:
    ranges are ``AutoWUCore``'s to check (:meth:`problems`, ``autowu_option_problems``).

        options = AutoWUOptions(test_interval="auto", patience=2)
        options.kwargs()                                # {"patience": 2, "test_interval": "auto"}
        AutoWUOptions.from_dict({"patience": 2})        # the dict form, as trial_specs.json holds it
        options.merged({"patience": 3})                 # a search's proposed knobs over the arm's options
    """

    lr_min: float | None = None
    lr_max: float | None = None
    max_warmup_fraction: float | None = None
    warmup: str | None = None
    confidence: float | None = None
    patience: int | None = None
    const_fraction: float | None = None
    test_interval: str | int | None = None
    divergence_factor: float | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in their order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def kwargs(self) -> dict[str, Any]:
        """The options set (not None), name -> value: keyword arguments of ``AutoWUCore``."""
        return {name: getattr(self, name) for name in self.names() if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        """The dict form (the options set, as :meth:`kwargs`): what trial_specs.json, MLflow and Parquet hold."""
        return self.kwargs()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AutoWUOptions:
        """The options of a dict form (a value of None: unset); ValueError naming any unknown key."""
        known = cls.names()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown AutoWU options {unknown}; known: {list(known)}")
        return cls(**values)

    def merged(self, values: Mapping[str, Any]) -> AutoWUOptions:
        """These options with ``values`` (name -> value) set over them; ValueError naming any unknown key."""
        return self.from_dict({**self.to_dict(), **values})

    def value(self, name: str) -> Any:
        """The option ``name`` as ``AutoWUCore`` gets it: the value set, else AutoWU's default."""
        value = getattr(self, name)
        return getattr(AUTOWU_DEFAULTS, name) if value is None else value

    def problems(self) -> dict[str, OptionProblem]:
        """Every invalid option set, name -> its problem (``autowu_option_problems``)."""
        return autowu_option_problems(**self.kwargs())


@dataclasses.dataclass(frozen=True)
class OptionProblem:
    """Why an AutoWU option is invalid: ``message``, what ``AutoWUCore`` raises for it, and the other
    options its rule compares it with (``compared_with``: lr_max's rule reads lr_min), so that a caller
    can say which values came from ``AUTOWU_DEFAULTS``."""

    message: str
    compared_with: tuple[str, ...] = ()


def autowu_option_problems(**options: Any) -> dict[str, OptionProblem]:
    """Every invalid AutoWU option, name -> its problem; empty when all are valid.

    Options not given take ``AUTOWU_DEFAULTS``, so a range between two options (lr_max > lr_min) is
    checked against the default of the one not given.
    """
    return {name: OptionProblem(str(error), compared_with) for name, (error, compared_with) in
            _option_errors(options).items()}


def check_autowu_options(**options: Any) -> None:
    """Raise the constructor's error for the first invalid option (in the constructor's order), if any."""
    errors = _option_errors(options)
    if errors:
        raise next(iter(errors.values()))[0]


def _option_errors(options: dict[str, Any]) -> dict[str, tuple[Exception, tuple[str, ...]]]:
    """Each invalid option's error and the other options its rule read, in the constructor's order."""
    values = {**AUTOWU_DEFAULTS.to_dict(), **options}
    errors: dict[str, tuple[Exception, tuple[str, ...]]] = {}

    def check(name: str, ok: Any, rule: str | None = None, compared_with: tuple[str, ...] = ()) -> None:
        value = values[name]
        try:
            if not ok(value):
                raise ValueError(f"{name}={value!r} must be {rule}")
        except (ValueError, TypeError) as exc:  # TypeError: a value of the wrong type (compared with a number)
            errors[name] = exc, compared_with

    check("decay", lambda v: _check_choice("decay", v, DECAYS) or True)
    check("warmup", lambda v: _check_choice("warmup", v, WARMUPS) or True)
    lr_min = values["lr_min"]
    check("lr_min", lambda v: isinstance(v, (int, float)) and v > 0, "a number > 0")
    if "lr_min" not in errors:  # lr_max is compared with a valid lr_min only
        check("lr_max", lambda v: isinstance(v, (int, float)) and v > lr_min, f"a number > lr_min={lr_min!r}",
              compared_with=("lr_min",))
    check("max_warmup_fraction", lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
    check("confidence", lambda v: 0.0 < v < 1.0, "in (0, 1)")
    check("patience", lambda v: _check_int("patience", v, minimum=1) or True)
    check("const_fraction", lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
    check("divergence_factor", lambda v: v is None or v > 1.0, "> 1, or None to disable")
    check(
        "test_interval", lambda v: v in TEST_INTERVALS or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        f"{', '.join(map(repr, TEST_INTERVALS))} or a positive number of steps",
    )
    return errors


def _power(base: float, exponent: float) -> float:
    """``base ** exponent``, infinite where the float overflows (a test interval of 1e20 steps)."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")
