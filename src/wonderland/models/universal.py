"""Universal approximation in one dimension (appendix B).

One sigmoid neuron ``a·σ(w(x − s))`` tends to a step of height ``a`` at ``s`` as ``w``
grows; two make a bin ``a·σ(w(x − s)) − a·σ(w(x − s − Δ))``. With ``m`` bins of width
``Δ = 1/m`` on [0, 1] and heights ``g_i`` (the average of ``g`` on bin ``i``), a single
hidden layer of ``2m`` sigmoid neurons approximates any continuous ``g``; the error
shrinks as ``m`` grows.
"""

from __future__ import annotations

import numpy as np

from ..nn import Linear, Sequential, Sigmoid


def bin_heights(g, m, samples_per_bin=64):
    """The average of ``g`` on each of ``m`` equal bins of [0, 1]."""
    if m <= 0:
        raise ValueError(f"bin_heights: m must be positive, got {m}")
    t = (np.arange(m)[:, None] + (np.arange(samples_per_bin)[None, :] + 0.5) / samples_per_bin) / m
    return np.asarray(g(t), dtype=np.float64).mean(axis=1)


def bump_network(g, m, steepness=None, dtype=None) -> Sequential:
    """A ``Linear(1, 2m) → Sigmoid → Linear(2m, 1)`` network built (not trained) by the
    construction above. ``steepness`` is ``w`` (default ``40·m``, steep against the
    bin width)."""
    w = float(steepness if steepness is not None else 40.0 * m)
    heights = bin_heights(g, m)
    edges = np.arange(m) / m
    net = Sequential(Linear(1, 2 * m, dtype=dtype), Sigmoid(), Linear(2 * m, 1, dtype=dtype))
    first, last = net[0], net[2]
    # neuron 2i steps up at the bin's left edge, neuron 2i+1 steps down at its right edge
    bias = np.empty(2 * m)
    bias[0::2] = -w * edges
    bias[1::2] = -w * (edges + 1.0 / m)
    out_weight = np.empty((2 * m, 1))
    out_weight[0::2, 0] = heights
    out_weight[1::2, 0] = -heights
    first.weight.copy_(np.full((1, 2 * m), w))
    first.bias.copy_(bias)
    last.weight.copy_(out_weight)
    last.bias.copy_(np.zeros(1))
    return net
