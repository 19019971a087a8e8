"""One-pass kernels for the backward rules of the hot activations.

In NumPy, ReLU's gradient ``g * (out > 0)`` is two passes over memory and a temporary
mask; compiled, it is one pass that reads ``g`` and ``out`` and writes the result. The
sigmoid's ``g (out (1 − out))`` and tanh's ``g (1 − out²)`` are three NumPy passes and two
temporaries; compiled, one pass doing the same operations in the same order (the results
equal NumPy's bit for bit, float32 and float64).
First-order backward rules use these when no transform traces their inputs; the rules
written with tensor operations remain the reference (and what higher orders use).
"""

from __future__ import annotations

import numpy as np

from ...backend import compiled
from ...backend.compiled import kernel


@kernel
def relu_vjp(g, out, res):
    """``res = g`` where ``out > 0``, else 0 (flat arrays of one length)."""
    for i in range(g.size):
        res[i] = g[i] if out[i] > 0 else 0


def applies(*arrays) -> bool:
    """Whether the kernels serve these arrays: plain NumPy float arrays of one shape and
    dtype, kernels on."""
    first = arrays[0]
    return compiled.ENABLED and all(type(a) is np.ndarray and a.dtype == first.dtype
                           and a.shape == first.shape for a in arrays) and first.dtype.kind == "f"


def relu_backward(g, out):
    """``g * (out > 0)`` in one pass."""
    g = np.ascontiguousarray(g)
    out = np.ascontiguousarray(out)
    res = np.empty_like(g)
    relu_vjp(g.reshape(-1), out.reshape(-1), res.reshape(-1))
    return res


@kernel
def sigmoid_vjp(g, out, one, res):
    """``res = g (out (1 − out))`` (flat arrays; ``one`` is 1 in their dtype)."""
    for i in range(g.size):
        o = out[i]
        res[i] = g[i] * (o * (one - o))


@kernel
def tanh_vjp(g, out, one, res):
    """``res = g (1 − out²)`` (flat arrays; ``one`` is 1 in their dtype)."""
    for i in range(g.size):
        o = out[i]
        res[i] = g[i] * (one - o * o)


def _one_pass(kern, g, out):
    g = np.ascontiguousarray(g)
    out = np.ascontiguousarray(out)
    res = np.empty_like(g)
    kern(g.reshape(-1), out.reshape(-1), out.dtype.type(1), res.reshape(-1))
    return res


def sigmoid_backward(g, out):
    """``g * (out * (1 - out))`` in one pass."""
    return _one_pass(sigmoid_vjp, g, out)


def tanh_backward(g, out):
    """``g * (1 - out * out)`` in one pass."""
    return _one_pass(tanh_vjp, g, out)
