"""Scaled dot-product attention as one fused primitive, with two array kernels.

``attention(q, k, v, bias, causal, scale)`` computes, for every leading (batch, head)
index, ``softmax(scale · q kᵀ + bias, masked) v`` with ``q (..., L, E)``,
``k (..., S, E)``, ``v (..., S, Ev)`` and a float ``bias`` broadcastable to
``(..., L, S)`` (``-inf`` entries forbid a pair). ``causal`` is ``None`` or an integer
offset ``c``: query ``i`` may see key ``j`` only when ``j <= i + c`` (PyTorch's
``is_causal`` is ``c = 0``, aligned top-left; a KV cache aligns the last query with the
last key, ``c = S - L``). A query row that may see no key gives zeros, and its
gradients are zeros, not NaN.

Two kernels compute the same values:

* ``plain``: the whole probability matrix ``P`` per head is formed and kept for the
  backward pass (``dV = Pᵀ dO``, ``dS = P ⊙ (dO Vᵀ − rowsum(dO ⊙ O))``, ``dQ = s dS K``,
  ``dK = s dSᵀ Q``). Memory is quadratic in the length; nothing is recomputed.
* ``flash``: FlashAttention's algorithm. Queries go in blocks, keys in blocks; each
  block's scores are folded into a running row maximum, normaliser and output (the
  *online softmax*), so no ``L × S`` array ever exists. Only the output and each row's
  log-sum-exp are kept; the backward pass recomputes the probabilities block by block
  from them. Memory grows linearly with the length.

Both run blocks of heads on the library's worker threads, each with single-threaded
BLAS, so the elementwise passes (exp, max, sums) use both cores too. On the CPU, float32
and float64 NumPy arrays go through compiled loops instead (:mod:`.kernels.attention`):
one kernel call per thread walks its heads block by block, the products through BLAS,
the mask, running maximum, exponentials and sums fused in between, with the same two
algorithms (``keep``: plain). They recompute a block about as fast as they would read
the kept probabilities back, so ``"auto"`` takes flash there. They read ``q``, ``k``,
``v`` (and ``dO``, ``O``) in the layout they come in, and write the output and the
gradients laid out ``(batch, length, heads, features)``: a multi-head layer splits and
merges its heads without a copy. The NumPy block code below
stays as their reference (and serves other array libraries and ``WONDERLAND_KERNELS=numpy``).

The VJP and JVP rules are written with tensor operations: at first order, outside any
transformation, the VJP runs the array kernel above; when the backward pass is itself
recorded, carries tangents or is batched, it recomputes everything with the composite
reference (:func:`attention_reference`), which differentiates again, so second-order
derivatives and ``vmap`` of gradients work.

ONNX export writes the plain algorithm's math (``onnx=``): ``q·scale`` times ``kᵀ``
(MatMul), plus the bias, the causal mask (a constant, or built from the sequence lengths
when they follow a dynamic axis), then Softmax — guarded so that a row seeing no key
gives zeros as here — and a MatMul with ``v``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend as B
from ..backend import compiled, threads
from ..core.tracing import record_call
from ..core.primitive import Primitive, apply
from ..core.structural import reshape as _reshape
from ..core.tensor import Tensor
from ..core.vmap import moveaxis
from .arguments import constant, namespace
from .elementwise import isfinite, logical_and, where
from .kernels import attention as kernels
from .linalg import matmul
from .reductions import any as _any
from .reductions import softmax
from .reductions import sum as _sum
from .shape import swapaxes

# above this many score entries per call, "auto" takes the flash kernel
FLASH_THRESHOLD = 1 << 24
_BLOCK_ELEMENTS = 1 << 16      # score entries per block (heads × queries × keys): fits L2


# ----------------------------------------------------------------------------- helpers
def _batch_shape(*shapes):
    return np.broadcast_shapes(*[s[:-2] for s in shapes])


def _flat(x, bs):
    """``x (*b, r, c)`` broadcast to ``(*bs, r, c)`` and flattened to ``(n, r, c)``."""
    n = int(np.prod(bs, dtype=np.int64))
    if x.shape[:-2] != tuple(bs):
        x = B.broadcast_to(x, tuple(bs) + x.shape[-2:])
    return B.ns(x).ascontiguousarray(x).reshape((n,) + x.shape[-2:])


class _Bias:
    """The bias as ``(nb, Lb, Sb)`` plus, for every flattened head, its row in it."""

    def __init__(self, bias, bs):
        shape = bias.shape
        bb = (1,) * (len(bs) - (len(shape) - 2)) + shape[:-2]
        self.nb = int(np.prod(bb, dtype=np.int64))
        self.arr = B.ns(bias).ascontiguousarray(bias).reshape((self.nb,) + shape[-2:])
        if self.nb == 1:
            self.index = None
        else:
            self.index = np.broadcast_to(np.arange(self.nb).reshape(bb), bs).reshape(-1)

    def block(self, h0, h1, i0, i1, j0, j1):
        a = self.arr
        if self.index is None:
            sub = a
        else:
            idx = self.index[h0:h1]
            if (idx == idx[0]).all():
                sub = a[idx[0]:idx[0] + 1]
            elif (np.diff(idx) == 1).all():
                sub = a[idx[0]:idx[-1] + 1]
            else:
                sub = a[idx]
        rows = slice(None) if a.shape[1] == 1 else slice(i0, i1)
        cols = slice(None) if a.shape[2] == 1 else slice(j0, j1)
        return sub[:, rows, cols]


def _causal_block(i0, i1, j0, j1, offset):
    """Boolean ``(i1-i0, j1-j0)``: True where key j is *after* what query i may see."""
    return np.arange(j0, j1)[None, :] > (np.arange(i0, i1)[:, None] + offset)


def _blocks(n, L, S, impl, block_q, block_k):
    """Queries, keys and heads per block: a block of scores stays in the L2 cache."""
    if impl == "plain":
        bk = S
        bq = min(L, block_q or max(16, _BLOCK_ELEMENTS // max(S, 1)))
    else:
        bk = min(S, block_k or 256)
        bq = min(L, block_q or 256)
    bq, bk = max(bq, 1), max(bk, 1)
    return bq, bk, max(1, _BLOCK_ELEMENTS // (bq * bk))


def _key_limit(i1, S, causal):
    """Keys that queries ``< i1`` may see at all: ``[0, limit)``."""
    return S if causal is None else max(0, min(S, i1 + causal))


class _Masks:
    """Additive causal masks (0 or -inf) for the blocks that cross the diagonal, made
    once per call and shared by every head."""

    def __init__(self, causal, dtype):
        self.causal, self.dtype, self.cache = causal, dtype, {}

    def apply(self, s, i0, i1, j0, j1):
        if self.causal is None or j1 - 1 <= i0 + self.causal:
            return
        key = (i0, i1, j0, j1)
        m = self.cache.get(key)
        if m is None:
            m = np.where(_causal_block(i0, i1, j0, j1, self.causal), -np.inf, 0).astype(self.dtype)
            self.cache[key] = m
        s += m


# ----------------------------------------------------------------------------- compiled loops
def _compiled_applies(*arrays) -> bool:
    """Whether the compiled loops (:mod:`.kernels.attention`) serve these arrays: plain
    NumPy float32 or float64 arrays of one dtype, kernels on."""
    dtype = arrays[0].dtype
    return (compiled.ENABLED and dtype in (np.float32, np.float64)
            and all(type(a) is np.ndarray and a.dtype == dtype for a in arrays))


def _compiled_blocks(L, S, causal, impl, block_q, block_k):
    """Queries and keys per block of the compiled loops: 128 queries (64 under a causal
    mask, which then computes less past the diagonal) and every key up to 1,024 (the
    plain algorithm: every key, in one block); measured best of 32–256 on the
    benchmarks' shapes."""
    bq = max(1, min(L, block_q or (64 if causal is not None else 128)))
    bk = S if impl == "plain" else min(S, block_k or 1024)
    return bq, max(1, bk)


