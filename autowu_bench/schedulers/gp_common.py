"""What the fast and the reference GP minimum detectors share (docs/autowu.md "Data the test sees", "Test").

Both detectors take the whole warmup loss history, draw their random subsets through
:func:`draw_subsets` from a generator seeded the same way, and turn each vote's posterior into a
probability with :func:`lower_bound_probability`, so that their decisions can be compared one to one.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from autowu_bench.schedulers.lr_functions import WARMUPS, lr_at_fraction

#: Added to the variance of ``f(x_i) - f(1)`` before the normal CDF (the paper's jitter).
PROBABILITY_JITTER = 1e-4
#: Initial output scale: GPyTorch's default ``raw_outputscale = 0``, i.e. ``softplus(0) = ln 2``.
INITIAL_RAW_OUTPUTSCALE = 0.0
#: Torch threads during a test. A test is many small operations; on a loaded 2-core machine two
#: threads made the fast test 10 to 100 times slower than one (OpenMP threads waiting on each other).
TEST_THREADS = 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class DetectorResult:
    """One test of the GP minimum detector.

    Attributes:
        p: Lower-bound probability that the minimum lies before "now", one per vote (eqs. 3-4).
        votes: ``p_j > confidence`` (strict), one per vote.
        positive: More than half of the votes are True.
        x_star: Per vote, the grid point in [0, 1] where the posterior mean is lowest.
        start_lr: Eq. 5: mean over the votes of the warmup LR at ``x_star_j``.
        mu: Posterior mean of the latent loss on the grid, averaged over the votes.
        constant: Fitted GP constant mean after this test.
        outputscale: Fitted output scale ``s`` after this test.
        noise: Fitted noise variance after this test.
        n_finite: Finite points in the history.
        seconds: Wall time of this test.
    """

    p: list[float]
    votes: list[bool]
    positive: bool
    x_star: list[float]
    start_lr: float
    mu: list[float]
    constant: float
    outputscale: float
    noise: float
    n_finite: int
    seconds: float = field(default=0.0)


@dataclass(frozen=True)
class DetectorConfig:
    """A detector's settings (the same for both implementations), each field's default the one
    definition of that default; a detector's keyword arguments are these fields (``make_config``).

    Attributes:
        confidence: A vote is positive when its probability is strictly above this.
        lengthscale: RBF lengthscale on time scaled to [0, 1], fixed (>= 0.05 on the fast path).
        noise_init: Initial noise variance.
        noise_min: Lower bound of the noise variance.
        fit_iters: Adam iterations per test.
        fit_lr: Adam learning rate.
        fit_points: At most this many random finite points for the fit.
        votes: Votes per test; the test is positive when more than half are.
        vote_points: At most this many random finite points per vote.
        grid_points: Points of the evaluation grid on [0, 1], both ends included.
        seed: Seed of the generator that draws the subsets.
    """

    confidence: float = 0.95
    lengthscale: float = 0.2
    noise_init: float = 1e-3
    noise_min: float = 1e-4
    fit_iters: int = 100
    fit_lr: float = 0.01
    fit_points: int = 100
    votes: int = 5
    vote_points: int = 500
    grid_points: int = 500
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be >= {minimum}; pass a larger {name}")
    return int(value)


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}={value!r} must be a real number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite")
    return value


def make_config(options: Mapping[str, Any], *, min_lengthscale: float = 0.0) -> DetectorConfig:
    """A detector's keyword arguments ``options`` over ``DetectorConfig``'s defaults, validated; TypeError
    for an unknown one, ValueError naming the argument and the fix for a bad value."""
    known = [f.name for f in fields(DetectorConfig)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"unknown detector arguments {unknown}; known: {known}")
    given = replace(DetectorConfig(), **options)
    confidence = _check_real("confidence", given.confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1 (the paper uses 0.95)")
    lengthscale = _check_real("lengthscale", given.lengthscale)
    if not lengthscale > 0.0:
        raise ValueError(f"lengthscale={lengthscale!r} must be > 0 (time is scaled to [0, 1]; the paper uses 0.2)")
    if lengthscale < min_lengthscale:
        raise ValueError(
            f"lengthscale={lengthscale!r} is below {min_lengthscale}, where the fast detector's kernel expansion "
            "needs hundreds of terms; use ReferenceGPMinimumDetector for such short lengthscales"
        )
    noise_min = _check_real("noise_min", given.noise_min)
    if noise_min < 0.0:
        raise ValueError(f"noise_min={noise_min!r} must be >= 0 (the paper uses 1e-4)")
    noise_init = _check_real("noise_init", given.noise_init)
    if not noise_init > noise_min:
        raise ValueError(f"noise_init={noise_init!r} must be > noise_min={noise_min!r}; raise noise_init")
    fit_lr = _check_real("fit_lr", given.fit_lr)
    if not fit_lr > 0.0:
        raise ValueError(f"fit_lr={fit_lr!r} must be > 0 (the paper uses 0.01)")
    seed = given.seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r} must be an integer")
    return DetectorConfig(
        confidence=confidence,
        lengthscale=lengthscale,
        noise_init=noise_init,
        noise_min=noise_min,
        fit_iters=_check_int("fit_iters", given.fit_iters, 0),
        fit_lr=fit_lr,
        fit_points=_check_int("fit_points", given.fit_points, 2),
        votes=_check_int("votes", given.votes, 1),
        vote_points=_check_int("vote_points", given.vote_points, 2),
        grid_points=_check_int("grid_points", given.grid_points, 2),
        seed=int(seed),
    )


def check_test_args(lr_min: float, lr_now: float, warmup: str) -> tuple[float, float]:
    """Validate the arguments of ``test`` other than the losses."""
    lr_min = _check_real("lr_min", lr_min)
    lr_now = _check_real("lr_now", lr_now)
    if not lr_min > 0.0:
        raise ValueError(f"lr_min={lr_min!r} must be > 0: it is the first LR of the warmup")
    if not lr_now > 0.0:
        raise ValueError(f"lr_now={lr_now!r} must be > 0: pass the LR of the step whose loss was recorded last")
    if warmup not in WARMUPS:
        raise ValueError(f"warmup={warmup!r} is unknown; use one of {list(WARMUPS)}")
    return lr_min, lr_now


@dataclass(frozen=True)
class History:
    """The finite points of a loss history, placed at ``x_i = i / n`` (NaN/inf keep their slot)."""

    x: torch.Tensor  # float64, finite points only
    y: torch.Tensor  # float64, finite points only
    n: int  # all points, finite or not

    @property
    def n_finite(self) -> int:
        return int(self.x.numel())

    @property
    def degenerate(self) -> bool:
        """Fewer than 2 finite points, or all finite losses equal: nothing to fit."""
        return self.n_finite < 2 or bool((self.y == self.y[0]).all())


def history_points(losses: Sequence[float] | np.ndarray | torch.Tensor) -> History:
    """Convert the loss history (list, numpy array or 1-d tensor) to its finite points."""
    if isinstance(losses, torch.Tensor):
        y_all = losses.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            y_all = torch.as_tensor(np.asarray(losses, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"losses must be a sequence of floats; got {type(losses).__name__}: {exc}") from exc
    if y_all.dim() != 1:
        raise ValueError(f"losses must be 1-d (one loss per step); got shape {tuple(y_all.shape)}")
    n = int(y_all.numel())
    finite = torch.isfinite(y_all)
    x_all = torch.arange(n, dtype=torch.float64) / max(n, 1)
    return History(x=x_all[finite], y=y_all[finite], n=n)


def draw_subsets(
    n_finite: int, config: DetectorConfig, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Indices (sorted) of the fit subset and of each vote's subset, drawn from ``generator``.

    Returns ``(fit_idx, vote_idx)``; ``vote_idx`` is None while every vote sees all points
    (``n_finite <= vote_points``), in which case one vote is computed and replicated. The generator
    is only consumed where a subset is actually random, in the order fit, then vote 1..M.
    """
    all_idx = torch.arange(n_finite)
    if n_finite > config.fit_points:
        fit_idx = torch.randperm(n_finite, generator=generator)[: config.fit_points].sort().values
    else:
        fit_idx = all_idx
    if n_finite <= config.vote_points:
        return fit_idx, None
    vote_idx = [
        torch.randperm(n_finite, generator=generator)[: config.vote_points].sort().values
        for _ in range(config.votes)
    ]
    return fit_idx, vote_idx


