"""Probability distributions (appendix A): Bernoulli, Categorical, Normal,
MultivariateNormal, Uniform.

Each has ``log_prob``, ``sample`` (no gradient), ``rsample`` where a reparameterisation
exists (a differentiable function of the parameters and independent noise), ``entropy``,
``mean`` and ``variance``. Parameters may be tensors requiring grad, so maximum
likelihood is ``wl.grad`` of ``-log_prob(data).sum()``. ``kl_divergence(p, q)`` is in
closed form where one exists and a Monte Carlo estimate otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend as B
from . import ops
from .core.tensor import Tensor
from .core.tracing import read_values, record_call
from .linalg import cholesky, diagonal, solve_triangular
from .nn.functional import binary_cross_entropy_with_logits, log_sigmoid
from .ops.arguments import constant, floating, to_tensor
from .random import get_generator

_LOG_2PI = math.log(2 * math.pi)


def _param(x, what):
    t = to_tensor(x, what)
    return floating(t)


def _shape(shape):
    if isinstance(shape, int):
        return (shape,)
    return tuple(shape)



# checks of parameter values and samplers on arrays, called through ``record_call`` so that
# a jitted function runs them on the values of each call
def _require(values, *, test, message):
    if values.size and not test(values):
        raise ValueError(message)


def _positive(a) -> bool:
    return bool((a > 0).all())


def _non_negative(a) -> bool:
    return bool(a.min() >= 0)


def _probability(a) -> bool:
    return bool(a.min() >= 0 and a.max() <= 1)


def _inverse_cdf(u, probs):
    """Category indices of uniforms ``u`` (..., 1) under ``probs`` (..., k)."""
    cdf = B.ns(probs).cumsum(probs.astype(np.float64), axis=-1)
    idx = (u > cdf).sum(-1)
    return B.ns(probs).minimum(idx, probs.shape[-1] - 1).astype(np.int64)

class Distribution:
    """Base class; ``batch_shape`` is the shape of the parameters."""

    has_rsample = False
    event_shape: tuple = ()

    @property
    def batch_shape(self):
        return self._batch_shape

    def sample(self, shape=(), generator=None) -> Tensor:
        """Samples of shape ``shape + batch_shape (+ event_shape)``, without gradient."""
        return self.rsample(shape, generator).detach()

    def rsample(self, shape=(), generator=None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no reparameterised sampler; "
                                  f"use sample() (and a score-function estimator)")

    def log_prob(self, x) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def entropy(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def stddev(self):
        return ops.sqrt(self.variance)


class Normal(Distribution):
    """Gaussian N(loc, scale²)."""

    has_rsample = True

    def __init__(self, loc, scale):
        self.loc, self.scale = _param(loc, "Normal"), _param(scale, "Normal")
        record_call(_require, self.scale, test=_positive, message="Normal: scale must be positive")
        self._batch_shape = np.broadcast_shapes(self.loc.shape, self.scale.shape)

    def rsample(self, shape=(), generator=None):
        eps = get_generator(generator).normal(_shape(shape) + self._batch_shape, dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, x):
        x = to_tensor(x, "Normal.log_prob")
        z = (x - self.loc) / self.scale
        return -0.5 * z * z - ops.log(self.scale) - 0.5 * _LOG_2PI

    def cdf(self, x):
        x = to_tensor(x, "Normal.cdf")
        return 0.5 * (1.0 + ops.erf((x - self.loc) / (self.scale * math.sqrt(2.0))))

    def entropy(self):
        return 0.5 + 0.5 * _LOG_2PI + ops.log(self.scale) + self.loc * 0.0

    @property
    def mean(self):
        return self.loc + self.scale * 0.0

    @property
    def variance(self):
        return self.scale * self.scale + self.loc * 0.0

    def __repr__(self):
        return f"Normal(loc: {self.loc.shape}, scale: {self.scale.shape})"


class Uniform(Distribution):
    """Uniform on [low, high)."""

    has_rsample = True

    def __init__(self, low, high):
        self.low, self.high = _param(low, "Uniform"), _param(high, "Uniform")
        record_call(_require, self.high - self.low, test=_positive,
                    message="Uniform: need low < high")
        self._batch_shape = np.broadcast_shapes(self.low.shape, self.high.shape)

    def rsample(self, shape=(), generator=None):
        u = get_generator(generator).uniform(_shape(shape) + self._batch_shape, dtype=self.low.dtype)
        return self.low + (self.high - self.low) * u

    def log_prob(self, x):
        x = to_tensor(x, "Uniform.log_prob")
        inside = (x >= self.low) & (x < self.high)
        return ops.where(inside, -ops.log(self.high - self.low), float("-inf"))

    def cdf(self, x):
        x = to_tensor(x, "Uniform.cdf")
        return ops.clip((x - self.low) / (self.high - self.low), 0.0, 1.0)

    def entropy(self):
        return ops.log(self.high - self.low)

    @property
    def mean(self):
        return (self.low + self.high) * 0.5

    @property
    def variance(self):
        d = self.high - self.low
        return d * d * (1.0 / 12)


class Bernoulli(Distribution):
    """Bernoulli with ``probs`` or ``logits`` (log-odds); values 0 or 1."""

    def __init__(self, probs=None, logits=None):
        if (probs is None) == (logits is None):
            raise ValueError("Bernoulli: give exactly one of probs and logits")
        if probs is not None:
            self.probs = _param(probs, "Bernoulli")
            record_call(_require, self.probs, test=_probability,
                        message="Bernoulli: probs must lie in [0, 1]")
            eps = np.finfo(self.probs.dtype).eps
            clipped = ops.clip(self.probs, eps, 1 - eps)
            self.logits = ops.log(clipped) - ops.log1p(-clipped)
        else:
            self.logits = _param(logits, "Bernoulli")
            self.probs = ops.sigmoid(self.logits)
        self._batch_shape = self.logits.shape

    def sample(self, shape=(), generator=None):
        u = get_generator(generator).uniform(_shape(shape) + self._batch_shape, dtype=self.probs.dtype)
        return ops.less(u, self.probs.detach()).astype(self.probs.dtype)

    def log_prob(self, x):
        x = to_tensor(x, "Bernoulli.log_prob").astype(self.logits.dtype)
        logits = ops.broadcast_to(self.logits, np.broadcast_shapes(self.logits.shape, x.shape))
        return -binary_cross_entropy_with_logits(logits, ops.broadcast_to(x, logits.shape),
                                                 reduction="none")

    def entropy(self):
        p = self.probs
        return -(p * log_sigmoid(self.logits) + (1.0 - p) * log_sigmoid(-self.logits))

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        return self.probs * (1.0 - self.probs)


class Categorical(Distribution):
    """Categorical over the last axis, from ``probs`` (normalised) or ``logits``."""

    def __init__(self, probs=None, logits=None):
        if (probs is None) == (logits is None):
            raise ValueError("Categorical: give exactly one of probs and logits")
        if probs is not None:
            p = _param(probs, "Categorical")
            if p.ndim == 0:
                raise ValueError("Categorical: probs need a category axis")
            record_call(_require, p, test=_non_negative,
                        message="Categorical: probs must be non-negative")
            self.probs = p / p.sum(-1, keepdims=True)
            eps = float(np.finfo(p.dtype).eps)           # PyTorch clamps the same way
            self.logits = ops.log(ops.clip(self.probs, eps, 1 - eps))
        else:
            z = _param(logits, "Categorical")
            if z.ndim == 0:
                raise ValueError("Categorical: logits need a category axis")
            self.logits = ops.log_softmax(z)
            self.probs = ops.softmax(z)
        self._batch_shape = self.logits.shape[:-1]
        self.num_categories = self.logits.shape[-1]

    def sample(self, shape=(), generator=None):
        shape = _shape(shape)
        u = get_generator(generator).uniform(shape + self._batch_shape + (1,), dtype=np.float64)
        return constant(record_call(_inverse_cdf, u, self.probs))

    def log_prob(self, x):
        idx = x if isinstance(x, Tensor) else constant(np.asarray(x))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Categorical.log_prob: values must be integer categories, got {idx.dtype}")
        shape = np.broadcast_shapes(idx.shape, self._batch_shape)
        logits = ops.broadcast_to(self.logits, shape + (self.num_categories,))
        idx = ops.expand_dims(ops.broadcast_to(idx, shape), -1)
        return ops.take_along_axis(logits, idx, axis=-1)[..., 0]

    def entropy(self):
        return -(self.probs * self.logits).sum(-1)

    @property
    def mean(self):
        return (self.probs * constant(np.arange(self.num_categories, dtype=self.probs.dtype))).sum(-1)

    @property
    def variance(self):
        k = constant(np.arange(self.num_categories, dtype=self.probs.dtype))
        m = self.mean
        return (self.probs * k * k).sum(-1) - m * m


class MultivariateNormal(Distribution):
    """Gaussian N(loc, Σ) in d dimensions, parameterised through the Cholesky factor
    ``L`` of Σ (give one of ``covariance_matrix``, ``precision_matrix``, ``scale_tril``)."""

    has_rsample = True

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None):
        given = [m is not None for m in (covariance_matrix, precision_matrix, scale_tril)]
        if sum(given) != 1:
            raise ValueError("MultivariateNormal: give exactly one of covariance_matrix, "
                             "precision_matrix and scale_tril")
        if precision_matrix is not None:
            from .linalg import inv

            prec = _param(precision_matrix, "MultivariateNormal")
            covariance_matrix = inv(prec)
            covariance_matrix = (covariance_matrix + covariance_matrix.mT) * 0.5
        self.loc = _param(loc, "MultivariateNormal")
        if self.loc.ndim < 1:
            raise ValueError("MultivariateNormal: loc must have an event axis")
        d = self.loc.shape[-1]
        if scale_tril is not None:
            self.scale_tril = _param(scale_tril, "MultivariateNormal")
        else:
            cov = _param(covariance_matrix, "MultivariateNormal")
            if cov.shape[-2:] != (d, d):
                raise ValueError(f"MultivariateNormal: covariance {cov.shape} does not match loc {self.loc.shape}")
            self.scale_tril = cholesky(cov)
        if self.scale_tril.shape[-2:] != (d, d):
            raise ValueError(f"MultivariateNormal: scale_tril {self.scale_tril.shape} does not "
                             f"match loc {self.loc.shape}")
        self.dim = d
        self.event_shape = (d,)
        self._batch_shape = np.broadcast_shapes(self.loc.shape[:-1], self.scale_tril.shape[:-2])
        self.loc = ops.broadcast_to(self.loc, self._batch_shape + (d,))
        self.scale_tril = ops.broadcast_to(self.scale_tril, self._batch_shape + (d, d))

    @property
    def covariance_matrix(self):
        return self.scale_tril @ self.scale_tril.mT

    def rsample(self, shape=(), generator=None):
        eps = get_generator(generator).normal(_shape(shape) + self._batch_shape + (self.dim,),
                                     dtype=self.loc.dtype)
        return self.loc + (self.scale_tril @ eps.expand_dims(-1))[..., 0]

    def log_prob(self, x):
        x = to_tensor(x, "MultivariateNormal.log_prob")
        diff = x - self.loc
        batch = diff.shape[:-1]
        L = ops.broadcast_to(self.scale_tril, np.broadcast_shapes(batch, self.scale_tril.shape[:-2])
                             + (self.dim, self.dim))
        z = solve_triangular(L, diff.broadcast_to(L.shape[:-2] + (self.dim,)).expand_dims(-1))[..., 0]
        half_logdet = ops.log(diagonal(self.scale_tril)).sum(-1)
        return -0.5 * (z * z).sum(-1) - half_logdet - 0.5 * self.dim * _LOG_2PI

    def entropy(self):
        half_logdet = ops.log(diagonal(self.scale_tril)).sum(-1)
        return 0.5 * self.dim * (1.0 + _LOG_2PI) + half_logdet

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return (self.scale_tril * self.scale_tril).sum(-1)


# ----------------------------------------------------------------------------- KL divergence
def _kl_normal(p, q):
    var_ratio = (p.scale / q.scale) ** 2
    t1 = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (var_ratio + t1 - 1.0 - ops.log(var_ratio))


def _kl_bernoulli(p, q):
    return p.probs * (log_sigmoid(p.logits) - log_sigmoid(q.logits)) + \
        (1.0 - p.probs) * (log_sigmoid(-p.logits) - log_sigmoid(-q.logits))


def _kl_categorical(p, q):
    t = p.probs * (p.logits - q.logits)
    t = ops.where(ops.equal(q.probs, 0.0), float("inf"), t)     # p puts mass where q has none
    t = ops.where(ops.equal(p.probs, 0.0), 0.0, t)
    return t.sum(-1)


def _kl_mvn(p, q):
    d = p.dim
    m = solve_triangular(q.scale_tril, p.scale_tril)          # L_q^-1 L_p
    trace = (m * m).sum((-2, -1))
    diff = (q.loc - p.loc).expand_dims(-1)
    z = solve_triangular(q.scale_tril, diff)[..., 0]
    logdet = ops.log(diagonal(q.scale_tril)).sum(-1) - ops.log(diagonal(p.scale_tril)).sum(-1)
    return 0.5 * (trace + (z * z).sum(-1) - d) + logdet


def _kl_uniform(p, q):
    inside = ops.logical_and(ops.less_equal(q.low, p.low), ops.less_equal(p.high, q.high))
    val = ops.log((q.high - q.low) / (p.high - p.low))
    return ops.where(inside, val, float("inf"))


_KL = {(Normal, Normal): _kl_normal, (Bernoulli, Bernoulli): _kl_bernoulli,
       (Categorical, Categorical): _kl_categorical,
       (MultivariateNormal, MultivariateNormal): _kl_mvn, (Uniform, Uniform): _kl_uniform}


def kl_divergence(p: Distribution, q: Distribution, num_samples=None, generator=None) -> Tensor:
    """KL(p ‖ q): closed form for matching families; otherwise (or when
    ``num_samples`` is given) the Monte Carlo estimate mean(log p(x) − log q(x)),
    x ~ p, reparameterised when p allows it."""
    fn = _KL.get((type(p), type(q)))
    if fn is not None and num_samples is None:
        return fn(p, q)
    n = num_samples or 1000
    x = p.rsample((n,), generator) if p.has_rsample else p.sample((n,), generator)
    return (p.log_prob(x) - q.log_prob(x)).mean(0)


def monte_carlo(fn, dist: Distribution, num_samples=1000, generator=None) -> Tensor:
    """Estimate E_{x~dist}[fn(x)] by the mean over ``num_samples`` samples
    (reparameterised where possible, so the estimate is differentiable)."""
    x = dist.rsample((num_samples,), generator) if dist.has_rsample else \
        dist.sample((num_samples,), generator)
    return fn(x).mean(0)


def fit_normal(x, axis=0):
    """Maximum-likelihood Normal: the sample mean and the (biased) sample std."""
    x = floating(to_tensor(x, "fit_normal"))
    return Normal(x.mean(axis), x.std(axis))


def fit_bernoulli(x):
    """Maximum-likelihood Bernoulli: the fraction of ones."""
    x = floating(to_tensor(x, "fit_bernoulli"))
    return Bernoulli(probs=x.mean(0))


def fit_categorical(x, num_categories):
    """Maximum-likelihood Categorical: category frequencies."""
    idx = np.asarray(read_values(x, "fit_categorical"))
    counts = np.bincount(idx.ravel(), minlength=num_categories).astype(np.float64)
    return Categorical(probs=Tensor(counts / counts.sum()))


def fit_multivariate_normal(x):
    """Maximum-likelihood MultivariateNormal: sample mean and (biased) covariance."""
    x = floating(to_tensor(x, "fit_multivariate_normal"))
    mu = x.mean(0)
    d = x - mu
    return MultivariateNormal(mu, covariance_matrix=(d.T @ d) * (1.0 / x.shape[0]))
