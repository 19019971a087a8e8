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

The forward is one compiled loop over time (``ops/kernels``): per step one matrix
product ``h W_hh`` and one pass over the gates; it keeps the gates and the states before
each step. The VJP is backpropagation through time in one compiled reverse loop (one
product with ``W_hhᵀ`` per step), after which ``∂W_hh`` is a single product over every
step at once. So the graph holds one node per layer and direction, whatever the length.

Higher orders and forward mode go through the composite reference (:func:`reference`,
the same equations with tensor operations inside :func:`wonderland.scan`), which the
tests also compare the fast path with.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..backend import threads
from ..backend.compiled import ENABLED, kernel
from ..core.primitive import Primitive, apply
from ..core.scan import scan
from ..core.tensor import from_array
from ..core.tracing import record_call
from ..core.transforms import jvp, vjp
from ..core.vmap import batch_size, broadcast_batch, loop_rule, moveaxis
from .arguments import to_tensor
from .creation import zeros, zeros_like
from .elementwise import greater, maximum, sigmoid, tanh, where
from .kernels.special import exp_into as _exp_into
from .shape import expand_dims, reshape, split

KINDS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}


# ----------------------------------------------------------------------------- kernels
@kernel
def _rnn_forward(xw, w_hh, b_hh, h0, mask, reverse, relu, fast, hs, hprev, hT):
    Bn, T, H = xw.shape
    h = h0.copy()
    pre = np.empty(H, xw.dtype)
    act = np.empty(H, xw.dtype)
    e_in = np.empty(H, xw.dtype)
    e_out = np.empty(H, xw.dtype)
    bits = np.empty(H, np.int64)
    for s in range(T):
        t = T - 1 - s if reverse else s
        zh = h @ w_hh
        for b in range(Bn):
            if mask[b, t]:
                for j in range(H):
                    hprev[b, t, j] = h[b, j]
                    pre[j] = xw[b, t, j] + zh[b, j] + b_hh[j]
                if relu:
                    for j in range(H):
                        act[j] = max(pre[j], 0.0)
                else:
                    _activate(pre, act, 0, H, e_in, e_out, bits, fast)
                for j in range(H):
                    h[b, j] = act[j]
                    hs[b, t, j] = act[j]
            else:
                for j in range(H):
                    hprev[b, t, j] = h[b, j]
                    hs[b, t, j] = 0.0
    hT[:] = h


@kernel
def _rnn_backward(g_hs, g_hT, w_hh_t, hs, mask, reverse, relu, dz):
    Bn, T, H = hs.shape
    dh = g_hT.copy()
    dzt = np.zeros((Bn, H), dtype=hs.dtype)
    for s in range(T):
        t = s if reverse else T - 1 - s
        for b in range(Bn):
            if mask[b, t]:
                for j in range(H):
                    d = dh[b, j] + g_hs[b, t, j]
                    v = hs[b, t, j]
                    if relu:
                        dzt[b, j] = d if v > 0.0 else 0.0
                    else:
                        dzt[b, j] = d * (1.0 - v * v)
            else:
                for j in range(H):
                    dzt[b, j] = 0.0
            for j in range(H):
                dz[b, t, j] = dzt[b, j]
        back = dzt @ w_hh_t
        for b in range(Bn):
            if mask[b, t]:
                for j in range(H):
                    dh[b, j] = back[b, j]
    return dh


@kernel
def _gru_forward(xw, w_hh, b_hh, h0, mask, reverse, fast, hs, hprev, gates, hn, hT):
    Bn, T, G = xw.shape
    H = G // 3
    h = h0.copy()
    pre = np.empty(2 * H, xw.dtype)
    rz = np.empty(2 * H, xw.dtype)
    npre = np.empty(H, xw.dtype)
    n = np.empty(H, xw.dtype)
    e_in = np.empty(2 * H, xw.dtype)
    e_out = np.empty(2 * H, xw.dtype)
    bits = np.empty(2 * H, np.int64)
    for s in range(T):
        t = T - 1 - s if reverse else s
        zh = h @ w_hh
        for b in range(Bn):
            if mask[b, t]:
                for j in range(2 * H):
                    pre[j] = xw[b, t, j] + zh[b, j] + b_hh[j]
                _activate(pre, rz, 0, 0, e_in, e_out, bits, fast)        # r, z: sigmoid
                for j in range(H):
                    hn_ = zh[b, 2 * H + j] + b_hh[2 * H + j]
                    hn[b, t, j] = hn_
                    npre[j] = xw[b, t, 2 * H + j] + rz[j] * hn_
                _activate(npre, n, 0, H, e_in, e_out, bits, fast)         # n: tanh
                for j in range(H):
                    hp = h[b, j]
                    hprev[b, t, j] = hp
                    z = rz[H + j]
                    v = (1.0 - z) * n[j] + z * hp
                    gates[b, t, j] = rz[j]
                    gates[b, t, H + j] = z
                    gates[b, t, 2 * H + j] = n[j]
                    h[b, j] = v
                    hs[b, t, j] = v
            else:
                for j in range(H):
                    hprev[b, t, j] = h[b, j]
                    hs[b, t, j] = 0.0
    hT[:] = h


