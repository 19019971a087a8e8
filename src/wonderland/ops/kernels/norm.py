"""Layer norm over the last axis as two compiled row loops (``normalize_affine`` with
``axes = (last,)`` and a weight and bias of the last axis's length, the transformer's
case): the forward computes each row's mean and 1/σ and writes ``x̂ w + b`` in one pass
per row; the backward recomputes x̂ from the kept statistics and writes ∂x while it
accumulates ∂w and ∂b. In NumPy these are ten or more passes over the whole array, each
with a temporary.

Rows are split over the library's threads; each thread sums ∂w and ∂b of its rows into
its own float64 buffer, added afterwards. The arithmetic is float64 for float32 data too
(a row's sums of hundreds of float32 numbers would lose digits otherwise), and the
results are rounded once when stored. The tests compare both with the composite NumPy
reference.
"""

from __future__ import annotations

import numpy as np

from ...backend import compiled, threads
from ...backend.compiled import kernel


@kernel
def layer_norm_rows(x, w, b, eps, y, mu, inv_std):
    """Rows of ``x`` (rows × n): ``mu``, ``inv_std`` (rows) and ``y = (x − μ)/σ · w + b``."""
    rows, n = x.shape
    for r in range(rows):
        s = 0.0
        for j in range(n):
            s += x[r, j]
        m = s / n
        ss = 0.0
        for j in range(n):
            d = x[r, j] - m
            ss += d * d
        inv = 1.0 / np.sqrt(ss / n + eps)
        mu[r] = m
        inv_std[r] = inv
        for j in range(n):
            y[r, j] = (x[r, j] - m) * inv * w[j] + b[j]


@kernel
def layer_norm_rows_backward(g, x, w, mu, inv_std, gx, gw, gb):
    """∂x of the rows (rows × n) into ``gx``; ∂w and ∂b of the rows added to ``gw``,
    ``gb`` (n, float64)."""
    rows, n = x.shape
    for r in range(rows):
        m = np.float64(mu[r])
        inv = np.float64(inv_std[r])
        s1 = 0.0                       # Σ g w
        s2 = 0.0                       # Σ g w x̂
        for j in range(n):
            xh = (x[r, j] - m) * inv
            gy = g[r, j] * w[j]
            s1 += gy
            s2 += gy * xh
            gw[j] += g[r, j] * xh
            gb[j] += g[r, j]
        a = s1 / n
        c = s2 / n
        for j in range(n):
            xh = (x[r, j] - m) * inv
            gx[r, j] = (g[r, j] * w[j] - a - xh * c) * inv


# ----------------------------------------------------------------------------- array level
def applies(x, w, b, axes) -> bool:
    """Whether the kernels serve this layer norm: plain NumPy float arrays of one dtype,
    normalised over the last axis, weight and bias of that axis's length, kernels on
    (the backward, which does not keep the bias, passes the weight twice)."""
    return (compiled.ENABLED and type(x) is np.ndarray and type(w) is np.ndarray
            and type(b) is np.ndarray and x.dtype.kind == "f" and x.ndim >= 1
            and w.dtype == x.dtype and b.dtype == x.dtype
            and tuple(axes) == (x.ndim - 1,) and w.shape == b.shape == (x.shape[-1],)
            and x.size > 0)


def layer_norm(x, w, b, eps):
    """``(y, (μ, 1/σ))`` as ``normalize_affine``'s forward gives them (statistics with the
    last axis kept, in x's dtype)."""
    n = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, n)
    y = np.empty_like(x2)
    mu = np.empty(x2.shape[0], np.float64)
    inv_std = np.empty(x2.shape[0], np.float64)
    threads.parallel_for(x2.shape[0], lambda lo, hi, lane: layer_norm_rows(
        x2[lo:hi], w, b, float(eps), y[lo:hi], mu[lo:hi], inv_std[lo:hi]), size=x2.size)
    stats = x.shape[:-1] + (1,)
    return y.reshape(x.shape), (mu.astype(x.dtype).reshape(stats),
                                inv_std.astype(x.dtype).reshape(stats))


def layer_norm_backward(g, x, w, mu, inv_std):
    """``(∂x, ∂w, ∂b)`` for the cotangent ``g`` of ``y``, from the kept statistics."""
    n = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, n)
    g2 = np.ascontiguousarray(g, dtype=x.dtype).reshape(-1, n)
    m = np.ascontiguousarray(mu).reshape(-1)
    s = np.ascontiguousarray(inv_std).reshape(-1)
    gx = np.empty_like(x2)
    lanes = threads.get_num_threads()
    gw = np.zeros((lanes, n))
    gb = np.zeros((lanes, n))
    threads.parallel_for(x2.shape[0], lambda lo, hi, lane: layer_norm_rows_backward(
        g2[lo:hi], x2[lo:hi], w, m[lo:hi], s[lo:hi], gx[lo:hi], gw[lane], gb[lane]),
        size=x2.size)
    return (gx.reshape(x.shape), gw.sum(axis=0).astype(x.dtype),
            gb.sum(axis=0).astype(x.dtype))


__all__ = ["applies", "layer_norm", "layer_norm_backward"]