def evaluation_grid(grid_points: int) -> torch.Tensor:
    """The evaluation grid G: ``grid_points`` evenly spaced points on [0, 1], both ends included."""
    return torch.linspace(0.0, 1.0, grid_points, dtype=torch.float64)


def lower_bound_probability(mu: torch.Tensor, var_diff: torch.Tensor) -> torch.Tensor:
    """Eqs. 3-4: ``max_{i < last} Phi((mu_last - mu_i) / sqrt(var_diff_i + 1e-4))`` per row.

    ``var_diff_i = var_i + var_last - 2 cov_{i,last}`` is the posterior variance of ``f(x_i) - f(1)``.
    ``mu`` and ``var_diff`` have shape (..., grid_points); the result has shape (...).
    """
    z = (mu[..., -1:] - mu[..., :-1]) / torch.sqrt(var_diff[..., :-1].clamp_min(0.0) + PROBABILITY_JITTER)
    phi = 0.5 * torch.erfc(-z / math.sqrt(2.0))
    return phi.max(dim=-1).values


def make_result(
    *,
    config: DetectorConfig,
    grid: torch.Tensor,
    mu: torch.Tensor,
    var_diff: torch.Tensor,
    lr_min: float,
    lr_now: float,
    warmup: str,
    constant: float,
    outputscale: float,
    noise: float,
    n_finite: int,
    seconds: float,
) -> DetectorResult:
    """Assemble the result from each vote's posterior mean and difference variance on the grid.

    ``mu`` and ``var_diff`` have shape (V, grid_points) with V = 1 (replicated to all votes) or M.
    """
    p = lower_bound_probability(mu, var_diff)
    x_star = grid[mu.argmin(dim=-1)]
    if mu.shape[0] == 1:
        p = p.expand(config.votes)
        x_star = x_star.expand(config.votes)
    p_list = [float(v) for v in p]
    votes = [v > config.confidence for v in p_list]
    x_list = [float(v) for v in x_star]
    start_lr = sum(lr_at_fraction(x, lr_min, lr_now, warmup) for x in x_list) / len(x_list)
    return DetectorResult(
        p=p_list,
        votes=votes,
        positive=sum(votes) > config.votes / 2,
        x_star=x_list,
        start_lr=float(start_lr),
        mu=mu.mean(dim=0).tolist(),
        constant=float(constant),
        outputscale=float(outputscale),
        noise=float(noise),
        n_finite=n_finite,
        seconds=seconds,
    )


