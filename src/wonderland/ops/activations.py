"""A fused GELU (tanh form, GPT-2's): ``0.5·x·(1 + tanh(c·(x + 0.044715·x³)))`` with
``c = sqrt(2/π)`` as one primitive.

Composed from elementwise primitives the tanh-GELU makes about nine passes over its
input forward and twice as many backward, each keeping a full-size intermediate; the
fused forward makes a few in-place passes and keeps the input and ``tanh(u)``. The VJP
at first order is ``g · (0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3·0.044715·x²))`` on arrays;
recorded (higher orders) or under tangents/vmap it is the same formula in tensor
operations, which differentiates again. The composite form is the test's reference.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.modes import is_grad_enabled
from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ..core.vmap import unary_rule
from ._common import constant, floating, to_tensor
from .elementwise import tanh

_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


def _forward(x):
    dt = x.dtype.type
    u = x * x
    u *= dt(_A)
    u += dt(1.0)
    u *= x
    u *= dt(_C)
    t = np.tanh(u, out=u)
    y = t + dt(1.0)
    y *= x
    y *= dt(0.5)
    return y, (t,)


def _derivative(x):
    """d gelu/dx in tensor operations (differentiable again)."""
    t = tanh((x + x * x * x * _A) * _C)
    return (t + 1.0) * 0.5 + x * (1.0 - t * t) * (0.5 * _C) * (x * x * (3 * _A) + 1.0)


def _vjp(g, out, x, *, res):
    if (not is_grad_enabled() and g._tangents is None and g._batch is None
            and x._tangents is None and x._batch is None and res):
        xd, t = x.data, res[0].data
        dt = xd.dtype.type
        d = xd * xd
        d *= dt(3 * _A)
        d += dt(1.0)
        d *= xd
        s = t * t
        np.subtract(dt(1.0), s, out=s)
        d *= s
        d *= dt(_C)
        d += t
        d += dt(1.0)
        d *= dt(0.5)          # 0.5·(1 + t) + 0.5·c·x·(1 − t²)·(1 + 3a·x²)
        d *= g.data
        return constant(d)
    return g * _derivative(x)


_gelu = Primitive("gelu_tanh", _forward, vjp=_vjp,
                  jvp=lambda t, out, x: t * _derivative(x), save=(0,), residuals=True)
_gelu.batch = unary_rule(_gelu)


def gelu_tanh(x) -> Tensor:
    """GELU, tanh approximation, as one fused primitive."""
    x = floating(to_tensor(x, "gelu_tanh"))
    return apply(_gelu, (x,))


__all__ = ["gelu_tanh"]
