"""Fused normalisation primitives: ``normalize`` (zero mean, unit variance over axes,
the core of batch, layer and group norm) and ``rms_normalize`` (RMSNorm's scaling).

Both Jacobians are symmetric, so one rule serves as VJP and JVP:

* ``normalize``: x̂ = (x − μ)/σ, σ = sqrt(var + ε);  J v = (v − mean(v) − x̂·mean(v·x̂)) / σ
* ``rms_normalize``: y = x·r, r = 1/sqrt(mean(x²) + ε);  J v = r·(v − y·mean(v·y))

Like PyTorch's, the nodes keep the input and the small per-row statistics (μ and 1/σ,
or r) the forward computed, not the output. When the backward pass is itself recorded
or carries tangents (higher orders), the rules recompute the statistics from ``x`` with
tensor operations so that they differentiate again. The composite versions are checked against these in the
tests.
"""

from __future__ import annotations

import numpy as np

from ..core.modes import is_grad_enabled
from ..core.primitive import Primitive, apply
from ..core.vmap import axis_rule
from .reductions import mean, var


def _normalize_forward(x, *, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    centred = x - mu
    v = (centred * centred).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(v + eps)
    centred *= inv_std
    return centred, (mu, inv_std)


def _normalize_rule(v, out, x, *, axes, eps):
    inv_std = (var(x, axes, keepdims=True) + eps) ** -0.5
    return (v - mean(v, axes, keepdims=True) - out * mean(v * out, axes, keepdims=True)) * inv_std


def _normalize_vjp(g, out, x, *, axes, eps, res):
    if is_grad_enabled() or x._tangents:  # higher orders: the statistics must follow x
        centred = x - mean(x, axes, keepdims=True)
        inv_std = (mean(centred * centred, axes, keepdims=True) + eps) ** -0.5
        out = centred * inv_std
    else:
        mu, inv_std = res
        out = (x - mu) * inv_std
    return (g - mean(g, axes, keepdims=True) - out * mean(g * out, axes, keepdims=True)) * inv_std


_normalize = Primitive("normalize", _normalize_forward, vjp=_normalize_vjp,
                       jvp=_normalize_rule, save=(0,), residuals=True)
_normalize.batch = axis_rule(_normalize, "axes")


def _rms_forward(x, *, axes, eps):
    ms = (x * x).mean(axis=axes, keepdims=True)
    r = 1.0 / np.sqrt(ms + eps)
    return x * r, (r,)


def _rms_rule(v, out, x, *, axes, eps):
    r = (mean(x * x, axes, keepdims=True) + eps) ** -0.5
    return (v - out * mean(v * out, axes, keepdims=True)) * r


def _rms_vjp(g, out, x, *, axes, eps, res):
    if is_grad_enabled() or x._tangents:
        r = (mean(x * x, axes, keepdims=True) + eps) ** -0.5
    else:
        r, = res
    out = x * r
    return (g - out * mean(g * out, axes, keepdims=True)) * r


_rms = Primitive("rms_normalize", _rms_forward, vjp=_rms_vjp, jvp=_rms_rule, save=(0,),
                 residuals=True)
_rms.batch = axis_rule(_rms, "axes")


def normalize(x, axes, eps=1e-5):
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (a tuple of non-negative axes)."""
    return apply(_normalize, (x,), {"axes": tuple(axes), "eps": float(eps)})


def rms_normalize(x, axes, eps=1e-6):
    """``x / sqrt(mean(x²) + eps)`` over ``axes``."""
    return apply(_rms, (x,), {"axes": tuple(axes), "eps": float(eps)})