def degenerate_result(
    *, config: DetectorConfig, history: History, lr_now: float, constant: float, outputscale: float,
    noise: float, seconds: float,
) -> DetectorResult:
    """The answer when there is nothing to fit: negative, p = 0, x* = 1 so the start LR is ``lr_now``."""
    level = float(history.y.mean()) if history.n_finite else math.nan
    return DetectorResult(
        p=[0.0] * config.votes,
        votes=[False] * config.votes,
        positive=False,
        x_star=[1.0] * config.votes,
        start_lr=float(lr_now),
        mu=[level] * config.grid_points,
        constant=float(constant),
        outputscale=float(outputscale),
        noise=float(noise),
        n_finite=history.n_finite,
        seconds=seconds,
    )


class DetectorBase:
    """The test contract both detectors share; subclasses fit and vote in ``_test``.

    Subclasses set ``config``, ``grid`` and ``generator`` and give ``hyperparameters()`` and their fitted
    state (``_fit_state`` / ``_load_fit_state``, within ``state_dict``).
    """

    def state_dict(self) -> dict[str, Any]:
        """The settings, the fitted state and the generator's: enough to resume bit-for-bit."""
        return {"config": self.config.as_dict(), **self._fit_state(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; the constructor arguments must match."""
        if state.get("config") != self.config.as_dict():
            raise ValueError(
                f"state was saved by a detector with {state.get('config')}, this one has "
                f"{self.config.as_dict()}; construct the detector with the same arguments"
            )
        self._load_fit_state(state)
        self.generator.set_state(state["generator"])

    def test(self, losses: Any, *, lr_min: float, lr_now: float, warmup: str = "exp") -> DetectorResult:
        """One test of the detector on the whole warmup history so far.

        Args:
            losses: Every per-step loss of the warmup so far (list, numpy array or 1-d tensor).
                Non-finite values keep their place (point i of n sits at ``x_i = i / n``) but the GP
                ignores them.
            lr_min: The first LR of the warmup.
            lr_now: The LR of the step whose loss was recorded last (x = 1).
            warmup: "exp" or "linear": how eq. 5 maps a grid point back to an LR.

        Returns:
            The test's :class:`DetectorResult`. With fewer than 2 finite points or a constant
            history it is negative with p = 0 and x* = 1 (start LR ``lr_now``), and the
            hyperparameters are left as they were.
        """
        start = time.perf_counter()
        lr_min, lr_now = check_test_args(lr_min, lr_now, warmup)
        with torch_threads(TEST_THREADS):
            history = history_points(losses)
            if history.degenerate:
                constant, outputscale, noise = self.hyperparameters()
                return degenerate_result(
                    config=self.config, history=history, lr_now=lr_now, constant=constant,
                    outputscale=outputscale, noise=noise, seconds=time.perf_counter() - start,
                )
            return self._test(history, lr_min, lr_now, warmup, start)

    def hyperparameters(self) -> tuple[float, float, float]:
        raise NotImplementedError

    def _fit_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_fit_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _test(self, history: History, lr_min: float, lr_now: float, warmup: str, start: float) -> DetectorResult:
        raise NotImplementedError