@kernel
def _gru_backward(g_hs, g_hT, w_hh_t, hprev, gates, hn, mask, reverse, dzx, dzh):
    Bn, T, H = hprev.shape
    dh = g_hT.copy()
    direct = np.zeros((Bn, H), dtype=hprev.dtype)
    dzt = np.zeros((Bn, 3 * H), dtype=hprev.dtype)
    for s in range(T):
        t = s if reverse else T - 1 - s
        for b in range(Bn):
            if mask[b, t]:
                for j in range(H):
                    d = dh[b, j] + g_hs[b, t, j]
                    r = gates[b, t, j]
                    z = gates[b, t, H + j]
                    n = gates[b, t, 2 * H + j]
                    dn = d * (1.0 - z) * (1.0 - n * n)
                    dr = dn * hn[b, t, j] * r * (1.0 - r)
                    dzg = d * (hprev[b, t, j] - n) * z * (1.0 - z)
                    direct[b, j] = d * z
                    dzx[b, t, j] = dr
                    dzx[b, t, H + j] = dzg
                    dzx[b, t, 2 * H + j] = dn
                    dzt[b, j] = dr
                    dzt[b, H + j] = dzg
                    dzt[b, 2 * H + j] = dn * r
            else:
                for j in range(3 * H):
                    dzx[b, t, j] = 0.0
                    dzt[b, j] = 0.0
            for j in range(3 * H):
                dzh[b, t, j] = dzt[b, j]
        back = dzt @ w_hh_t
        for b in range(Bn):
            if mask[b, t]:
                for j in range(H):
                    dh[b, j] = back[b, j] + direct[b, j]
    return dh


@kernel
def _activate(x, out, tanh_lo, tanh_hi, e_in, e_out, bits, fast):
    """``out[j]`` = tanh(x[j]) for ``tanh_lo <= j < tanh_hi``, the logistic sigmoid of
    x[j] elsewhere. ``fast`` (float32 data): through the vectorised ``exp_into``, with
    tanh(x) = 2σ(2x) − 1; otherwise the C library's ``exp`` and ``tanh``, element by
    element. ``e_in``, ``e_out`` and ``bits`` are scratch of at least ``x.size``."""
    n = x.size
    if not fast:
        for j in range(n):
            if tanh_lo <= j < tanh_hi:
                out[j] = np.tanh(x[j])
            else:
                out[j] = 1.0 / (1.0 + np.exp(-x[j]))
        return
    for j in range(n):
        e_in[j] = -2.0 * x[j] if tanh_lo <= j < tanh_hi else -x[j]
    _exp_into(e_in[:n], e_out[:n], bits)
    for j in range(n):
        sig = 1.0 / (1.0 + e_out[j])
        out[j] = 2.0 * sig - 1.0 if tanh_lo <= j < tanh_hi else sig


@kernel
def _lstm_forward(xw, w_hh, b_hh, h0, c0, mask, reverse, fast, hs, hprev, cprev, gates, hT, cT):
    Bn, T, G = xw.shape
    H = G // 4
    h = h0.copy()
    c = c0.copy()
    pre = np.empty(G, xw.dtype)
    act = np.empty(G, xw.dtype)
    cn = np.empty(H, xw.dtype)
    tc = np.empty(H, xw.dtype)
    e_in = np.empty(G, xw.dtype)
    e_out = np.empty(G, xw.dtype)
    bits = np.empty(G, np.int64)
    for s in range(T):
        t = T - 1 - s if reverse else s
        zh = h @ w_hh
        for b in range(Bn):
            if mask[b, t]:
                for j in range(G):
                    pre[j] = xw[b, t, j] + zh[b, j] + b_hh[j]
                # gates i, f, g, o: sigmoid, sigmoid, tanh, sigmoid
                _activate(pre, act, 2 * H, 3 * H, e_in, e_out, bits, fast)
                for j in range(H):
                    hprev[b, t, j] = h[b, j]
                    cprev[b, t, j] = c[b, j]
                    cn[j] = act[H + j] * c[b, j] + act[j] * act[2 * H + j]
                _activate(cn, tc, 0, H, e_in, e_out, bits, fast)
                for j in range(G):
                    gates[b, t, j] = act[j]
                for j in range(H):
                    v = act[3 * H + j] * tc[j]
                    c[b, j] = cn[j]
                    h[b, j] = v
                    hs[b, t, j] = v
            else:
                for j in range(H):
                    hprev[b, t, j] = h[b, j]
                    cprev[b, t, j] = c[b, j]
                    hs[b, t, j] = 0.0
    hT[:] = h
    cT[:] = c