def _kernel_bias(bias_, n, dtype):
    """The bias arguments of the compiled loops: ``(nb, Lb, Sb)``, each head's row in it,
    and whether there is one."""
    if bias_ is None:
        return np.zeros((1, 1, 1), dtype), np.zeros(n, np.int64), False
    index = np.zeros(n, np.int64) if bias_.index is None else np.ascontiguousarray(
        bias_.index, dtype=np.int64)
    return bias_.arr, index, True


def _head_axes(bs):
    """The broadcast batch ``bs`` as two axes ``(n1, n2)``: its last axis (a multi-head
    layer's heads) and all the others together."""
    if not bs:
        return 1, 1
    return int(np.prod(bs[:-1], dtype=np.int64)), int(bs[-1])


def _merged_stride(shape, strides):
    """The stride of these axes flattened into one, or ``None`` when that needs a copy."""
    dims = [(n, st) for n, st in zip(shape, strides) if n != 1]
    if any(a != b * n for (_, a), (n, b) in zip(dims, dims[1:])):
        return None
    return dims[-1][1] if dims else 0


def _memory(x, bs):
    """``x (*b, r, c)`` over the broadcast batch ``bs`` as the compiled loops read it: its
    memory as a flat read-only array from its first element and the element strides of
    its (n1, n2, row) axes. No copy when its rows are contiguous (a multi-head layer's
    heads, a transposed ``(batch, length, heads, features)`` array, a broadcast); a
    C-ordered copy otherwise."""
    r, c = x.shape[-2:]
    if x.shape[:-2] != tuple(bs):
        x = np.broadcast_to(x, tuple(bs) + (r, c))
    item = x.itemsize
    lead = _merged_stride(x.shape[:-3], x.strides[:-3]) if len(bs) > 1 else 0
    ok = (lead is not None and x.strides[-1] == item and min(x.strides) >= 0
          and all(st % item == 0 for st in x.strides))
    if not ok:
        x = np.ascontiguousarray(x)
        lead = _merged_stride(x.shape[:-3], x.strides[:-3]) if len(bs) > 1 else 0
    heads = x.strides[-3] if bs else 0
    span = 1 + sum((n - 1) * st for n, st in zip(x.shape, x.strides)) // item
    flat = np.lib.stride_tricks.as_strided(x, (max(span, 1),), (item,), writeable=False)
    return flat, np.array([lead // item, heads // item, x.strides[-2] // item], np.int64)


def _head_major(n1, n2, r, c, dtype):
    """A fresh ``(n1, n2, r, c)`` array laid out as ``(n1, r, n2, c)`` (the way a
    multi-head layer's projections lay its heads out, so merging them back into
    ``(batch, length, features)`` is a view), with its flat memory and strides as
    :func:`_memory` gives them."""
    buf = np.empty((n1, r, n2, c), dtype)
    return buf.transpose(0, 2, 1, 3), buf.reshape(-1), np.array([r * n2 * c, c, n2 * c],
                                                                np.int64)


def _forward_compiled(q, k, v, bias_, bs, scale, causal, impl, block_q, block_k):
    """The compiled forward on ``q, k, v`` as they are laid out; ``out`` comes back
    head-major, ``lse`` as (n, L), ``probs`` as (n, L, S) (plain algorithm)."""
    L, E, S, Ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    n1, n2 = _head_axes(bs)
    n = n1 * n2
    dtype = q.dtype
    (qm, q_at), (km, k_at), (vm, v_at) = _memory(q, bs), _memory(k, bs), _memory(v, bs)
    out, om, o_at = _head_major(n1, n2, L, Ev, dtype)
    lse = np.empty((n, L), dtype)
    keep = impl == "plain"
    probs = np.empty((n, L, S), dtype) if keep else np.empty((1, 1, 1), dtype)
    bq, bk = _compiled_blocks(L, S, causal, impl, block_q, block_k)
    barr, bhead, has_bias = _kernel_bias(bias_, n, dtype)
    fast = dtype == np.float32
    kern = kernels.attention_forward[fast]
    offset = 0 if causal is None else causal
    sizes = np.array([n2, L, S, E, Ev], np.int64)

    def work(lo, hi, lane):
        kern(qm, q_at, km, k_at, vm, v_at, dtype.type(scale), sizes, barr, bhead, has_bias,
             causal is not None, offset, bq, bk, fast, keep, lo, hi, om, o_at, lse, probs)

    threads.parallel_for(n, work, n * L * S)
    return out, lse, (probs if keep else None)


def _backward_compiled(q, k, v, g, o, lse, probs, bias_, bs, causal, impl, block_q, block_k,
                       scale, need_bias):
    """The compiled backward; ``dq, dk, dv`` come back head-major, ``dbias`` as (n, L, S)."""
    L, E, S, Ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    n1, n2 = _head_axes(bs)
    n = n1 * n2
    dtype = q.dtype
    memory = [_memory(x, bs) for x in (q, k, v, g, o)]
    dq, dqm, dq_at = _head_major(n1, n2, L, E, dtype)
    dk, dkm, dk_at = _head_major(n1, n2, S, E, dtype)
    dv, dvm, dv_at = _head_major(n1, n2, S, Ev, dtype)
    dbias = np.empty((n, L, S), dtype) if need_bias else np.empty((1, 1, 1), dtype)
    use_probs = probs is not None
    probs = (np.ascontiguousarray(probs).reshape(n, L, S) if use_probs
             else np.empty((1, 1, 1), dtype))
    lse = np.empty((1, 1), dtype) if lse is None else np.ascontiguousarray(lse).reshape(n, L)
    bq, bk = _compiled_blocks(L, S, causal, impl, block_q, block_k)
    barr, bhead, has_bias = _kernel_bias(bias_, n, dtype)
    fast = dtype == np.float32
    kern = kernels.attention_backward[fast]
    offset = 0 if causal is None else causal
    sizes = np.array([n2, L, S, E, Ev], np.int64)
    args = [a for pair in memory for a in pair]

    def work(lo, hi, lane):
        kern(*args, sizes, lse, probs, barr, bhead, has_bias, causal is not None, offset, bq,
             bk, fast, use_probs, need_bias, dtype.type(scale), lo, hi, dqm, dq_at, dkm,
             dk_at, dvm, dv_at, dbias)

    threads.parallel_for(n, work, n * L * S)
    return dq, dk, dv, (dbias if need_bias else None)


# ----------------------------------------------------------------------------- forward kernel
def _attention_forward(q, k, v, *bias, scale, causal, impl, block_q, block_k):
    xp = B.ns(q)
    L, S, Ev = q.shape[-2], k.shape[-2], v.shape[-1]
    bs = _batch_shape(q.shape, k.shape, v.shape, *(b.shape for b in bias))
    n = int(np.prod(bs, dtype=np.int64))
    dtype = q.dtype
    bias_ = _Bias(bias[0], bs) if bias else None
    if n and L and _compiled_applies(q, k, v, *bias):
        out, lse, probs = _forward_compiled(q, k, v, bias_, bs, scale, causal, impl, block_q,
                                            block_k)
        res = probs if impl == "plain" else lse
        return out.reshape(tuple(bs) + (L, Ev)), (res.reshape(tuple(bs) + res.shape[1:]),)
    qf = _flat(q, bs) * dtype.type(scale)
    kf, vf = _flat(k, bs), _flat(v, bs)
    out = xp.empty((n, L, Ev), dtype)
    lse = xp.empty((n, L), dtype)
    probs = xp.empty((n, L, S), dtype) if impl == "plain" else None
    bq, bk, hb = _blocks(n, L, S, impl, block_q, block_k)
    masks = _Masks(causal, dtype)

    def work(lo, hi, lane):
        for h0 in range(lo, hi, hb):
            h1 = min(hi, h0 + hb)
            for i0 in range(0, L, bq):
                i1 = min(L, i0 + bq)
                _forward_block(qf, kf, vf, bias_, masks, out, lse, probs, h0, h1, i0, i1, bk, S)

    if n and L:
        threads.parallel_for(n, work, n * L * S)
    shape = tuple(bs) + (L, Ev)
    res = (probs.reshape(tuple(bs) + (L, S)),) if impl == "plain" else (lse.reshape(tuple(bs) + (L,)),)
    return out.reshape(shape), res


def _forward_block(qf, kf, vf, bias, masks, out, lse, probs, h0, h1, i0, i1, bk, S):
    qb = qf[h0:h1, i0:i1]
    limit = _key_limit(i1, S, masks.causal)
    m = l = acc = m_safe = None
    for j0 in range(0, limit, bk):
        j1 = min(limit, j0 + bk)
        kt = kf[h0:h1, j0:j1].transpose(0, 2, 1)
        if probs is not None:                        # plain: one key block, kept
            s = probs[h0:h1, i0:i1, j0:j1]
            np.matmul(qb, kt, out=s)
        else:
            s = np.matmul(qb, kt)
        if bias is not None:
            s += bias.block(h0, h1, i0, i1, j0, j1)
        masks.apply(s, i0, i1, j0, j1)
        mb = s.max(axis=-1)
        m_new = mb if m is None else np.maximum(m, mb)
        safe = m_new
        if not np.isfinite(m_new).all():
            safe = np.where(np.isfinite(m_new), m_new, 0).astype(s.dtype)
        s -= safe[..., None]
        np.exp(s, out=s)
        pv = np.matmul(s, vf[h0:h1, j0:j1])
        if m is None:
            l, acc = s.sum(axis=-1), pv
        else:                                        # rescale what came before
            alpha = np.exp(m_safe - safe) if np.isfinite(m).all() else \
                np.where(np.isfinite(m), np.exp(m_safe - safe), 0).astype(s.dtype)
            l *= alpha
            l += s.sum(axis=-1)
            acc *= alpha[..., None]
            acc += pv
        m, m_safe = m_new, safe
    if probs is not None and limit < S:
        probs[h0:h1, i0:i1, limit:] = 0
    if m is None:                                    # no key visible to any row
        out[h0:h1, i0:i1] = 0
        lse[h0:h1, i0:i1] = np.inf
        return
    empty = l == 0
    if empty.any():
        inv = 1.0 / np.where(empty, 1, l)
        inv[empty] = 0
        with np.errstate(divide="ignore"):
            lse[h0:h1, i0:i1] = np.where(empty, np.inf, m_safe + np.log(np.where(empty, 1, l)))
    else:
        inv = 1.0 / l
        lse[h0:h1, i0:i1] = m_safe + np.log(l)
    np.multiply(acc, inv[..., None], out=out[h0:h1, i0:i1])
    if probs is not None:
        probs[h0:h1, i0:i1, :limit] *= inv[..., None]


# ----------------------------------------------------------------------------- backward kernel
def _attention_backward_flat(g, q, k, v, out, *extra, n_bias, **params):
    """``_attention_backward`` with every array a positional argument (``jit`` records
    it as one step)."""
    return _attention_backward(g, q, k, v, extra[:n_bias], out, extra[n_bias:], **params)


def _attention_backward(g, q, k, v, bias, out, res, *, scale, causal, impl, block_q, block_k,
                        need_bias):
    """Cotangents of q, k, v (and of the bias, plain kernel only) on arrays, flattened
    to the broadcast batch; the caller sums them back to the inputs' shapes."""
    xp = B.ns(q)
    L, E, S, Ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    bs = _batch_shape(q.shape, k.shape, v.shape, *(b.shape for b in bias))
    n = int(np.prod(bs, dtype=np.int64))
    dtype = q.dtype
    bias_ = _Bias(bias[0], bs) if bias else None
    if n and L and _compiled_applies(q, k, v, g, out, *bias, *res):
        probs = res[0] if impl == "plain" else None
        lse = res[0] if impl != "plain" else None
        dq, dk, dv, dbias = _backward_compiled(q, k, v, g, out, lse, probs, bias_, bs, causal,
                                               impl, block_q, block_k, scale, need_bias)
        shape = tuple(bs)
        return (dq.reshape(shape + (L, E)), dk.reshape(shape + (S, E)),
                dv.reshape(shape + (S, Ev)),
                None if dbias is None else dbias.reshape(shape + (L, S)))
    qf = _flat(q, bs) * dtype.type(scale)
    kf, vf = _flat(k, bs), _flat(v, bs)
    gf, of = _flat(g, bs), _flat(out, bs)
    D = np.einsum("nle,nle->nl", gf, of)
    dq = xp.zeros((n, L, E), dtype)
    dk = xp.zeros((n, S, E), dtype)
    dv = xp.zeros((n, S, Ev), dtype)
    dbias = xp.empty((n, L, S), dtype) if need_bias else None
    if impl == "plain":
        probs, = res
        probs = probs.reshape(n, L, S)
        lse = None
    else:
        lse, = res
        lse = lse.reshape(n, L)
        probs = None
    bq, bk, hb = _blocks(n, L, S, impl, block_q, block_k)
    masks = _Masks(causal, dtype)

    def work(lo, hi, lane):
        for h0 in range(lo, hi, hb):
            h1 = min(hi, h0 + hb)
            for i0 in range(0, L, bq):
                i1 = min(L, i0 + bq)
                _backward_block(qf, kf, vf, gf, D, lse, probs, bias_, masks, dq, dk, dv,
                                dbias, h0, h1, i0, i1, bk, S)

    if n and L:
        threads.parallel_for(n, work, n * L * S)
    dq *= dtype.type(scale)
    shape = tuple(bs)
    return (dq.reshape(shape + (L, E)), dk.reshape(shape + (S, E)), dv.reshape(shape + (S, Ev)),
            None if dbias is None else dbias.reshape(shape + (L, S)))


def _backward_block(qf, kf, vf, gf, D, lse, probs, bias, masks, dq, dk, dv, dbias,
                    h0, h1, i0, i1, bk, S):
    qb = qf[h0:h1, i0:i1]
    gb = gf[h0:h1, i0:i1]
    Db = D[h0:h1, i0:i1, None]
    limit = _key_limit(i1, S, masks.causal)
    if dbias is not None and limit < S:
        dbias[h0:h1, i0:i1, limit:] = 0
    for j0 in range(0, limit, bk):
        j1 = min(limit, j0 + bk)
        if probs is not None:
            p = probs[h0:h1, i0:i1, j0:j1]
        else:                                        # recompute this block's probabilities
            p = np.matmul(qb, kf[h0:h1, j0:j1].transpose(0, 2, 1))
            if bias is not None:
                p += bias.block(h0, h1, i0, i1, j0, j1)
            masks.apply(p, i0, i1, j0, j1)
            p -= lse[h0:h1, i0:i1, None]
            np.exp(p, out=p)
        dv[h0:h1, j0:j1] += np.matmul(p.transpose(0, 2, 1), gb)
        ds = np.matmul(gb, vf[h0:h1, j0:j1].transpose(0, 2, 1))
        ds -= Db
        ds *= p
        if dbias is not None:
            dbias[h0:h1, i0:i1, j0:j1] = ds
        dq[h0:h1, i0:i1] += np.matmul(ds, kf[h0:h1, j0:j1])
        dk[h0:h1, j0:j1] += np.matmul(ds.transpose(0, 2, 1), qb)


# ----------------------------------------------------------------------------- the reference
def causal_mask(L, S, offset, like) -> Tensor:
    """Boolean ``(L, S)`` constant, True where query ``i`` may see key ``j`` (``j <= i + offset``)."""
    xp = namespace(like)
    return constant(xp.asarray(np.arange(S)[None, :] <= np.arange(L)[:, None] + offset))


def attention_reference(q, k, v, bias=None, causal=None, scale=1.0, return_probs=False,
                        dropout=None):
    """The composite form: scores, a masked softmax that gives an all-masked row zeros,
    the weighted sum — all tensor operations, so every derivative and ``vmap`` follow.
    ``dropout`` is an optional function applied to the probabilities."""
    s = matmul(q * scale, swapaxes(k, -1, -2))
    if bias is not None:
        s = s + bias
    allowed = isfinite(s)
    if causal is not None:
        allowed = logical_and(allowed, causal_mask(q.shape[-2], k.shape[-2], causal, q))
    any_row = _any(allowed, -1, keepdims=True)
    s = where(allowed, s, -np.inf)
    s = where(any_row, s, 0.0)                  # a row with nothing allowed: any finite row
    p = where(allowed, softmax(s, -1), 0.0)
    if dropout is not None:
        p = dropout(p)
    o = matmul(p, v)
    return (o, p) if return_probs else o


def _linearised(tq, tk, tbias, q, k, v, bias, causal, scale):
    """Probabilities and the tangent of the scores, for the JVP and the recorded VJP."""
    _, p = attention_reference(q, k, v, bias, causal, scale, return_probs=True)
    ds = None
    if tq is not None:
        ds = matmul(tq * scale, swapaxes(k, -1, -2))
    if tk is not None:
        t = matmul(q * scale, swapaxes(tk, -1, -2))
        ds = t if ds is None else ds + t
    if tbias is not None:
        ds = tbias if ds is None else ds + tbias
    return p, ds


# ----------------------------------------------------------------------------- rules
def _vjp_kernel(g, out, inputs, needs, *, scale, causal, impl, block_q, block_k, res):
    """First order: the fused backward kernel (blocks recomputed for flash)."""
    q, k, v = inputs[:3]
    bias = inputs[3] if len(inputs) > 3 else None
    need_bias = len(needs) > 3 and needs[3]
    if res is None or (need_bias and impl != "plain"):
        return NotImplemented
    extra = ([] if bias is None else [bias.data]) + [r.data for r in res]
    arrays = record_call(_attention_backward_flat, g.data, q.data, k.data, v.data, out.data,
                         *extra, n_bias=0 if bias is None else 1, scale=scale,
                         causal=causal, impl=impl, block_q=block_q, block_k=block_k,
                         need_bias=need_bias)
    return [constant(a) if need and a is not None else None for a, need in zip(arrays, needs)]


def _vjp_all(g, out, inputs, needs, *, scale, causal, impl, block_q, block_k, res):
    """The composite, differentiable form (higher orders, vmap, forward over reverse)."""
    q, k, v = inputs[:3]
    bias = inputs[3] if len(inputs) > 3 else None
    need_bias = len(needs) > 3 and needs[3]
    o, p = attention_reference(q, k, v, bias, causal, scale, return_probs=True)
    result = [None] * len(inputs)
    if needs[2]:
        result[2] = matmul(swapaxes(p, -1, -2), g)
    if needs[0] or needs[1] or need_bias:
        dp = matmul(g, swapaxes(v, -1, -2))
        ds = p * (dp - _sum(g * o, -1, keepdims=True))
        if needs[0]:
            result[0] = matmul(ds, k) * scale
        if needs[1]:
            result[1] = matmul(swapaxes(ds, -1, -2), q) * scale
        if need_bias:
            result[3] = ds
    return result


def _jvp_all(tangents, out, inputs, *, scale, causal, impl, block_q, block_k):
    q, k, v = inputs[:3]
    bias = inputs[3] if len(inputs) > 3 else None
    tq, tk, tv = tangents[:3]
    tbias = tangents[3] if len(tangents) > 3 else None
    p, ds = _linearised(tq, tk, tbias, q, k, v, bias, causal, scale)
    total = None
    if ds is not None:
        pds = p * ds
        dp = pds - p * _sum(pds, -1, keepdims=True)
        total = matmul(dp, v)
    if tv is not None:
        t = matmul(p, tv)
        total = t if total is None else total + t
    return total


def _batch_rule(args, axes, **params):
    """Batch axis first; per-example batch dimensions right-aligned (unbatched inputs
    get a leading 1), so the kernel's broadcasting over leading axes lines them up."""
    size = next(a.shape[ax] for a, ax in zip(args, axes) if ax is not None)
    rank = max(a.ndim - (ax is not None) for a, ax in zip(args, axes))
    fixed = []
    for a, ax in zip(args, axes):
        if ax is None:
            a = _reshape(a, (1,) * (rank + 1 - a.ndim) + a.shape)
        else:
            a = moveaxis(a, ax, 0)
            a = _reshape(a, (a.shape[0],) + (1,) * (rank - (a.ndim - 1)) + a.shape[1:])
        fixed.append(a)
    del size
    return apply(ATTENTION, tuple(fixed), params), 0


def _causal_onnx(g, L, S, offset, dtype):
    """The additive causal mask ``(L, S)``: -inf where key j > query i + offset."""
    if g.static((L, S)):
        blocked = _causal_block(0, L, 0, S, offset)
        return g.constant(np.where(blocked, -np.inf, 0).astype(dtype))
    zero, one = g.scalar(0, np.int64), g.scalar(1, np.int64)
    rows = g.node("Range", [zero, g.squeeze(g.shape_tensor([L]), [0]), one])
    cols = g.node("Range", [zero, g.squeeze(g.shape_tensor([S]), [0]), one])
    limit = g.unsqueeze(g.node("Add", [rows, g.scalar(offset, np.int64)]), [1])
    blocked = g.node("Greater", [g.unsqueeze(cols, [0]), limit])
    return g.node("Where", [blocked, g.scalar(-np.inf, dtype), g.scalar(0, dtype)])


def _attention_onnx(g, inputs, outputs, *, scale, causal, impl, block_q, block_k):
    q, k, v = inputs[:3]
    dtype = g.dtype(outputs[0])
    nk = g.ndim(k)
    kt = g.transpose(k, list(range(nk - 2)) + [nk - 1, nk - 2])
    s = g.matmul(g.node("Mul", [q, g.scalar(scale, dtype)]), kt)
    may_block = len(inputs) > 3 or (causal is not None and causal < 0)
    if len(inputs) > 3:
        s = g.node("Add", [s, inputs[3]])
    if causal is not None:
        L, S = g.shape(q)[-2], g.shape(k)[-2]
        mask = g.cached(("causal", repr(L), repr(S), causal, dtype.str),
                        lambda: _causal_onnx(g, L, S, causal, dtype))
        s = g.node("Add", [s, mask])
    if not may_block:                        # every query sees at least key 0
        p = g.node("Softmax", [s], axis=-1)
    else:                                    # rows that see no key give zeros, not NaN
        m = g.reduce("ReduceMax", s, [-1], True)
        finite = g.node("Not", [g.node("IsInf", [m])])
        m = g.node("Where", [finite, m, g.scalar(0, dtype)])
        e = g.node("Exp", [g.node("Sub", [s, m])])
        total = g.reduce("ReduceSum", e, [-1], True)
        empty = g.node("Equal", [total, g.scalar(0, dtype)])
        p = g.node("Div", [e, g.node("Where", [empty, g.scalar(1, dtype), total])])
    g.matmul(p, v, outputs[0])


ATTENTION = Primitive("attention", _attention_forward, vjp_all=_vjp_all, vjp_kernel=_vjp_kernel,
                      jvp_all=_jvp_all,
                      save=None, residuals=True, batch=_batch_rule, onnx=_attention_onnx)


# ----------------------------------------------------------------------------- public
def attention(q, k, v, bias=None, causal=None, scale=None, implementation="auto",
              block_size=None) -> Tensor:
    """Fused attention on tensors already checked by the caller (see the module text).

    ``implementation``: ``"plain"``, ``"flash"`` or ``"auto"`` (flash on the CPU with the
    compiled loops, which recompute a block as fast as they would read it back, or when
    the score matrices would hold more than ``FLASH_THRESHOLD`` entries; plain when the
    bias needs a gradient, which the flash kernel does not produce). ``block_size``:
    ``(queries, keys)`` per block of the flash kernel (default: chosen from the sizes).
    """
    L, S = q.shape[-2], k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    bias_grad = bias is not None and bias.requires_grad
    if implementation == "auto":
        heads = int(np.prod(_batch_shape(q.shape, k.shape, v.shape,
                                         *(() if bias is None else (bias.shape,))),
                            dtype=np.int64))
        large = heads * L * S > FLASH_THRESHOLD
        compiled_cpu = compiled.ENABLED and q.device == "cpu" and q.dtype in (np.float32,
                                                                                np.float64)
        implementation = "flash" if large or compiled_cpu else "plain"
    if implementation not in ("plain", "flash"):
        raise ValueError(f"attention: implementation must be 'auto', 'plain' or 'flash', "
                         f"got {implementation!r}")
    if bias_grad and implementation == "flash":
        implementation = "plain"
    bq, bk = (block_size if block_size is not None else (None, None))
    params = {"scale": float(scale), "causal": None if causal is None else int(causal),
              "impl": implementation, "block_q": bq, "block_k": bk}
    inputs = (q, k, v) if bias is None else (q, k, v, bias)
    return apply(ATTENTION, inputs, params)


__all__ = ["attention", "attention_reference", "causal_mask", "ATTENTION", "FLASH_THRESHOLD"]
