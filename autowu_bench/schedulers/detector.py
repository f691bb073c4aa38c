"""The GP minimum detector of AutoWU, fast path (docs/autowu.md "GP model", "Test", "Start of the decay").

The model is the reference's (``reference_detector.py``, GPyTorch): constant mean ``c``, kernel
``s * exp(-(x - x')^2 / (2 ell^2))`` with ``ell`` fixed, Gaussian noise ``sigma^2 > noise_min``;
``s`` and ``sigma^2`` are learned through GPyTorch's softplus constraints (``s = softplus(raw_s)``,
``sigma^2 = noise_min + softplus(raw_n)``), ``c`` is unconstrained. The same exact-GP equations are
computed in a cheaper order, in float64:

* Fit. The lengthscale is fixed, so the fit subset's kernel matrix is ``K = s R + sigma^2 I`` with
  ``R`` constant during the fit. One eigendecomposition ``R = Q diag(lam) Q^T`` per test makes every
  Adam iteration O(n): with ``z = Q^T y``, ``u = Q^T 1``, ``d = s lam + sigma^2`` and
  ``h = (z - c u) / d``, the closed-form gradient ``1/2 tr((K^-1 - a a^T) dK/dtheta)``,
  ``a = K^-1 (y - c)``, of the per-point negative log marginal likelihood is
  ``dc = -u.h / n``, ``ds = 1/2 lam.(1/d - h^2) / n``, ``dsigma^2 = 1/2 sum(1/d - h^2) / n``.
  Adam is written out exactly as ``torch.optim.Adam`` does it (betas 0.9/0.999, eps 1e-8) on the
  three raw parameters.
* Votes. On [0, 1] the RBF kernel is a sum of rank-one terms,
  ``exp(-(u - v)^2 / 2) = sum_k phi_k(u) phi_k(v)``, ``phi_k(u) = exp(-u^2 / 2) u^k / sqrt(k!)``
  with ``u = (x - 1/2) / ell``; the terms after ``r`` add less than 1e-18 (``r = 44`` for
  ``ell = 0.2``), far below float64 rounding. In these features the GP is a Bayesian linear model,
  and the posterior of the latent f on the grid costs O(n r^2) per vote instead of O(n^3 + n^2 m):
  ``A = Phi^T Phi / sigma^2 + I / s``, ``mu = c + Phi_G A^-1 Phi^T (y - c) / sigma^2`` and the
  variance of ``f(x_i) - f(1)`` is ``|L^-1 (phi_i - phi_last)|^2`` with ``A = L L^T``. Only those
  variances are formed, never the 500 x 500 posterior covariance, and the votes are batched.

A test runs on one torch thread (``gp_common.TEST_THREADS``; the caller's setting is restored) and
takes a few milliseconds at the paper's sizes on the 2-core machine (``bench/gp_test.py``), against
0.1 to 0.4 s for the reference. ``tests/test_detector.py`` checks both give the same hyperparameters,
p values, decisions and start LRs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from autowu_bench.schedulers.gp_common import (
    INITIAL_RAW_OUTPUTSCALE,
    DetectorBase,
    DetectorResult,
    History,
    draw_subsets,
    evaluation_grid,
    make_config,
    make_result,
)

#: Adam's constants, as torch.optim.Adam's defaults (the reference uses those).
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
#: The kernel's feature expansion stops where the rest adds less than this (relative to s).
FEATURE_TOLERANCE = 1e-18
#: Below this lengthscale the expansion needs hundreds of terms; use the reference detector instead.
MIN_LENGTHSCALE = 0.05

_DTYPE = torch.float64


def _inv_softplus(x: float) -> float:
    """GPyTorch's inverse of softplus: ``x + log(-expm1(-x))``."""
    return x + math.log(-math.expm1(-x))


