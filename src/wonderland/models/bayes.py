"""Bayesian linear regression (chapter 3) with its exact Gaussian posterior.

Prior ``w ~ N(0, α⁻¹ I)``, likelihood ``y | x, w ~ N(wᵀφ(x), β⁻¹)``. The posterior is
Gaussian with precision ``A = α I + β ΦᵀΦ`` and mean ``m = β A⁻¹ Φᵀ y``; the predictive
distribution at ``x`` has mean ``φ(x)ᵀ m`` and variance ``β⁻¹ + φ(x)ᵀ A⁻¹ φ(x)``.
The posterior mean is the MAP estimate, i.e. ridge regression with ``λ = α/β``: weight
decay is a Gaussian prior. All solves go through the Cholesky factor of ``A``.
"""

from __future__ import annotations

import numpy as np

from .. import linalg, ops
from ..core.tensor import Tensor
from ..distributions import MultivariateNormal
from ..ops.arguments import floating, to_tensor


class BayesianLinearRegression:
    def __init__(self, alpha=1.0, beta=25.0, fit_intercept=True):
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"BayesianLinearRegression: alpha and beta must be positive, got "
                             f"{alpha}, {beta}")
        self.alpha, self.beta, self.fit_intercept = alpha, beta, fit_intercept
        self.mean = None
        self.chol = None

    def _features(self, x):
        x = floating(to_tensor(x, "BayesianLinearRegression"))
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if self.fit_intercept:
            x = ops.concatenate([x, ops.ones((x.shape[0], 1), dtype=x.dtype)], axis=1)
        return x

    def fit(self, x, y):
        phi = self._features(x)
        y = to_tensor(y, "BayesianLinearRegression").astype(phi.dtype).reshape(-1)
        if y.shape[0] != phi.shape[0]:
            raise ValueError(f"BayesianLinearRegression.fit: {phi.shape[0]} inputs but "
                             f"{y.shape[0]} targets")
        d = phi.shape[1]
        precision = phi.T @ phi * self.beta + Tensor(self.alpha * np.eye(d, dtype=phi.dtype))
        self.chol = linalg.cholesky(precision)
        rhs = (phi.T @ y) * self.beta
        z = linalg.solve_triangular(self.chol, rhs)
        self.mean = linalg.solve_triangular(self.chol, z, transpose=True)
        return self

    def _check(self):
        if self.mean is None:
            raise RuntimeError("BayesianLinearRegression: call fit() first")

    def predict(self, x, return_std=False):
        """Predictive mean (and standard deviation, noise included)."""
        self._check()
        phi = self._features(x)
        mu = phi @ self.mean
        if not return_std:
            return mu
        v = linalg.solve_triangular(self.chol, phi.T)          # L⁻¹ φ
        var = (v * v).sum(0) + 1.0 / self.beta
        return mu, ops.sqrt(var)

    def posterior(self) -> MultivariateNormal:
        """The posterior over weights (intercept last)."""
        self._check()
        d = self.mean.shape[0]
        cov = linalg.solve(self.chol.T, linalg.solve_triangular(self.chol, Tensor(np.eye(d, dtype=self.mean.dtype))))
        return MultivariateNormal(self.mean, covariance_matrix=(cov + cov.T) * 0.5)

    def sample_functions(self, x, n=5, generator=None):
        """Predictions of ``n`` weight vectors drawn from the posterior: ``(n, len(x))``."""
        w = self.posterior().sample((n,), generator)
        return (self._features(x) @ w.T).T

    def log_evidence(self, x, y) -> float:
        """log p(y | x, α, β), the marginal likelihood used to choose α and β."""
        phi = self._features(x)
        y = to_tensor(y, "log_evidence").astype(phi.dtype).reshape(-1)
        n, d = phi.shape
        fit = BayesianLinearRegression(self.alpha, self.beta, False).fit(phi, y)
        resid = y - phi @ fit.mean
        e = 0.5 * self.beta * float((resid * resid).sum()) + 0.5 * self.alpha * float((fit.mean * fit.mean).sum())
        logdet = 2.0 * float(ops.log(linalg.diagonal(fit.chol)).sum())
        return (0.5 * d * np.log(self.alpha) + 0.5 * n * np.log(self.beta) - e - 0.5 * logdet
                - 0.5 * n * np.log(2 * np.pi))
