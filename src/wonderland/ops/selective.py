"""The selective scan of Mamba as one fused primitive.

For each sequence ``b``, channel ``d`` and state index ``n``::

    h_t[d, n] = exp(Δ_t[d] A[d, n]) · h_{t-1}[d, n] + Δ_t[d] B_t[n] x_t[d]
    y_t[d]    = Σ_n C_t[n] h_t[d, n]

with input-dependent step ``Δ`` ``(b, t, d)`` and projections ``B``, ``C`` ``(b, t, n)``.
Written with the linear recurrence (:func:`selective_scan_reference`) this materialises
``(b, t, d, n)`` tensors — 16× the activations for ``n = 16``. The fused kernel keeps
only the ``(d, n)`` state of the step it is at: the forward stores the state every
``CHUNK`` steps, and the backward recomputes each chunk's states from its checkpoint
before running the adjoint recurrence ``λ_t = C_t g_t + exp(Δ_{t+1} A) λ_{t+1}`` through
it (the recomputation of Mamba's kernel, on a CPU). Batch rows run on parallel threads.
Each step's decay factors ``exp(Δ_t A)`` are computed together, for float32 data by the
vectorised ``exp_into`` (relative error below 1e-9) instead of one C-library call per
element; the backward computes them once per step for both of its passes.

Higher orders and forward mode go through the reference composite.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..backend import threads
from ..backend.compiled import kernel
from ..core.primitive import Primitive, apply
from ..core.tensor import from_array
from ..core.tracing import record_call
from ..core.transforms import jvp, vjp
from ..core.vmap import batch_size, broadcast_batch, loop_rule
from .arguments import to_tensor
from .creation import zeros, zeros_like
from .elementwise import exp
from .kernels.special import exp_all
from .linalg import einsum
from .scan_ops import linear_recurrence
from .shape import expand_dims, reshape

CHUNK = 64


@kernel
def _decays(dl, A, arg, e, bits, fast):
    """``e[i·N + j] = exp(dl[i] · A[i, j])``: the step's decay factors, through the
    vectorised exponential when ``fast`` (float32 data), else the C library's exp."""
    D, N = A.shape
    for i in range(D):
        for j in range(N):
            arg[i * N + j] = dl[i] * A[i, j]
    exp_all(arg, e, bits, fast)