def _softplus(x: float) -> float:
    """GPyTorch's softplus (``torch.nn.Softplus``: beta 1, threshold 20) on a Python float."""
    return x if x > 20.0 else math.log1p(math.exp(x))


def _softplus_grad(x: float) -> float:
    """Derivative of softplus as torch computes it: 1 above the threshold, else the sigmoid."""
    return 1.0 if x > 20.0 else 1.0 / (1.0 + math.exp(-x))


def feature_count(lengthscale: float) -> int:
    """Terms of the expansion so that the dropped ones add at most FEATURE_TOLERANCE.

    With ``u, v`` in ``[-b, b]``, ``b = 1 / (2 ell)``, the terms from ``r`` on add at most
    ``b^(2r) / r!`` (times ``exp(|uv| - (u^2 + v^2) / 2) <= 1``).
    """
    log_b2 = 2.0 * math.log(0.5 / lengthscale)
    r = 1
    while r * log_b2 - math.lgamma(r + 1) > math.log(FEATURE_TOLERANCE):
        r += 1
    return r


def rbf_features(x: torch.Tensor, lengthscale: float, r: int) -> torch.Tensor:
    """``phi_k(x)``, k < r, of shape (*x.shape, r), with ``sum_k phi_k(x) phi_k(x') = rbf(x, x')``."""
    u = ((x - 0.5) / lengthscale).unsqueeze(-1)
    k = torch.arange(r, dtype=_DTYPE)
    log_mag = -0.5 * u * u + torch.xlogy(k, u.abs()) - 0.5 * torch.lgamma(k + 1.0)
    sign = torch.where((u < 0) & (k % 2 == 1), -1.0, 1.0)
    return sign * torch.exp(log_mag)


