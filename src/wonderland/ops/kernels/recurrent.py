"""The compiled loops of the fused recurrent layers (:mod:`wonderland.ops.recurrence`).

The caller (``ops/recurrence.py``) loops over time for one thread's share of the batch:
per step, NumPy's BLAS product ``h W_hh`` into a buffer allocated once, then one of the
step kernels here, which, row by row, makes one pass over the hidden units that applies
the gates' nonlinearities and updates the state. Float32 data
takes the inlined float32 sigmoid and tanh of :mod:`.special`, so that pass is
straight-line arithmetic that LLVM runs eight units per instruction; float64 data takes
the C library's ``exp`` and ``tanh`` (those kernels are compiled without fast-math: the
float64 path is the exact one). The backward kernels are the same loops in reverse order
of time (the caller multiplies by ``W_hhᵀ`` between steps); the product over all steps
at once (the weight gradient) is the caller's too.

**Why the rows are staged.** LLVM vectorises a loop over arrays it cannot prove apart
only after checking at run time that they do not overlap, and it gives up (leaving a
scalar loop, about ten times slower here) when that takes more than eight checks. So
each vectorised pass touches few arrays: a row's inputs are first gathered into a small
buffer of the kernel's own (``pre``, ``inp``), the pass writes its results into another
(``act``, ``out``), and plain copies move them into the large arrays afterwards.

Every kernel writes what the backward reads: the state before each step (``hprev``,
``cprev``) and the gates after their nonlinearities; the LSTM's backward recomputes
``tanh(c)`` from them instead of keeping it.
"""

from __future__ import annotations

import numpy as np

from ...backend.compiled import kernel, kernel_fast
from .special import sigmoid_f32, tanh_f32

_ZERO, _ONE = np.float32(0.0), np.float32(1.0)      # typed: float32 data stays float32


@kernel_fast(inline=True)
def _sig(v):
    return _ONE / (_ONE + np.exp(-v))


# ----------------------------------------------------------------------------- cores
# each row's pass over the hidden units, for float32 (``_fast``: inlined float32
# functions, a vectorised loop) and for float64 (``_exact``: the C library's exp and tanh)
@kernel_fast(inline=True)
def _rnn_core(pre, hrow, relu, fast):
    """``hrow = φ(pre)``."""
    if relu:
        for j in range(hrow.size):
            v = pre[j]
            hrow[j] = v if v > _ZERO else _ZERO
    elif fast:
        for j in range(hrow.size):
            hrow[j] = tanh_f32(pre[j])
    else:
        for j in range(hrow.size):
            hrow[j] = np.tanh(pre[j])


@kernel_fast(inline=True)
def _gru_core_fast(pre, hp, act, hrow):
    """``pre`` = [x_r + h_r, x_z + h_z, h_n, x_n] (biases in); ``hp`` the state before."""
    n = hrow.size
    for j in range(n):
        r = sigmoid_f32(pre[j])
        z = sigmoid_f32(pre[n + j])
        g = tanh_f32(pre[3 * n + j] + r * pre[2 * n + j])
        act[j], act[n + j], act[2 * n + j] = r, z, g
        hrow[j] = (_ONE - z) * g + z * hp[j]


@kernel_fast(inline=True)
def _gru_core_exact(pre, hp, act, hrow):
    n = hrow.size
    for j in range(n):
        r = _sig(pre[j])
        z = _sig(pre[n + j])
        g = np.tanh(pre[3 * n + j] + r * pre[2 * n + j])
        act[j], act[n + j], act[2 * n + j] = r, z, g
        hrow[j] = (_ONE - z) * g + z * hp[j]


@kernel_fast(inline=True)
def _lstm_core_fast(pre, c, act, hrow):
    """``pre`` = the four gates' pre-activations; ``c`` the cell state (updated)."""
    n = hrow.size
    for j in range(n):
        i = sigmoid_f32(pre[j])
        f = sigmoid_f32(pre[n + j])
        g = tanh_f32(pre[2 * n + j])
        o = sigmoid_f32(pre[3 * n + j])
        cn = f * c[j] + i * g
        act[j], act[n + j], act[2 * n + j], act[3 * n + j] = i, f, g, o
        c[j] = cn
        hrow[j] = o * tanh_f32(cn)


@kernel_fast(inline=True)
def _lstm_core_exact(pre, c, act, hrow):
    n = hrow.size
    for j in range(n):
        i = _sig(pre[j])
        f = _sig(pre[n + j])
        g = np.tanh(pre[2 * n + j])
        o = _sig(pre[3 * n + j])
        cn = f * c[j] + i * g
        act[j], act[n + j], act[2 * n + j], act[3 * n + j] = i, f, g, o
        c[j] = cn
        hrow[j] = o * np.tanh(cn)


