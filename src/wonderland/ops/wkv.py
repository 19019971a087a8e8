"""RWKV's WKV operator as one fused primitive, numerically stable with a running maximum.

Per channel (``w > 0`` the decay per step, ``u`` the bonus of the current token)::

    wkv_t = (Σ_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
            / (Σ_{i<t} e^{-(t-1-i) w + k_i}     + e^{u + k_t})

— a softmax over the past tokens ``i ≤ t`` with logits ``ℓ_{t,i} = k_i − (t−1−i) w``
(``u + k_t`` for ``i = t``) applied to ``v``; AFT-simple's causal form is the same with
``w = u = 0``. The recurrent form keeps a numerator, a denominator and the running
maximum ``p`` of the logits seen so far, both scaled by ``e^{-p}``, so no exponential
overflows however large ``k`` grows (the form of RWKV's own kernel).

The backward pass runs the adjoint in reverse, also scaled: with ``P_{t,i}`` the softmax
weights (rebuilt from the saved row maxima ``m_t`` and scaled denominators ``Z_t``),

    ∂v_i = Σ_{t≥i} P_{t,i} g_t,      ∂k_i = Σ_{t≥i} P_{t,i} g_t (v_i − y_t),
    ∂u   = Σ_t P_{t,t} g_t (v_t − y_t),
    ∂w   = −Σ_t Σ_{i<t} (t−1−i) P_{t,i} g_t (v_i − y_t),

where the sums over ``t > i`` are reverse recurrences ``R_i = e^{-w} R_{i+1} +
e^{-m_{i+1}} g_{i+1}/Z_{i+1}`` kept as a mantissa and an exponent (``e^{k_i} R_i ≤ Σ|g|``,
so the product never overflows even where its factors would).

Each step's exponentials are gathered and computed together (for float32 data by the
vectorised exponential of ``kernels/special.py``, not one C call per element).

Higher orders and forward mode go through :func:`wkv_reference`, the masked softmax.
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
from .arguments import _array_of, constant, to_tensor
from .creation import zeros_like
from .elementwise import where
from .kernels.special import exp_all
from .reductions import softmax
from .shape import expand_dims, reshape


@kernel
def _forward_kernel(w, u, k, v, y, m, z, lo, hi, fast):
    T, Cn = k.shape[1], k.shape[2]
    aa = np.empty(Cn, dtype=k.dtype)
    bb = np.empty(Cn, dtype=k.dtype)
    pp = np.empty(Cn, dtype=k.dtype)
    p_out = np.empty(Cn, dtype=k.dtype)       # the step's maxima: for y, for the state
    p_new = np.empty(Cn, dtype=k.dtype)
    arg = np.empty(4 * Cn, dtype=k.dtype)     # the step's four exponents per channel
    e = np.empty(4 * Cn, dtype=k.dtype)
    bits = np.empty(4 * Cn, dtype=np.int64)
    for b in range(lo, hi):
        aa[:] = 0.0
        bb[:] = 0.0
        pp[:] = -np.inf
        for t in range(T):
            for c in range(Cn):
                kk = k[b, t, c]
                ww = u[c] + kk
                p = max(pp[c], ww)
                arg[c] = pp[c] - p
                arg[Cn + c] = ww - p
                p_out[c] = p
                ww = pp[c] - w[c]
                p = max(ww, kk)
                arg[2 * Cn + c] = ww - p
                arg[3 * Cn + c] = kk - p
                p_new[c] = p
            exp_all(arg, e, bits, fast)
            for c in range(Cn):
                vv = v[b, t, c]
                e1 = e[c]
                e2 = e[Cn + c]
                den = e1 * bb[c] + e2
                y[b, t, c] = (e1 * aa[c] + e2 * vv) / den
                m[b, t, c] = p_out[c]
                z[b, t, c] = den
                e1 = e[2 * Cn + c]
                e2 = e[3 * Cn + c]
                aa[c] = e1 * aa[c] + e2 * vv
                bb[c] = e1 * bb[c] + e2
                pp[c] = p_new[c]


@kernel
def _backward_kernel(gy, w, u, k, v, y, m, z, lo, hi, gk, gv, gw, gu, fast):
    T, Cn = k.shape[1], k.shape[2]
    r1 = np.empty(Cn, dtype=k.dtype)     # Σ_{t>i} e^{-(t-1-i)w - m_t} g_t/Z_t  (mantissa)
    r2 = np.empty(Cn, dtype=k.dtype)     # the same with g_t y_t
    s1 = np.empty(Cn, dtype=k.dtype)     # the same weighted by (t-1-i)
    s2 = np.empty(Cn, dtype=k.dtype)
    ex = np.empty(Cn, dtype=k.dtype)     # their shared exponent
    e_new = np.empty(Cn, dtype=k.dtype)
    arg = np.empty(4 * Cn, dtype=k.dtype)
    e = np.empty(4 * Cn, dtype=k.dtype)
    bits = np.empty(4 * Cn, dtype=np.int64)
    for b in range(lo, hi):
        r1[:] = 0.0
        r2[:] = 0.0
        s1[:] = 0.0
        s2[:] = 0.0
        ex[:] = -np.inf
        for t in range(T - 1, -1, -1):
            for c in range(Cn):                  # the step's exponents (e^-inf = 0)
                kk = k[b, t, c]
                mt = m[b, t, c]
                en = max(ex[c] - w[c], -mt)
                e_new[c] = en
                arg[c] = u[c] + kk - mt                  # the token's own weight
                arg[Cn + c] = kk + ex[c]                 # the later tokens' scale
                arg[2 * Cn + c] = ex[c] - w[c] - en      # decay of the sums
                arg[3 * Cn + c] = -mt - en               # the fresh term
            exp_all(arg, e, bits, fast)
            for c in range(Cn):
                vv = v[b, t, c]
                g = gy[b, t, c]
                yy = y[b, t, c]
                # the current token's own weight P_{t,t}
                pd = e[c] / z[b, t, c]
                gvv = pd * g
                gkk = pd * g * (vv - yy)
                gu[c] += gkk
                # the later tokens t' > t that see token t
                if ex[c] > -np.inf:
                    sc = e[Cn + c]
                    gvv += sc * r1[c]
                    gkk += sc * (vv * r1[c] - r2[c])
                    gw[c] -= sc * (vv * s1[c] - s2[c])
                gv[b, t, c] = gvv
                gk[b, t, c] = gkk
                # fold token t into the sums for t - 1
                q1 = g / z[b, t, c]
                q2 = q1 * yy
                decay = e[2 * Cn + c] if ex[c] > -np.inf else 0.0
                fresh = e[3 * Cn + c]
                s1[c] = (s1[c] + r1[c]) * decay
                s2[c] = (s2[c] + r2[c]) * decay
                r1[c] = r1[c] * decay + q1 * fresh
                r2[c] = r2[c] * decay + q2 * fresh
                ex[c] = e_new[c]


def warm(dtypes=None) -> None:
    """Compile this module's kernels for ``dtypes`` (a set of NumPy dtypes; default:
    all it serves)."""
    for dt in (np.float32, np.float64):
        if dtypes is not None and np.dtype(dt) not in dtypes:
            continue
        k = np.zeros((1, 2, 1), dt)
        w = np.ones(1, dt)
        out, res = _forward(w, w, k, k)
        _backward_arrays(k, w, w, k, k, out, *res)


def _forward(w, u, k, v):
    w, u, k, v = (np.ascontiguousarray(a) for a in (w, u, k, v))
    y = np.empty_like(k)
    m = np.empty_like(k)
    z = np.empty_like(k)
    fn = _forward_kernel.compiled()
    fast = k.dtype == np.float32
    threads.parallel_for(k.shape[0], lambda lo, hi, _: fn(w, u, k, v, y, m, z, lo, hi, fast),
              size=k.size * 16)
    return y, (m, z)


def _backward_arrays(gy, w, u, k, v, y, m, z):
    gy = np.ascontiguousarray(gy)
    gk = np.empty_like(k)
    gv = np.empty_like(k)
    lanes = min(threads.get_num_threads(), max(k.shape[0], 1))
    gw = np.zeros((lanes,) + w.shape, k.dtype)
    gu = np.zeros((lanes,) + u.shape, k.dtype)
    fn = _backward_kernel.compiled()
    fast = k.dtype == np.float32
    threads.parallel_for(k.shape[0], lambda lo, hi, lane: fn(gy, w, u, k, v, y, m, z, lo, hi,
                                                             gk, gv, gw[lane], gu[lane], fast),
                         size=k.size * 16)
    return gw.sum(0), gu.sum(0), gk, gv


def _vjp_all(g, out, inputs, needs, *, res):
    """The composite rule: the VJP of the step-by-step reference (every order)."""
    _, pullback = vjp(wkv_reference, *inputs)
    return list(pullback(g))


def _vjp_kernel(g, out, inputs, needs, *, res):
    """First order: the compiled backward sweep."""
    w, u, k, v = inputs
    arrays = record_call(_backward_on_host, g.data, w.data, u.data, k.data, v.data, out.data,
                         res[0].data, res[1].data)
    return [from_array(a) if n else None for a, n in zip(arrays, needs)]


def _jvp_all(tangents, out, inputs):
    tans = tuple(t if t is not None else zeros_like(x) for t, x in zip(tangents, inputs))
    return jvp(wkv_reference, tuple(inputs), tans)[1]


def _batch(args, axes):
    """Examples of a ``vmap`` join the batch axis when ``w`` and ``u`` are shared."""
    if axes[0] is not None or axes[1] is not None:
        return loop_rule(_WKV)(args, axes)
    size = batch_size(args, axes)

    k, v = (broadcast_batch(args[i], axes[i], size) for i in (2, 3))
    k = reshape(k, (size * k.shape[1],) + k.shape[2:])
    v = reshape(v, (size * v.shape[1],) + v.shape[2:])
    y = apply(_WKV, (args[0], args[1], k, v))
    return reshape(y, (size, y.shape[0] // size) + y.shape[1:]), 0


def _forward_arrays(w, u, k, v):
    return _forward(w, u, k, v)


_ON_HOST = B.HostOnly("a sequential loop over time: a device version needs a custom kernel")
_backward_on_host = B.numpy_kernel(_backward_arrays, device=_ON_HOST)
_WKV = Primitive("wkv", B.numpy_kernel(_forward_arrays, device=_ON_HOST),
                 vjp_all=_vjp_all, vjp_kernel=_vjp_kernel, jvp_all=_jvp_all,
                 save=(0, 1, 2, 3, "out"),
                 residuals=True, batch=_batch)


def wkv_reference(w, u, k, v):
    """The masked-softmax form (O(T²) memory), differentiable to any order."""
    T = k.shape[1]
    xp = np
    t_idx = xp.arange(T)[:, None]
    i_idx = xp.arange(T)[None, :]
    dist = _const(xp.maximum(t_idx - 1 - i_idx, 0).astype(k.dtype)[None, :, :, None], k)
    diag = _const((t_idx == i_idx)[None, :, :, None], k)
    past = _const((i_idx < t_idx)[None, :, :, None], k)
    kk = expand_dims(k, 1)                                   # (b, 1, i, c)
    logits = where(diag, kk + u, kk - dist * w)
    logits = where(past, logits, where(diag, logits, -1e30))
    p = softmax(logits, axis=2)                              # over i
    return (p * expand_dims(v, 1)).sum(axis=2)


def _const(array, like):
    return constant(B.asarray(array, like=_array_of(like)))


def wkv(w, u, k, v, reference=False):
    """RWKV's WKV (see the module notes): ``w``, ``u`` ``(c,)``; ``k``, ``v`` ``(b, t, c)``.
    ``w`` is the positive decay rate per step (RWKV's ``exp(time_decay)``). Returns
    ``(b, t, c)``. ``reference=True`` computes the masked-softmax form instead."""
    what = "wkv"
    w, u, k, v = (to_tensor(x, what) for x in (w, u, k, v))
    if k.ndim != 3 or v.shape != k.shape:
        raise ValueError(f"{what}: k and v must both be (b, t, c), got {k.shape} and {v.shape}")
    c = k.shape[-1]
    if w.shape != (c,) or u.shape != (c,):
        raise ValueError(f"{what}: w and u must be ({c},), got {w.shape} and {u.shape}")
    if any(x.dtype != k.dtype for x in (w, u, v)) or k.dtype.kind != "f":
        raise TypeError(f"{what}: inputs must share one floating dtype, got "
                        f"{[str(x.dtype) for x in (w, u, k, v)]}")
    if reference:
        return wkv_reference(w, u, k, v)
    return apply(_WKV, (w, u, k, v))


__all__ = ["wkv", "wkv_reference"]
