"""Fused optimiser updates: one pass over memory per parameter instead of one NumPy
call (and one pass) per arithmetic step. Arrays are flat views of the parameter and its
state; the arithmetic runs in the arrays' precision."""

from __future__ import annotations

import math

from ...backend.compiled import kernel


@kernel
def adam(p, g, m, v, lr, b1, b2, eps, bias1, bias2, weight_decay, decoupled):
    """One Adam (``decoupled``: AdamW) step, in place; PyTorch's update rule."""
    one = p.dtype.type(1.0)
    lr_, b1_, b2_ = p.dtype.type(lr), p.dtype.type(b1), p.dtype.type(b2)
    wd = p.dtype.type(weight_decay)
    shrink = one - lr_ * wd
    root_bc2 = p.dtype.type(math.sqrt(bias2))
    step = p.dtype.type(lr * math.sqrt(bias2) / bias1)
    eps_ = p.dtype.type(eps) * root_bc2
    for i in range(p.size):
        gi = g[i]
        if decoupled:
            p[i] *= shrink
        elif weight_decay != 0.0:
            gi = gi + wd * p[i]
        mi = m[i] + (one - b1_) * (gi - m[i])
        vi = b2_ * v[i] + (one - b2_) * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= step * mi / (math.sqrt(vi) + eps_)


@kernel
def sgd_momentum(p, g, buf, lr, mu, dampening, weight_decay, nesterov, first):
    """One SGD step with momentum (and optional Nesterov and L2 decay), in place."""
    lr_, mu_ = p.dtype.type(lr), p.dtype.type(mu)
    keep = p.dtype.type(1.0 - dampening)
    wd = p.dtype.type(weight_decay)
    for i in range(p.size):
        gi = g[i]
        if weight_decay != 0.0:
            gi = gi + wd * p[i]
        b = gi if first else mu_ * buf[i] + keep * gi
        buf[i] = b
        p[i] -= lr_ * (gi + mu_ * b if nesterov else b)
