"""The GP minimum detector of AutoWU written plainly with GPyTorch: the reference for the fast path.

Slow (a few hundred ms per test) and meant to be read: an ExactGP with a constant mean and a scaled
RBF kernel whose lengthscale is fixed, fitted with ``torch.optim.Adam`` on GPyTorch's exact marginal
log-likelihood, then conditioned on each vote's subset to get the full posterior covariance on the
grid. The fast detector (``detector.py``) must agree with it; ``tests/test_detector.py`` checks that.
Everything runs in float64 so that the comparison is tight.
"""

from __future__ import annotations

import time
from typing import Any

import gpytorch
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


class _LossCurveGP(gpytorch.models.ExactGP):
    """f ~ GP(c, s * exp(-(x - x')^2 / (2 ell^2))), observed with Gaussian noise (docs/autowu.md, "GP model")."""

    def __init__(self, likelihood: gpytorch.likelihoods.GaussianLikelihood, lengthscale: float):
        super().__init__(None, None, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
        self.covar_module.base_kernel.lengthscale = lengthscale
        self.covar_module.base_kernel.raw_lengthscale.requires_grad_(False)
        self.covar_module.raw_outputscale.data.fill_(INITIAL_RAW_OUTPUTSCALE)

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class ReferenceGPMinimumDetector(DetectorBase):
    """GPyTorch reference of :class:`~autowu_bench.schedulers.detector.GPMinimumDetector` (same API).

    Keyword arguments: the fields of ``gp_common.DetectorConfig`` (their defaults are there).
    """

    def __init__(self, **options: Any) -> None:
        self.config = config = make_config(options)
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(config.noise_min)
        )
        likelihood.noise = config.noise_init
        self.model = _LossCurveGP(likelihood, config.lengthscale).double()
        self.likelihood = self.model.likelihood
        self.mll = gpytorch.mlls.ExactMarginalLogLikelihood(self.likelihood, self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=config.fit_lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.grid = evaluation_grid(config.grid_points)

    def hyperparameters(self) -> tuple[float, float, float]:
        """(constant, outputscale, noise) as they stand now."""
        with torch.no_grad():
            return (
                float(self.model.mean_module.constant),
                float(self.model.covar_module.outputscale),
                float(self.likelihood.noise),
            )

    def _test(self, history: History, lr_min: float, lr_now: float, warmup: str, start: float) -> DetectorResult:
        fit_idx, vote_idx = draw_subsets(history.n_finite, self.config, self.generator)

        # Fit: constant reset to the mean of the finite losses, the rest warm-started.
        self.model.mean_module.constant = history.y.mean()
        self.model.set_train_data(history.x[fit_idx].unsqueeze(-1), history.y[fit_idx], strict=False)
        self.model.train()
        self.likelihood.train()
        for _ in range(self.config.fit_iters):
            self.optimizer.zero_grad()
            loss = -self.mll(self.model(*self.model.train_inputs), self.model.train_targets)
            loss.backward()
            self.optimizer.step()

        # Votes: condition on each subset (no refit) and read the latent posterior on the grid.
        self.model.eval()
        self.likelihood.eval()
        subsets = [torch.arange(history.n_finite)] if vote_idx is None else vote_idx
        mus, var_diffs = [], []
        with torch.no_grad():
            for idx in subsets:
                self.model.set_train_data(history.x[idx].unsqueeze(-1), history.y[idx], strict=False)
                posterior = self.model(self.grid.unsqueeze(-1))
                cov = posterior.covariance_matrix
                var = cov.diagonal()
                mus.append(posterior.mean)
                var_diffs.append(var + var[-1] - 2.0 * cov[:, -1])
        constant, outputscale, noise = self.hyperparameters()
        return make_result(
            config=self.config, grid=self.grid, mu=torch.stack(mus), var_diff=torch.stack(var_diffs),
            lr_min=lr_min, lr_now=lr_now, warmup=warmup, constant=constant, outputscale=outputscale,
            noise=noise, n_finite=history.n_finite, seconds=time.perf_counter() - start,
        )

    def _fit_state(self) -> dict[str, Any]:
        """GP parameters and Adam state."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def _load_fit_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