@kernel
def _lstm_backward(g_hs, g_hT, g_cT, w_hh_t, cprev, gates, mask, reverse, fast, dz):
    Bn, T, H = cprev.shape
    dh = g_hT.copy()
    dc = g_cT.copy()
    dzt = np.zeros((Bn, 4 * H), dtype=cprev.dtype)
    cn = np.empty(H, cprev.dtype)
    tc = np.empty(H, cprev.dtype)
    e_in = np.empty(H, cprev.dtype)
    e_out = np.empty(H, cprev.dtype)
    bits = np.empty(H, np.int64)
    for s in range(T):
        t = s if reverse else T - 1 - s
        for b in range(Bn):
            if mask[b, t]:
                for j in range(H):
                    i, f, g = gates[b, t, j], gates[b, t, H + j], gates[b, t, 2 * H + j]
                    cn[j] = f * cprev[b, t, j] + i * g
                _activate(cn, tc, 0, H, e_in, e_out, bits, fast)
                for j in range(H):
                    d = dh[b, j] + g_hs[b, t, j]
                    i = gates[b, t, j]
                    f = gates[b, t, H + j]
                    g = gates[b, t, 2 * H + j]
                    o = gates[b, t, 3 * H + j]
                    cp = cprev[b, t, j]
                    dct = dc[b, j] + d * o * (1.0 - tc[j] * tc[j])
                    dc[b, j] = dct * f
                    dzt[b, j] = dct * g * i * (1.0 - i)
                    dzt[b, H + j] = dct * cp * f * (1.0 - f)
                    dzt[b, 2 * H + j] = dct * i * (1.0 - g * g)
                    dzt[b, 3 * H + j] = d * tc[j] * o * (1.0 - o)
            else:
                for j in range(4 * H):
                    dzt[b, j] = 0.0
            for j in range(4 * H):
                dz[b, t, j] = dzt[b, j]
        back = dzt @ w_hh_t
        for b in range(Bn):
            if mask[b, t]:
                for j in range(H):
                    dh[b, j] = back[b, j]
    return dh, dc


def warm() -> None:
    for dt in (np.float32, np.float64):
        for kind in KINDS:
            h = 1
            xw = np.zeros((1, 1, GATES[kind] * h), dt)
            w = np.zeros((h, GATES[kind] * h), dt)
            bb = np.zeros(GATES[kind] * h, dt)
            z = np.zeros((1, h), dt)
            outs, res = _forward(xw, w, bb, z, z, np.ones((1, 1), bool), kind=kind,
                                 reverse=False)
            _backward_arrays([outs[0] * 0, z, z], res, w, np.ones((1, 1), bool), kind, False)


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

    def rows(lo, hi, _lane):
        # the sequences of a batch are independent: each thread runs the loop on its rows
        s = slice(lo, hi)
        if kind in ("rnn_tanh", "rnn_relu"):
            _rnn_forward(xw[s], w_hh, b_hh, h0[s], mask[s], reverse, kind == "rnn_relu",
                         bool(dt == np.float32), hs[s], hprev[s], hT[s])
        elif kind == "gru":
            _gru_forward(xw[s], w_hh, b_hh, h0[s], mask[s], reverse, bool(dt == np.float32),
                         hs[s], hprev[s], gates[s], hn[s], hT[s])
        else:
            _lstm_forward(xw[s], w_hh, b_hh, h0[s], c0[s], mask[s], reverse, bool(dt == np.float32),
                          hs[s], hprev[s], cprev[s], gates[s], hT[s], cT[s])

    _split_batch(Bn, T * G * H, rows)
    if kind in ("rnn_tanh", "rnn_relu"):
        return (hs, hT, np.zeros_like(hT)), (hprev,)
    if kind == "gru":
        return (hs, hT, np.zeros_like(hT)), (hprev, gates, hn)
    return (hs, hT, cT), (hprev, cprev, gates)


def _split_batch(batch, work, rows):
    """Run ``rows(lo, hi, lane)`` over parts of the batch on the library's threads (the
    kernels release the GIL) when there is enough work; inline otherwise."""
    if ENABLED and batch >= 4:
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

    def rows(lo, hi, _lane):
        s = slice(lo, hi)
        if kind in ("rnn_tanh", "rnn_relu"):
            dh[s] = _rnn_backward(g_hs[s], g_hT[s], w_t, res[1][s], mask[s], reverse,
                                  kind == "rnn_relu", dzx[s])
        elif kind == "gru":
            _, gates, hn = res
            dh[s] = _gru_backward(g_hs[s], g_hT[s], w_t, hprev[s], gates[s], hn[s], mask[s],
                                  reverse, dzx[s], dzh[s])
        else:
            _, cprev, gates = res
            dh[s], dc[s] = _lstm_backward(g_hs[s], g_hT[s], g_cT[s], w_t, cprev[s], gates[s],
                                          mask[s], reverse, bool(dt == np.float32), dzx[s])

    _split_batch(Bn, T * G * H, rows)
    flat = dzh.reshape(Bn * T, -1)
    g_w = hprev.reshape(Bn * T, H).T @ flat
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
