"""One-pass kernels for the backward rules of the hot activations.

In NumPy, ReLU's gradient ``g * (out > 0)`` is two passes over memory and a temporary
mask; compiled, it is one pass that reads ``g`` and ``out`` and writes the result.
First-order backward rules use these when no transform traces their inputs; the rules
written with tensor operations remain the reference (and what higher orders use).
"""

from __future__ import annotations

import numpy as np

from ...backend.compiled import ENABLED, kernel


@kernel
def relu_vjp(g, out, res):
    """``res = g`` where ``out > 0``, else 0 (flat arrays of one length)."""
    for i in range(g.size):
        res[i] = g[i] if out[i] > 0 else 0


def applies(*arrays) -> bool:
    """Whether the kernels serve these arrays: plain NumPy float arrays of one shape and
    dtype, kernels on."""
    first = arrays[0]
    return ENABLED and all(type(a) is np.ndarray and a.dtype == first.dtype
                           and a.shape == first.shape for a in arrays) and first.dtype.kind == "f"


def relu_backward(g, out):
    """``g * (out > 0)`` in one pass."""
    g = np.ascontiguousarray(g)
    out = np.ascontiguousarray(out)
    res = np.empty_like(g)
    relu_vjp(g.reshape(-1), out.reshape(-1), res.reshape(-1))
    return res
