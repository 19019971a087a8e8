"""Parameter initialisers (PyTorch's names; the trailing ``_`` means *in place*).

Weights are laid out channels-last: a linear weight is ``(in, out)`` and a convolution
kernel ``(..., in, out)``, so ``fan_in`` is the product of all dimensions but the last
and ``fan_out`` the product of all but the second-to-last.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend as B
from ..core.tensor import Tensor
from ..random import get_generator

_GAINS = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3,
          "relu": math.sqrt(2.0), "selu": 3.0 / 4, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0}


def calculate_gain(nonlinearity: str = "linear", param=None) -> float:
    """The recommended gain for an activation (``leaky_relu`` takes its slope as ``param``)."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; known: "
                         f"{sorted(_GAINS) + ['leaky_relu']}")
    return _GAINS[nonlinearity]


def fans(shape) -> tuple:
    """``(fan_in, fan_out)`` of a weight of this shape (channels last)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fans: need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return receptive * shape[-2], receptive * shape[-1]


def _check(t, what):
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: expected a tensor, got {type(t).__name__}")
    if t.data.dtype.kind != "f":
        raise TypeError(f"{what}: expected a floating tensor, got {t.dtype}")
    if not t.data.flags.writeable:
        t.data = t.data.copy()
        t.bump_version()


def _fill(t, values):
    """Write ``values`` (a tensor or an array of the same backend) into ``t`` in place,
    bumping its version (a backward pass that saved the old values then refuses to
    run instead of using the new ones)."""
    t.copy_(values)
    return t


def uniform_(t, a=0.0, b=1.0, generator=None):
    """Fill with samples of U(a, b)."""
    _check(t, "uniform_")
    return _fill(t, get_generator(generator).uniform(t.shape, a, b, dtype=np.float64))


def normal_(t, mean=0.0, std=1.0, generator=None):
    """Fill with samples of N(mean, std²)."""
    _check(t, "normal_")
    return _fill(t, get_generator(generator).normal(t.shape, mean, std, dtype=np.float64))


def constant_(t, value):
    _check(t, "constant_")
    return _fill(t, value)


def zeros_(t):
    return constant_(t, 0.0)


def ones_(t):
    return constant_(t, 1.0)


def xavier_uniform_(t, gain=1.0, generator=None):
    """Glorot: U(±gain·sqrt(6 / (fan_in + fan_out)))."""
    fan_in, fan_out = fans(t.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, generator)


def xavier_normal_(t, gain=1.0, generator=None):
    """Glorot: N(0, gain² · 2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(t.shape)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(t, a, mode, nonlinearity):
    fan_in, fan_out = fans(t.shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He: U(±sqrt(3)·gain/sqrt(fan))."""
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity)
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He: N(0, (gain/sqrt(fan))²)."""
    return normal_(t, 0.0, _kaiming_std(t, a, mode, nonlinearity), generator)


def orthogonal_(t, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian matrix."""
    _check(t, "orthogonal_")
    if t.ndim < 2:
        raise ValueError(f"orthogonal_: need at least 2 dimensions, got shape {t.shape}")
    rows = int(np.prod(t.shape[:-1]))
    cols = t.shape[-1]
    flat = get_generator(generator).normal((max(rows, cols), min(rows, cols)), dtype=np.float64).data
    xp = B.ns(flat)
    q, r = xp.linalg.qr(flat)
    q *= xp.sign(xp.diagonal(r))
    if rows < cols:
        q = q.T
    return _fill(t, (gain * q[:rows, :cols]).reshape(t.shape))