@kernel
def _forward_kernel(x, delta, A, Bm, C, h0, y, hT, ck, chunk, lo, hi, fast):
    T, D = x.shape[1], x.shape[2]
    N = A.shape[1]
    h = np.empty((D, N), dtype=x.dtype)
    arg = np.empty(D * N, dtype=x.dtype)
    e = np.empty(D * N, dtype=x.dtype)
    bits = np.empty(D * N, dtype=np.int64)
    for b in range(lo, hi):
        h[:, :] = h0[b]
        for t in range(T):
            if t % chunk == 0:
                ck[b, t // chunk] = h
            _decays(delta[b, t], A, arg, e, bits, fast)
            for i in range(D):
                dl = delta[b, t, i]
                dx = dl * x[b, t, i]
                acc = 0.0
                for j in range(N):
                    v = e[i * N + j] * h[i, j] + dx * Bm[b, t, j]
                    h[i, j] = v
                    acc += C[b, t, j] * v
                y[b, t, i] = acc
        hT[b] = h


@kernel
def _backward_kernel(gy, ghT, x, delta, A, Bm, C, ck, chunk, lo, hi,
                     gx, gdelta, gA, gB, gC, gh0, fast):
    T, D = x.shape[1], x.shape[2]
    N = A.shape[1]
    lam = np.empty((D, N), dtype=x.dtype)
    states = np.empty((chunk + 1, D, N), dtype=x.dtype)
    decay = np.empty((chunk, D * N), dtype=x.dtype)     # the chunk's exp(Δ_t A)
    arg = np.empty(D * N, dtype=x.dtype)
    bits = np.empty(D * N, dtype=np.int64)
    for b in range(lo, hi):
        lam[:, :] = ghT[b]
        n_chunks = (T + chunk - 1) // chunk
        for c in range(n_chunks - 1, -1, -1):
            start = c * chunk
            stop = min(start + chunk, T)
            states[0] = ck[b, c]
            for t in range(start, stop):            # recompute the chunk's states
                k = t - start
                _decays(delta[b, t], A, arg, decay[k], bits, fast)
                for i in range(D):
                    dl = delta[b, t, i]
                    dx = dl * x[b, t, i]
                    for j in range(N):
                        states[k + 1, i, j] = decay[k, i * N + j] * states[k, i, j] + dx * Bm[b, t, j]
            for t in range(stop - 1, start - 1, -1):
                k = t - start
                for j in range(N):
                    gB[b, t, j] = 0.0
                    gC[b, t, j] = 0.0
                for i in range(D):
                    dl = delta[b, t, i]
                    xv = x[b, t, i]
                    g = gy[b, t, i]
                    gdl = 0.0
                    gxv = 0.0
                    for j in range(N):
                        a = decay[k, i * N + j]
                        l = lam[i, j] + g * C[b, t, j]
                        gC[b, t, j] += g * states[k + 1, i, j]
                        ga = l * states[k, i, j] * a
                        gdl += ga * A[i, j] + l * Bm[b, t, j] * xv
                        gA[i, j] += ga * dl
                        gB[b, t, j] += l * dl * xv
                        gxv += l * dl * Bm[b, t, j]
                        lam[i, j] = l * a
                    gdelta[b, t, i] = gdl
                    gx[b, t, i] = gxv
        gh0[b] = lam


def _warm():
    for dt in (np.float32, np.float64):
        x = np.ones((1, 2, 1), dt)
        A = -np.ones((1, 1), dt)
        bn = np.ones((1, 2, 1), dt)
        outs, res = _forward(x, x, A, bn, bn, np.zeros((1, 1, 1), dt))
        _backward_arrays([outs[0], outs[1]], x, x, A, bn, bn, res[0])


def _forward(x, delta, A, Bm, C, h0):
    x, delta, A, Bm, C, h0 = (np.ascontiguousarray(v) for v in (x, delta, A, Bm, C, h0))
    b, T, D = x.shape
    y = np.empty((b, T, D), x.dtype)
    hT = np.empty((b, D, A.shape[1]), x.dtype)
    ck = np.empty((b, max(1, (T + CHUNK - 1) // CHUNK), D, A.shape[1]), x.dtype)
    if T == 0:
        hT[...] = h0
        return (y, hT), (ck,)
    fn = _forward_kernel.compiled()
    fast = x.dtype == np.float32
    threads.parallel_for(
        b, lambda lo, hi, _: fn(x, delta, A, Bm, C, h0, y, hT, ck, CHUNK, lo, hi, fast),
        size=x.size * A.shape[1] * 8)
    return (y, hT), (ck,)


def _backward_arrays(gs, x, delta, A, Bm, C, ck):
    gy, ghT = (np.ascontiguousarray(g) for g in gs)
    b, T, D = x.shape
    gx = np.empty_like(x)
    gdelta = np.empty_like(x)
    gB = np.empty_like(Bm)
    gC = np.empty_like(C)
    gh0 = np.empty((b, D, A.shape[1]), x.dtype)
    parts = np.zeros((min(threads.get_num_threads(), max(b, 1)),) + A.shape, x.dtype)
    fn = _backward_kernel.compiled()
    fast = x.dtype == np.float32
    threads.parallel_for(
        b, lambda lo, hi, lane: fn(gy, ghT, x, delta, A, Bm, C, ck, CHUNK, lo, hi, gx, gdelta,
                                   parts[lane], gB, gC, gh0, fast),
        size=x.size * A.shape[1] * 8)
    return gx, gdelta, parts.sum(axis=0), gB, gC, gh0


def _forward_prim(x, delta, A, Bm, C, h0):
    return _forward(x, delta, A, Bm, C, h0)


def _vjp_all(gs, outs, inputs, needs, *, res):
    """The composite rule: the VJP of the step-by-step reference (every order)."""
    like = (inputs[0], inputs[5])               # y has x's shape, h_T has h0's
    gs = [g if g is not None else zeros_like(o) for g, o in zip(gs, like)]
    _, pullback = vjp(selective_scan_reference, *inputs)
    return list(pullback(tuple(gs)))


def _vjp_kernel(gs, outs, inputs, needs, *, res):
    """First order: the compiled backward sweep, in chunks."""
    x, delta, A, Bm, C, h0 = inputs
    like = x.data
    g_arrays = [g.data if g is not None else B.ns(like).zeros(o.shape, like.dtype)
                for g, o in zip(gs, (x, h0))]
    arrays = record_call(_backward_on_host, *g_arrays, x.data, delta.data, A.data, Bm.data,
                         C.data, res[0].data)
    return [from_array(a) if n else None for a, n in zip(arrays, needs)]


def _jvp_all(tangents, outs, inputs):
    tans = tuple(t if t is not None else zeros_like(v) for t, v in zip(tangents, inputs))
    _, touts = jvp(selective_scan_reference, tuple(inputs), tans)
    return list(touts)


def _batch(args, axes):
    """Examples of a ``vmap`` join the batch axis when ``A`` is shared."""
    if axes[2] is not None:
        return loop_rule(_SELECTIVE)(args, axes)
    size = batch_size(args, axes)

    merged = []
    for i in (0, 1, 3, 4, 5):
        v = broadcast_batch(args[i], axes[i], size)
        merged.append(reshape(v, (size * v.shape[1],) + v.shape[2:]))
    x, delta, Bm, C, h0 = merged
    y, hT = apply(_SELECTIVE, (x, delta, args[2], Bm, C, h0))
    n = y.shape[0] // size
    return (reshape(y, (size, n) + y.shape[1:]), reshape(hT, (size, n) + hT.shape[1:])), (0, 0)


def _backward_flat(*arrays):
    """``_backward_arrays`` with the two output cotangents as its first two arguments."""
    return _backward_arrays(arrays[:2], *arrays[2:])


_ON_HOST = B.HostOnly("a sequential loop over time: a device version needs a custom kernel")
_backward_on_host = B.numpy_kernel(_backward_flat, device=_ON_HOST)
_SELECTIVE = Primitive("selective_scan", B.numpy_kernel(_forward_prim, device=_ON_HOST),
                       vjp_all=_vjp_all, vjp_kernel=_vjp_kernel, jvp_all=_jvp_all, multiple_results=True, save="inputs",
                       residuals=True, batch=_batch)


def selective_scan_reference(x, delta, A, Bm, C, h0):
    """The composite form: the linear recurrence over ``(b, t, d, n)`` tensors."""
    a = exp(expand_dims(delta, -1) * A)                               # (b, t, d, n)
    u = expand_dims(delta * x, -1) * expand_dims(Bm, 2)               # (b, t, d, n)
    h = linear_recurrence(a, u, h0, axis=1)
    y = einsum("btdn,btn->btd", h, C)
    return y, h[:, -1]


def selective_scan(x, delta, A, B_, C, h0=None, reference=False):
    """Mamba's selective scan (see the module notes). Returns ``(y, h_T)``.

    ``x``, ``delta``: ``(b, t, d)``; ``A``: ``(d, n)``; ``B_``, ``C``: ``(b, t, n)``;
    ``h0``: ``(b, d, n)`` (default zeros). ``y`` is ``(b, t, d)`` and ``h_T`` the state
    after the last step (``(b, d, n)``). ``reference=True`` computes the same through
    :func:`linear_recurrence` (what the fused kernel is tested against).
    """
    what = "selective_scan"
    x, delta, A, B_, C = (to_tensor(v, what) for v in (x, delta, A, B_, C))
    if x.ndim != 3 or delta.shape != x.shape:
        raise ValueError(f"{what}: x and delta must both be (b, t, d), got {x.shape} and "
                         f"{delta.shape}")
    b, t, d = x.shape
    if A.ndim != 2 or A.shape[0] != d:
        raise ValueError(f"{what}: A must be (d, n) = ({d}, n), got {A.shape}")
    n = A.shape[1]
    if B_.shape != (b, t, n) or C.shape != (b, t, n):
        raise ValueError(f"{what}: B and C must be (b, t, n) = {(b, t, n)}, got {B_.shape} "
                         f"and {C.shape}")
    dtype = x.dtype
    if dtype.kind != "f" or any(v.dtype != dtype for v in (delta, A, B_, C)):
        raise TypeError(f"{what}: every input must share one floating dtype, got "
                        f"{[str(v.dtype) for v in (x, delta, A, B_, C)]}")
    if h0 is None:
        h0 = zeros((b, d, n), dtype=dtype)
    else:
        h0 = to_tensor(h0, what)
        if h0.shape != (b, d, n):
            raise ValueError(f"{what}: h0 must be (b, d, n) = {(b, d, n)}, got {h0.shape}")
    if reference:
        return selective_scan_reference(x, delta, A, B_, C, h0)
    return apply(_SELECTIVE, (x, delta, A, B_, C, h0))


__all__ = ["selective_scan", "selective_scan_reference"]