class GPMinimumDetector(DetectorBase):
    """Decides whether the loss curve of the warmup has passed its minimum (AutoWU eqs. 2-5).

    Each :meth:`test` fits the GP hyperparameters on a random subset of the history (warm-started
    from the previous test), then lets ``votes`` random subsets vote on ``P(min_{x<1} f(x) < f(1))``.

    Keyword arguments: the fields of ``gp_common.DetectorConfig`` (their defaults are there); the
    lengthscale must be at least ``MIN_LENGTHSCALE`` here.
    """

    def __init__(self, **options: Any) -> None:
        self.config = config = make_config(options, min_lengthscale=MIN_LENGTHSCALE)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        # Raw (unconstrained) hyperparameters: constant, outputscale, noise; and Adam's state for them.
        self._raw = [0.0, INITIAL_RAW_OUTPUTSCALE, _inv_softplus(config.noise_init - config.noise_min)]
        self._exp_avg = [0.0, 0.0, 0.0]
        self._exp_avg_sq = [0.0, 0.0, 0.0]
        self._adam_step = 0
        self.grid = evaluation_grid(config.grid_points)
        self._r = feature_count(config.lengthscale)
        grid_features = rbf_features(self.grid, config.lengthscale, self._r)
        self._grid_features = grid_features
        self._grid_diff_features = (grid_features - grid_features[-1]).T.contiguous()

    def hyperparameters(self) -> tuple[float, float, float]:
        """(constant, outputscale, noise) as they stand now."""
        return self._raw[0], _softplus(self._raw[1]), self.config.noise_min + _softplus(self._raw[2])

    def _test(self, history: History, lr_min: float, lr_now: float, warmup: str, start: float) -> DetectorResult:
        fit_idx, vote_idx = draw_subsets(history.n_finite, self.config, self.generator)
        self._raw[0] = float(history.y.mean())
        self._fit(history.x[fit_idx], history.y[fit_idx])
        constant, outputscale, noise = self.hyperparameters()
        if vote_idx is None:
            x_votes, y_votes = history.x.unsqueeze(0), history.y.unsqueeze(0)
        else:
            stacked = torch.stack(vote_idx)
            x_votes, y_votes = history.x[stacked], history.y[stacked]
        mu, var_diff = self._posterior(x_votes, y_votes, constant, outputscale, noise)
        return make_result(
            config=self.config, grid=self.grid, mu=mu, var_diff=var_diff, lr_min=lr_min, lr_now=lr_now,
            warmup=warmup, constant=constant, outputscale=outputscale, noise=noise,
            n_finite=history.n_finite, seconds=time.perf_counter() - start,
        )

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """``fit_iters`` Adam steps on the per-point negative log marginal likelihood of (x, y)."""
        n = x.numel()
        ell2 = self.config.lengthscale**2
        lam, q = torch.linalg.eigh(torch.exp(-((x[:, None] - x[None, :]) ** 2) / (2.0 * ell2)))
        z = q.T @ y
        u = q.sum(dim=0)
        noise_min, lr = self.config.noise_min, self.config.fit_lr
        raw, m, v = self._raw, self._exp_avg, self._exp_avg_sq
        for _ in range(self.config.fit_iters):
            s = _softplus(raw[1])
            noise = noise_min + _softplus(raw[2])
            d = lam * s + noise
            h = torch.add(z, u, alpha=-raw[0]).div_(d)
            w = d.reciprocal().addcmul_(h, h, value=-1.0)
            g_c, g_s, g_n = torch.stack((u @ h, lam @ w, w.sum())).tolist()
            grad = (
                -g_c / n,
                0.5 * g_s / n * _softplus_grad(raw[1]),
                0.5 * g_n / n * _softplus_grad(raw[2]),
            )
            self._adam_step += 1
            bias1 = 1.0 - ADAM_BETA1**self._adam_step
            bias2_sqrt = math.sqrt(1.0 - ADAM_BETA2**self._adam_step)
            for i, g in enumerate(grad):
                m[i] += (g - m[i]) * (1.0 - ADAM_BETA1)
                v[i] = v[i] * ADAM_BETA2 + (1.0 - ADAM_BETA2) * g * g
                raw[i] -= lr / bias1 * m[i] / (math.sqrt(v[i]) / bias2_sqrt + ADAM_EPS)

    def _posterior(
        self, x: torch.Tensor, y: torch.Tensor, constant: float, outputscale: float, noise: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean of f on the grid and variance of ``f(x_i) - f(1)``, one row per vote.

        ``x`` and ``y`` have shape (V, n): V votes of n points each.
        """
        phi = rbf_features(x, self.config.lengthscale, self._r)  # (V, n, r)
        phi_t = phi.transpose(-1, -2)
        precision = phi_t @ phi / noise + torch.eye(self._r, dtype=_DTYPE) / outputscale
        chol = torch.linalg.cholesky(precision)
        b = phi_t @ (y - constant).unsqueeze(-1) / noise
        weights = torch.cholesky_solve(b, chol)  # (V, r, 1)
        mu = constant + (self._grid_features @ weights).squeeze(-1)
        diff = torch.linalg.solve_triangular(chol, self._grid_diff_features.expand(len(x), -1, -1), upper=False)
        return mu, (diff * diff).sum(dim=-2)

    def _fit_state(self) -> dict[str, Any]:
        """Raw hyperparameters, Adam moments and step count."""
        return {
            "raw_constant": self._raw[0],
            "raw_outputscale": self._raw[1],
            "raw_noise": self._raw[2],
            "adam_exp_avg": list(self._exp_avg),
            "adam_exp_avg_sq": list(self._exp_avg_sq),
            "adam_step": self._adam_step,
        }

    def _load_fit_state(self, state: dict[str, Any]) -> None:
        self._raw = [float(state["raw_constant"]), float(state["raw_outputscale"]), float(state["raw_noise"])]
        self._exp_avg = [float(v) for v in state["adam_exp_avg"]]
        self._exp_avg_sq = [float(v) for v in state["adam_exp_avg_sq"]]
        self._adam_step = int(state["adam_step"])
