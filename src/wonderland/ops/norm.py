"""Fused normalisation primitives: ``normalize`` (zero mean, unit variance over axes,
the core of batch, layer and group norm) and ``rms_normalize`` (RMSNorm's scaling).

Both Jacobians are symmetric, so one rule serves as VJP and JVP:

* ``normalize``: x̂ = (x − μ)/σ, σ = sqrt(var + ε);  J v = (v − mean(v) − x̂·mean(v·x̂)) / σ
* ``rms_normalize``: y = x·r, r = 1/sqrt(mean(x²) + ε);  J v = r·(v − y·mean(v·y))

The rules recompute σ (or r) from ``x`` with tensor operations, so they differentiate
again. The composite versions are checked against these in the tests.
"""

from __future__ import annotations

from ..core.primitive import Primitive, apply
from .reductions import mean, var


def _normalize_forward(x, *, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    centred = x - mu
    v = (centred * centred).mean(axis=axes, keepdims=True)
    centred /= (v + eps) ** 0.5
    return centred


def _normalize_rule(v, out, x, *, axes, eps):
    inv_std = (var(x, axes, keepdims=True) + eps) ** -0.5
    return (v - mean(v, axes, keepdims=True) - out * mean(v * out, axes, keepdims=True)) * inv_std


_normalize = Primitive("normalize", _normalize_forward, vjp=_normalize_rule, jvp=_normalize_rule)


def _rms_forward(x, *, axes, eps):
    ms = (x * x).mean(axis=axes, keepdims=True)
    return x / (ms + eps) ** 0.5


def _rms_rule(v, out, x, *, axes, eps):
    r = (mean(x * x, axes, keepdims=True) + eps) ** -0.5
    return (v - out * mean(v * out, axes, keepdims=True)) * r


_rms = Primitive("rms_normalize", _rms_forward, vjp=_rms_rule, jvp=_rms_rule)


def normalize(x, axes, eps=1e-5):
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (a tuple of non-negative axes)."""
    return apply(_normalize, (x,), {"axes": tuple(axes), "eps": float(eps)})


def rms_normalize(x, axes, eps=1e-6):
    """``x / sqrt(mean(x²) + eps)`` over ``axes``."""
    return apply(_rms, (x,), {"axes": tuple(axes), "eps": float(eps)})
