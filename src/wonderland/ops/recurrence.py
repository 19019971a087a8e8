"""Fused gated recurrences: a whole sequence of an RNN, GRU or LSTM layer as one primitive.

``recurrent_layer(kind, xw, w_hh, b_hh, h0, c0, mask, reverse)`` runs one direction of
one layer over the time axis of ``xw = x @ W_ih + b_ih`` (the input projection of every
step at once, one matrix product outside the loop), with PyTorch's equations::

    rnn   h' = φ(xw_t + h W_hh + b_hh)                         φ = tanh or relu
    gru   r, z = σ(xw_r + h W_hr + b_hr), σ(xw_z + h W_hz + b_hz)
          n = tanh(xw_n + r ⊙ (h W_hn + b_hn));   h' = (1 − z) ⊙ n + z ⊙ h
    lstm  i, f, g, o = σ, σ, tanh, σ of (xw_t + h W_hh + b_hh);  c' = f ⊙ c + i ⊙ g;
          h' = o ⊙ tanh(c')

Steps where ``mask[b, t]`` is false leave the state as it is and output zeros (padding
after a sequence's end: the final state is then the state at each sequence's end).

The forward is one compiled loop over time (``ops/kernels/recurrent.py``): per step one
matrix product ``h W_hh`` and one pass over the hidden units that applies the gates'
nonlinearities (float32: vectorised) and updates the state; it keeps the gates and the
states before each step. The VJP is backpropagation through time in one compiled reverse
loop (one product with ``W_hhᵀ`` per step), after which ``∂W_hh`` is a single product over
every step at once. Batches large enough run their sequences on the library's threads,
each thread its own rows through every step. So the graph holds one node per layer and
direction, whatever the length.

Higher orders and forward mode go through the composite reference (:func:`reference`,
the same equations with tensor operations inside :func:`wonderland.scan`), which the
tests also compare the fast path with.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..backend import threads
from ..backend import compiled
from ..core.primitive import Primitive, apply
from ..core.scan import scan
from ..core.tensor import from_array
from ..core.tracing import record_call
from ..core.transforms import jvp, vjp
from ..core.vmap import batch_size, broadcast_batch, loop_rule, moveaxis
from .arguments import to_tensor
from .creation import zeros, zeros_like
from .elementwise import greater, maximum, sigmoid, tanh, where
from .kernels import recurrent as _loops
from .linalg import gemm
from .shape import expand_dims, reshape, split

KINDS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}


def warm(dtypes=None) -> None:
    """Compile this module's kernels for ``dtypes`` (a set of NumPy dtypes; default:
    all it serves)."""
    for dt in (np.float32, np.float64):
        if dtypes is not None and np.dtype(dt) not in dtypes:
            continue
        for kind in KINDS:
            h = 1
            xw = np.zeros((1, 1, GATES[kind] * h), dt)
            w = np.zeros((h, GATES[kind] * h), dt)
            bb = np.zeros(GATES[kind] * h, dt)
            z = np.zeros((1, h), dt)
            outs, res = _forward(xw, w, bb, z, z, np.ones((1, 1), bool), kind=kind,
                                 reverse=False)
            _backward_arrays([outs[0] * 0, z, z], res, w, np.ones((1, 1), bool), kind, False)


# ----------------------------------------------------------------------------- per-step products
# A step's product is a few rows times a weight matrix that stays the same for every step.
# With at most 16 rows on a thread of its own, cut into blocks of at most 2^19
# multiply-adds, it runs in OpenBLAS's small-matrix kernels, which do not pack the weights
# again on every call: 16 rows by (256, 1024) take 84 µs in 8 blocks against 104 µs in
# one product (Intel Xeon, OpenBLAS 0.3.31); with 32 rows one product is the faster (172
# against 179 µs). When the batch is split over threads, each thread's many small calls
# contend for the interpreter between products and the blocks lose: 2 threads × 128 steps
# of 16 rows took 29.2 ms in blocks and 20.5 ms as one product each, and the LSTM step of
# ``lstm_1layer`` 76 against 70 ms. So a thread's share of a split batch takes one product.
_BLOCK_ROWS = 16
_BLOCK_WORK = 1 << 19


def _block_width(rows, other, full, alone):
    """How many columns (or inner indices) a block takes: ``full`` (one block) for more
    than ``_BLOCK_ROWS`` rows or rows that share the machine with other threads' (not
    ``alone``), else so that ``16 × other × width`` stays within ``_BLOCK_WORK`` (a
    multiple of 8, at least 8)."""
    if rows > _BLOCK_ROWS or not alone:
        return full
    width = _BLOCK_WORK // (_BLOCK_ROWS * max(other, 1))
    return min(full, max(8, width - width % 8))


class _ColumnBlocks:
    """``h @ w`` into ``out[k]``, the k-th block of columns (``out`` is ``(blocks, rows,
    width)``, what the step kernels read)."""

    def __init__(self, w, rows, alone=True):
        self.width = _block_width(rows, w.shape[0], w.shape[1], alone)
        self.blocks = [np.ascontiguousarray(w[:, i:i + self.width])
                       for i in range(0, w.shape[1], self.width)]
        self.rows = rows

    def buffer(self, dtype):
        return np.empty((len(self.blocks), self.rows, self.width), dtype)

    def __call__(self, h, out):
        for k, blk in enumerate(self.blocks):
            np.matmul(h, blk, out=out[k, :, :blk.shape[1]])


class _InnerBlocks:
    """``d @ w`` as a sum of products over blocks of the inner dimension."""

    def __init__(self, w, rows, alone=True):
        width = _block_width(rows, w.shape[1], w.shape[0], alone)
        self.bounds = [(i, min(i + width, w.shape[0])) for i in range(0, w.shape[0], width)]
        self.blocks = [np.ascontiguousarray(w[i:j]) for i, j in self.bounds]
        self.parts = np.empty((len(self.blocks), rows, w.shape[1]), w.dtype)

    def __call__(self, d, out):
        if len(self.blocks) == 1:
            return np.matmul(d, self.blocks[0], out=out)
        parts = self.parts
        for k, ((i, j), blk) in enumerate(zip(self.bounds, self.blocks)):
            np.matmul(d[:, i:j], blk, out=parts[k])
        np.add(parts[0], parts[1], out=out)
        for k in range(2, len(self.blocks)):
            out += parts[k]
        return out


# ----------------------------------------------------------------------------- array level
def _forward_arrays(xw, w_hh, b_hh, h0, c0, mask, *, kind, reverse):
    xw = np.ascontiguousarray(xw)
    w_hh = np.ascontiguousarray(w_hh)
    h0 = np.ascontiguousarray(h0)
    c0 = np.ascontiguousarray(c0)
    Bn, T, G = xw.shape
    H = w_hh.shape[0]
    dt = xw.dtype
    hs = np.empty((Bn, T, H), dt)
    hprev = np.empty((Bn, T, H), dt)
    hT = np.empty((Bn, H), dt)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    gates = np.empty((Bn, T, G), dt) if kind in ("gru", "lstm") else None
    hn = np.empty((Bn, T, H), dt) if kind == "gru" else None
    cprev = np.empty((Bn, T, H), dt) if kind == "lstm" else None
    cT = np.empty((Bn, H), dt) if kind == "lstm" else None

    fast = bool(dt == np.float32)

    def rows(lo, hi, _lane):
        # the sequences of a batch are independent: each thread runs every step on its rows
        s = slice(lo, hi)
        h = h0[s].copy()
        c = c0[s].copy()
        product = _ColumnBlocks(w_hh, hi - lo, alone=hi - lo == Bn)
        zh = product.buffer(dt)
        if kind in ("rnn_tanh", "rnn_relu"):
            step = _loops.rnn_step[fast].compiled()
            args = (kind == "rnn_relu", fast, hs[s], hprev[s])
        elif kind == "gru":
            step = _loops.gru_step[fast].compiled()
            args = (fast, hs[s], hprev[s], gates[s], hn[s])
        else:
            step = _loops.lstm_step[fast].compiled()
            args = (fast, hs[s], hprev[s], cprev[s], gates[s])
        state = (h, c) if kind == "lstm" else (h,)
        x, m = xw[s], mask[s]
        for i in range(T):
            t = T - 1 - i if reverse else i
            product(h, zh)
            step(x, zh, b_hh, *state, m, t, *args)
        hT[s] = h
        if kind == "lstm":
            cT[s] = c

    _split_batch(Bn, T * G * H, rows)
    if kind in ("rnn_tanh", "rnn_relu"):
        return (hs, hT, np.zeros_like(hT)), (hprev,)
    if kind == "gru":
        return (hs, hT, np.zeros_like(hT)), (hprev, gates, hn)
    return (hs, hT, cT), (hprev, cprev, gates)


def _split_batch(batch, work, rows):
    """Run ``rows(lo, hi, lane)`` over parts of the batch on the library's threads (the
    kernels release the GIL) when there is enough work; inline otherwise."""
    if compiled.ENABLED and batch >= 4:
        threads.parallel_for(batch, rows, size=work, min_size=1 << 22)
    else:
        rows(0, batch, 0)


def _backward_arrays(gs, res, w_hh, mask, kind, reverse):
    """Cotangents of (xw, w_hh, b_hh, h0, c0) from those of (hs, h_T, c_T)."""
    g_hs, g_hT, g_cT = [np.ascontiguousarray(g) for g in gs]
    w_t = np.ascontiguousarray(w_hh.T)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    hprev = res[0]
    Bn, T, H = hprev.shape
    dt = hprev.dtype
    G = GATES[kind] * H
    dzx = np.empty((Bn, T, G), dt)
    dzh = np.empty((Bn, T, G), dt) if kind == "gru" else dzx
    dh = np.empty((Bn, H), dt)
    dc = np.empty((Bn, H), dt) if kind == "lstm" else None

    fast = bool(dt == np.float32)

    def rows(lo, hi, _lane):
        s = slice(lo, hi)
        d_h = g_hT[s].copy()
        m = mask[s]
        full = m.all(axis=0)
        dzt = np.empty((hi - lo, G), dt)
        direct = np.empty((hi - lo, H), dt)
        back = np.empty((hi - lo, H), dt)
        product = _InnerBlocks(w_t, hi - lo, alone=hi - lo == Bn)
        if kind in ("rnn_tanh", "rnn_relu"):
            step = _loops.rnn_back_step[fast].compiled()
            before, after = (d_h, res[1][s], m), (kind == "rnn_relu", dzt, dzx[s])
        elif kind == "gru":
            step = _loops.gru_back_step[fast].compiled()
            before, after = (d_h, hprev[s], res[1][s], res[2][s], m), (direct, dzt, dzx[s],
                                                                       dzh[s])
        else:
            step = _loops.lstm_back_step[fast].compiled()
            d_c = g_cT[s].copy()
            before, after = (d_h, d_c, res[1][s], res[2][s], m), (fast, dzt, dzx[s])
        g = g_hs[s]
        for i in range(T):
            t = i if reverse else T - 1 - i
            step(g, *before, t, *after)
            if kind == "gru":                  # masked rows: direct holds ∂h, dzt is 0
                np.add(product(dzt, back), direct, out=d_h)
            elif full[t]:
                product(dzt, d_h)
            else:                              # masked rows keep ∂h as it is
                np.copyto(d_h, product(dzt, back), where=m[:, t, None])
        dh[s] = d_h
        if kind == "lstm":
            dc[s] = d_c

    _split_batch(Bn, T * G * H, rows)
    flat = dzh.reshape(Bn * T, -1)
    g_w = gemm(hprev.reshape(Bn * T, H).T, flat)        # every step at once, on the threads
    g_b = flat.sum(axis=0)
    return dzx, g_w, g_b, dh, dc


# ----------------------------------------------------------------------------- the primitive
def _forward(xw, w_hh, b_hh, h0, c0, mask, *, kind, reverse):
    outs, res = _forward_arrays(xw, w_hh, b_hh, h0, c0, mask, kind=kind, reverse=reverse)
    if kind in ("rnn_tanh", "rnn_relu"):
        res = res + (outs[0],)
    return outs, res


def _vjp_all(gs, outs, inputs, needs, *, kind, reverse, res):
    """The composite rule: the VJP of the step-by-step reference (every order)."""
    xw, w_hh, b_hh, h0, c0, mask = inputs
    shapes = [(h0.shape[0], mask.shape[1], h0.shape[1]), h0.shape, h0.shape]
    gs = [g if g is not None else zeros(s, dtype=h0.dtype) for g, s in zip(gs, shapes)]
    _, pullback = vjp(lambda *a: reference(kind, *a, mask, reverse), xw, w_hh, b_hh, h0, c0)
    return list(pullback(tuple(gs))) + [None]


def _vjp_kernel(gs, outs, inputs, needs, *, kind, reverse, res):
    """First order: the compiled backward sweep over time."""
    xw, w_hh, b_hh, h0, c0, mask = inputs
    like = w_hh.data
    g_arrays = [g.data if g is not None else np.zeros(shape, like.dtype)
                for g, shape in zip(gs, [(h0.shape[0], mask.shape[1], h0.shape[1]),
                                         h0.shape, h0.shape])]
    r = [x.data for x in res]
    dzx, g_w, g_b, dh, dc = record_call(_backward_on_host, mask.data, *g_arrays, *r, w_hh.data,
                                        kind=kind, reverse=reverse)
    out = [from_array(dzx), from_array(g_w), from_array(g_b), from_array(dh),
           from_array(dc) if dc is not None and needs[4] else None, None]
    return [o if n else None for o, n in zip(out, needs)]


def _jvp_all(tangents, outs, inputs, *, kind, reverse):
    xw, w_hh, b_hh, h0, c0, mask = inputs
    primals = (xw, w_hh, b_hh, h0, c0)
    tans = tuple(t if t is not None else zeros_like(x) for t, x in zip(tangents[:5], primals))
    _, touts = jvp(lambda *a: reference(kind, *a, mask, reverse), primals, tans)
    return list(touts)


def _batch(args, axes, *, kind, reverse):
    """Examples of a ``vmap`` join the batch axis when the weights are shared; batched
    weights fall back to one application per example."""
    if axes[1] is not None or axes[2] is not None:
        return loop_rule(_LAYER)(args, axes, kind=kind, reverse=reverse)
    size = batch_size(args, axes)

    merged = []
    for i in (0, 3, 4, 5):
        x = broadcast_batch(args[i], axes[i], size)
        merged.append(reshape(x, (size * x.shape[1],) + x.shape[2:]))
    xw, h0, c0, mask = merged
    hs, hT, cT = apply(_LAYER, (xw, args[1], args[2], h0, c0, mask),
                       {"kind": kind, "reverse": reverse})
    n = args[0].shape[0] if axes[0] is None else hs.shape[0] // size
    return (reshape(hs, (size, n) + hs.shape[1:]), reshape(hT, (size, n) + hT.shape[1:]),
            reshape(cT, (size, n) + cT.shape[1:])), (0, 0, 0)


def _backward_flat(mask, *arrays, kind, reverse):
    """``_backward_arrays`` with its arrays as positional arguments (the kernel boundary
    hands over arrays one by one)."""
    return _backward_arrays(arrays[:3], arrays[3:-1], arrays[-1], mask, kind, reverse)


_ON_HOST = B.HostOnly("a sequential loop over time: a device version needs a custom kernel")
_backward_on_host = B.numpy_kernel(_backward_flat, device=_ON_HOST)
_LAYER = Primitive("recurrent_layer", B.numpy_kernel(_forward, device=_ON_HOST), vjp_all=_vjp_all,
                   vjp_kernel=_vjp_kernel, jvp_all=_jvp_all, multiple_results=True, save="inputs",
                   residuals=True, batch=_batch)


def recurrent_layer(kind, xw, w_hh, b_hh, h0, c0, mask, reverse=False):
    """One direction of one recurrent layer over a whole sequence (see the module notes).

    ``xw`` is ``(N, T, G·H)`` (``x @ W_ih + b_ih``), ``w_hh`` ``(H, G·H)``, ``b_hh``
    ``(G·H,)``, ``h0``/``c0`` ``(N, H)`` (``c0`` is ignored except by the LSTM), ``mask``
    ``(N, T)`` bool. Returns ``(outputs (N, T, H), h_T, c_T)`` (``c_T`` zeros unless LSTM).
    """
    if kind not in KINDS:
        raise ValueError(f"recurrent_layer: unknown kind {kind!r}; expected one of {KINDS}")

    xw, w_hh, b_hh, h0, c0, mask = (to_tensor(v, "recurrent_layer")
                                    for v in (xw, w_hh, b_hh, h0, c0, mask))
    n, t, g = xw.shape if xw.ndim == 3 else (None, None, None)
    h = w_hh.shape[0] if w_hh.ndim == 2 else None
    if xw.ndim != 3 or h is None or g != GATES[kind] * h or w_hh.shape[1] != g \
            or b_hh.shape != (g,) or h0.shape != (n, h) or c0.shape != (n, h) \
            or mask.shape != (n, t):
        raise ValueError(f"recurrent_layer: shapes do not fit a {kind} layer: xw {xw.shape} "
                         f"(N, T, {GATES[kind]}·H), w_hh {w_hh.shape} (H, {GATES[kind]}·H), "
                         f"b_hh {b_hh.shape}, h0 {h0.shape} and c0 {c0.shape} (N, H), mask "
                         f"{mask.shape} (N, T)")
    if mask.dtype != np.bool_:
        mask = mask.astype(np.bool_)
    return apply(_LAYER, (xw, w_hh, b_hh, h0, c0, mask), {"kind": kind, "reverse": bool(reverse)})


# ----------------------------------------------------------------------------- reference
def cell_step(kind, xw_t, h, c, w_hh, b_hh):
    """One step of the equations with tensor operations: ``(h', c')``."""
    zh = h @ w_hh + b_hh
    if kind == "rnn_tanh":
        return tanh(xw_t + zh), c
    if kind == "rnn_relu":
        return maximum(xw_t + zh, 0.0), c
    if kind == "gru":
        xr, xz, xn = split(xw_t, 3, axis=-1)
        hr, hz, hn = split(zh, 3, axis=-1)
        r = sigmoid(xr + hr)
        z = sigmoid(xz + hz)
        n = tanh(xn + r * hn)
        return (1.0 - z) * n + z * h, c
    i, f, g, o = split(xw_t + zh, 4, axis=-1)
    c_new = sigmoid(f) * c + sigmoid(i) * tanh(g)
    return sigmoid(o) * tanh(c_new), c_new


def reference(kind, xw, w_hh, b_hh, h0, c0, mask, reverse=False):
    """The composite form of :func:`recurrent_layer`: :func:`wonderland.scan` over time
    with :func:`cell_step`, differentiable to any order."""
    def step(carry, inp):
        h, c = carry
        x_t, m_t = inp
        h_new, c_new = cell_step(kind, x_t, h, c, w_hh, b_hh)
        m = expand_dims(greater(m_t, 0.5), -1)
        return (where(m, h_new, h), where(m, c_new, c)), where(m, h_new, 0.0)

    # the mask travels as 0/1 floats: the scan differentiates its xs at higher orders
    mask = mask.astype(xw.dtype)
    (hT, cT), hs = scan(step, (h0, c0), (moveaxis(xw, 1, 0), moveaxis(mask, 1, 0)),
                        reverse=reverse)
    if kind != "lstm":
        cT = zeros_like(hT)         # only the LSTM has a cell state
    return moveaxis(hs, 0, 1), hT, cT


__all__ = ["recurrent_layer", "reference", "cell_step", "KINDS", "GATES"]