@kernel_fast(inline=True)
def _gru_core_back(inp, out):
    """``inp`` = [r, z, n, h_n, h_prev, d]; ``out`` = [∂x_r, ∂x_z, ∂x_n, ∂h_r, ∂h_z,
    ∂h_n, d z] (the cotangents of the input and hidden pre-activations, and the part of
    ∂h that bypasses the product)."""
    n = out.size // 7
    for j in range(n):
        r, z, g = inp[j], inp[n + j], inp[2 * n + j]
        d = inp[5 * n + j]
        dn = d * (_ONE - z) * (_ONE - g * g)
        dr = dn * inp[3 * n + j] * r * (_ONE - r)
        dz = d * (inp[4 * n + j] - g) * z * (_ONE - z)
        out[j], out[n + j], out[2 * n + j] = dr, dz, dn
        out[3 * n + j], out[4 * n + j], out[5 * n + j] = dr, dz, dn * r
        out[6 * n + j] = d * z


@kernel_fast(inline=True)
def _lstm_core_back(inp, tc, dc, out, fast):
    """``inp`` = [i, f, g, o, c_prev]; ``tc`` scratch for ``tanh(c)`` (recomputed); ``dc``
    the cell's cotangent (updated); ``out`` holds ∂h on entry and the four
    pre-activations' cotangents on return."""
    n = dc.size
    if fast:
        for j in range(n):
            tc[j] = tanh_f32(inp[n + j] * inp[4 * n + j] + inp[j] * inp[2 * n + j])
    else:
        for j in range(n):
            tc[j] = np.tanh(inp[n + j] * inp[4 * n + j] + inp[j] * inp[2 * n + j])
    for j in range(n):
        i, f, g, o = inp[j], inp[n + j], inp[2 * n + j], inp[3 * n + j]
        t = tc[j]
        d = out[j]
        dct = dc[j] + d * o * (_ONE - t * t)
        dc[j] = dct * f
        out[j] = dct * g * i * (_ONE - i)
        out[n + j] = dct * inp[4 * n + j] * f * (_ONE - f)
        out[2 * n + j] = dct * i * (_ONE - g * g)
        out[3 * n + j] = d * t * o * (_ONE - o)


# ----------------------------------------------------------------------------- one step, every row
# the caller loops over time: per step NumPy's product (its BLAS is faster at these sizes
# than the one numba's np.dot reaches), in column blocks ``zh[k]``, then one of these over
# the rows of its share
@kernel_fast(inline=True)
def _gather(zh, b, zrow):
    """Row ``b`` of the product, kept by the caller as column blocks ``zh[k, b, :]``."""
    width = zh.shape[2]
    for k in range(zh.shape[0]):
        n = min(width, zrow.size - k * width)
        zrow[k * width:k * width + n] = zh[k, b, :n]


def _rnn_step(xw, zh, b_hh, h, mask, t, relu, fast, hs, hprev):
    Bn, _, H = xw.shape
    pre = np.empty(H, xw.dtype)
    hrow = np.empty(H, xw.dtype)
    zrow = np.empty(H, xw.dtype)
    for b in range(Bn):
        hprev[b, t, :] = h[b]
        if mask[b, t]:
            _gather(zh, b, zrow)
            for j in range(H):
                pre[j] = xw[b, t, j] + zrow[j] + b_hh[j]
            _rnn_core(pre, hrow, relu, fast)
            h[b, :] = hrow
            hs[b, t, :] = hrow
        else:
            hs[b, t, :] = 0


def _gru_step(xw, zh, b_hh, h, mask, t, fast, hs, hprev, gates, hn):
    Bn, _, G = xw.shape
    H = G // 3
    pre = np.empty(4 * H, xw.dtype)
    act = np.empty(G, xw.dtype)
    hrow = np.empty(H, xw.dtype)
    zrow = np.empty(G, xw.dtype)
    for b in range(Bn):
        hprev[b, t, :] = h[b]
        if mask[b, t]:
            _gather(zh, b, zrow)
            for j in range(2 * H):
                pre[j] = xw[b, t, j] + zrow[j] + b_hh[j]
            for j in range(H):
                pre[2 * H + j] = zrow[2 * H + j] + b_hh[2 * H + j]
            pre[3 * H:] = xw[b, t, 2 * H:]
            if fast:
                _gru_core_fast(pre, h[b], act, hrow)
            else:
                _gru_core_exact(pre, h[b], act, hrow)
            gates[b, t, :] = act
            hn[b, t, :] = pre[2 * H:3 * H]
            h[b, :] = hrow
            hs[b, t, :] = hrow
        else:
            hs[b, t, :] = 0


def _lstm_step(xw, zh, b_hh, h, c, mask, t, fast, hs, hprev, cprev, gates):
    Bn, _, G = xw.shape
    H = G // 4
    pre = np.empty(G, xw.dtype)
    act = np.empty(G, xw.dtype)
    hrow = np.empty(H, xw.dtype)
    zrow = np.empty(G, xw.dtype)
    for b in range(Bn):
        hprev[b, t, :] = h[b]
        cprev[b, t, :] = c[b]
        if mask[b, t]:
            _gather(zh, b, zrow)
            for j in range(G):
                pre[j] = xw[b, t, j] + zrow[j] + b_hh[j]
            if fast:
                _lstm_core_fast(pre, c[b], act, hrow)
            else:
                _lstm_core_exact(pre, c[b], act, hrow)
            gates[b, t, :] = act
            h[b, :] = hrow
            hs[b, t, :] = hrow
        else:
            hs[b, t, :] = 0


# ----------------------------------------------------------------------------- one step back
# ``dzt`` gets the step's pre-activation cotangents (the caller multiplies by W_hhᵀ),
# ``dz`` keeps them for the weight gradient; ``dh`` arrives as the cotangent of the state
# after the step
def _rnn_back_step(g_hs, dh, hs, mask, t, relu, dzt, dz):
    Bn, _, H = hs.shape
    row = np.empty(H, dtype=hs.dtype)
    for b in range(Bn):
        if mask[b, t]:
            for j in range(H):
                d = dh[b, j] + g_hs[b, t, j]
                v = hs[b, t, j]
                if relu:
                    row[j] = d if v > _ZERO else _ZERO
                else:
                    row[j] = d * (_ONE - v * v)
            dzt[b, :] = row
            dz[b, t, :] = row
        else:
            dzt[b, :] = 0
            dz[b, t, :] = 0


def _gru_back_step(g_hs, dh, hprev, gates, hn, mask, t, direct, dzt, dzx, dzh):
    Bn, _, H = hprev.shape
    inp = np.empty(6 * H, dtype=hprev.dtype)
    out = np.empty(7 * H, dtype=hprev.dtype)
    for b in range(Bn):
        if mask[b, t]:
            inp[:3 * H] = gates[b, t]
            inp[3 * H:4 * H] = hn[b, t]
            inp[4 * H:5 * H] = hprev[b, t]
            for j in range(H):
                inp[5 * H + j] = dh[b, j] + g_hs[b, t, j]
            _gru_core_back(inp, out)
            dzx[b, t, :] = out[:3 * H]
            dzt[b, :] = out[3 * H:6 * H]
            direct[b, :] = out[6 * H:]
        else:
            dzx[b, t, :] = 0
            dzt[b, :] = 0
            direct[b, :] = dh[b]
        dzh[b, t, :] = dzt[b]


def _lstm_back_step(g_hs, dh, dc, cprev, gates, mask, t, fast, dzt, dz):
    Bn, _, H = cprev.shape
    inp = np.empty(5 * H, dtype=cprev.dtype)
    tc = np.empty(H, dtype=cprev.dtype)
    out = np.empty(4 * H, dtype=cprev.dtype)
    for b in range(Bn):
        if mask[b, t]:
            inp[:4 * H] = gates[b, t]
            inp[4 * H:] = cprev[b, t]
            for j in range(H):
                out[j] = dh[b, j] + g_hs[b, t, j]
            _lstm_core_back(inp, tc, dc[b], out, fast)
            dzt[b, :] = out
            dz[b, t, :] = out
        else:
            dzt[b, :] = 0
            dz[b, t, :] = 0


def _both(fn):
    """``fn`` compiled twice: with fast-math for float32 data, without for float64."""
    return {True: kernel_fast(fn), False: kernel(fn)}


rnn_step, gru_step, lstm_step = (_both(f) for f in (_rnn_step, _gru_step, _lstm_step))
rnn_back_step, gru_back_step, lstm_back_step = (_both(f) for f in (_rnn_back_step,
                                                                   _gru_back_step,
                                                                   _lstm_back_step))

__all__ = ["rnn_step", "gru_step", "lstm_step", "rnn_back_step", "gru_back_step",
           "lstm_back_step"]
