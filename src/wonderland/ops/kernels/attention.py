"""Attention as one compiled loop per (batch, head): the blocked (flash) algorithm with
the products, the mask, the running maximum, the exponentials and the sums of a block in
one kernel, and no Python between blocks.

For a head's queries ``q (L, E)`` (already multiplied by the scale), keys ``k (S, E)``
and values ``v (S, Ev)``, the forward loop takes ``bq`` queries at a time and walks
their visible keys ``bk`` at a time:

* ``s = q_blk k_blkᵀ`` (one BLAS product into a buffer that stays in cache);
* per row: the bias added, the causal limit applied (keys past it are never computed
  when a whole block lies past it, and are zeros inside the block that crosses it), the
  row maximum, ``p = exp(s − m)`` and its sum; a row's earlier output and sum are scaled
  by ``exp(m_old − m_new)`` when a later block raises its maximum (the online softmax);
* ``acc += p v_blk`` (one BLAS product).

Each query row ends with ``o = acc / l`` and its log-sum-exp ``m + log l``. With
``keep`` (the plain algorithm, one key block holding every key) the normalised
probabilities are also written out for the backward pass.

The backward loop recomputes ``p = exp(s − lse)`` block by block (or reads the kept
probabilities), then ``dV += pᵀ dO``, ``dP = dO Vᵀ``, ``dS = p ⊙ (dP − D)`` with ``D =
rowsum(dO ⊙ O)``, ``dQ += dS K`` and ``dK += dSᵀ Q``: five products and two fused
elementwise passes per block.

The heads are read where they lie: every (batch, head, rows, features) array comes as
its memory and the strides of its (batch, head, row) axes, so a multi-head layer's
heads, a transposed view of ``(batch, length, heads, features)``, need no copy before
the call. Inside the loop a head's keys and values, and a block's queries (and ``dO``,
``O``), are copied into contiguous buffers that stay in cache, on the thread that uses
them; outputs and gradients are written in place through the same strides. A thread's
memory is a block plus one head's keys and values.

The row reductions (maximum, sum) keep eight partial results, which the compiler turns
into vector instructions; float32 exponentials use the vectorised ``exp`` of
:mod:`.special` (``fast``), float64 the C library's. NaN in a score propagates to its
row's output, as in the NumPy reference (:mod:`wonderland.ops.attention`), which the
tests compare these loops with.
"""

from __future__ import annotations

import numpy as np

from ...backend.compiled import kernel, kernel_fast
from .special import _exp_neg

_NEG = np.float32(-np.inf)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


# ----------------------------------------------------------------------------- heads in and out
@kernel_fast(inline=True)
def _load(flat, layout, a1, a2, row0, rows, cols, scale, buf):
    """Rows ``row0:row0+rows`` of head ``(a1, a2)`` of an array given as its memory
    ``flat`` and the element strides ``layout`` of its (n1, n2, row) axes (rows
    contiguous), times ``scale``, into the contiguous ``buf[:rows, :cols]``."""
    base = layout[0] * a1 + layout[1] * a2 + layout[2] * row0
    for i in range(rows):
        at = base + layout[2] * i
        for e in range(cols):
            buf[i, e] = flat[at + e] * scale


@kernel_fast(inline=True)
def _load_kv(k, k_at, v, v_at, a1, a2, S, E, Ev, kh, vh):
    """Head ``(a1, a2)``'s keys and values into their buffers (every query block reads
    them; the queries are loaded a block at a time)."""
    _load(k, k_at, a1, a2, 0, S, E, _ONE, kh)
    _load(v, v_at, a1, a2, 0, S, Ev, _ONE, vh)


@kernel_fast(inline=True)
def _zero_rows(flat, base, step, rows, cols):
    """Rows ``0:rows`` of a head that starts at ``flat[base]``, ``step`` apart, set to 0."""
    for i in range(rows):
        for e in range(cols):
            flat[base + step * i + e] = 0


# ----------------------------------------------------------------------------- row helpers
@kernel_fast(inline=True)
def _row_max(x, n):
    """Largest of ``x[:n]`` (-inf for none; NaN is skipped, the caller's exp keeps it)."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = _NEG
    n8 = n - n % 8
    for j in range(0, n8, 8):
        m0 = max(m0, x[j])
        m1 = max(m1, x[j + 1])
        m2 = max(m2, x[j + 2])
        m3 = max(m3, x[j + 3])
        m4 = max(m4, x[j + 4])
        m5 = max(m5, x[j + 5])
        m6 = max(m6, x[j + 6])
        m7 = max(m7, x[j + 7])
    m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for j in range(n8, n):
        m = max(m, x[j])
    return m


@kernel_fast(inline=True)
def _row_sum(x, n):
    """``x[:n].sum()`` with eight partial sums."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = _ZERO
    n8 = n - n % 8
    for j in range(0, n8, 8):
        s0 += x[j]
        s1 += x[j + 1]
        s2 += x[j + 2]
        s3 += x[j + 3]
        s4 += x[j + 4]
        s5 += x[j + 5]
        s6 += x[j + 6]
        s7 += x[j + 7]
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for j in range(n8, n):
        s += x[j]
    return s


@kernel_fast(inline=True)
def _row_dot(x, y, n):
    """``Σ x[:n] y[:n]``."""
    t = _ZERO
    for e in range(n):
        t += x[e] * y[e]
    return t


@kernel_fast(inline=True)
def _has_nan(x, n):
    for j in range(n):
        if x[j] != x[j]:
            return True
    return False


@kernel_fast(inline=True)
def _exp_shifted(x, n, m, fast):
    """``x[:n] = exp(x[:n] − m)`` in place (``m`` finite); NaN stays NaN."""
    if fast:
        for j in range(n):
            y = x[j] - m
            e = _exp_neg(y)
            x[j] = e if y == y else y
    else:
        for j in range(n):
            x[j] = np.exp(x[j] - m)


@kernel_fast(inline=True)
def _add_bias(s, a, c, bias, bh, bi, j0, bcols):
    """Row ``a`` of the block (``c`` keys from ``j0``) plus the bias row ``bias[bh, bi]``
    (one column broadcast when ``bcols`` is false)."""
    if bcols:
        for j in range(c):
            s[a, j] += bias[bh, bi, j0 + j]
    else:
        b = bias[bh, bi, 0]
        for j in range(c):
            s[a, j] += b


@kernel_fast(inline=True)
def _visible(i, j0, c, causal, offset):
    """How many of the block's ``c`` keys from ``j0`` query ``i`` may see."""
    if not causal:
        return c
    return max(0, min(c, i + offset + 1 - j0))


# ----------------------------------------------------------------------------- forward
@kernel_fast(inline=True)
def _fold_scores(s, i0, j0, bias, bh, has_bias, causal, offset, fast, m, l, acc):
    """The online softmax over one block of scores ``s`` (rows from query ``i0``, keys
    from ``j0``): each row becomes ``exp(s − m_new)`` (zeros past what it may see), its
    running maximum ``m`` and sum ``l`` take the block in, and its output ``acc`` is
    rescaled when the maximum rose."""
    r, c = s.shape
    brows = bias.shape[1] > 1
    bcols = bias.shape[2] > 1
    for a in range(r):
        i = i0 + a
        row = s[a]
        if has_bias:
            _add_bias(s, a, c, bias, bh, i if brows else 0, j0, bcols)
        n = _visible(i, j0, c, causal, offset)
        row[n:] = 0
        bm = _row_max(row, n)
        if bm == -np.inf:                            # nothing visible, or only NaN
            if _has_nan(row, n):
                bm = _ZERO
            else:
                row[:n] = 0
                continue
        m_new = max(m[a], bm)
        _exp_shifted(row, n, m_new, fast)
        total = _row_sum(row, n)
        if m[a] > -np.inf and m_new > m[a]:
            alpha = np.exp(m[a] - m_new)
            l[a] *= alpha
            for e in range(acc.shape[1]):
                acc[a, e] *= alpha
        l[a] += total
        m[a] = m_new


@kernel_fast(inline=True)
def _keep_probabilities(s, l, i0, j0, probs):
    """Normalise the block's rows (the plain algorithm's single key block) and write them
    to the head's ``probs`` (L, S), zeros for the keys after the block."""
    r, c = s.shape
    for a in range(r):
        inv = 1 / l[a] if l[a] != 0 else _ZERO
        for j in range(c):
            s[a, j] *= inv
            probs[i0 + a, j0 + j] = s[a, j]
        probs[i0 + a, j0 + c:] = 0


@kernel_fast(inline=True)
def _finish_rows(acc, l, m, normalised, i0, r, out, base, step, lse):
    """``out = acc / l`` and ``lse = m + log l`` for ``r`` rows from query ``i0`` of a
    head whose output rows start at ``out[base]``, ``step`` apart, and whose ``lse`` is
    (L,); a row that saw nothing gets zeros and ``lse = +inf``; NaN propagates."""
    for a in range(r):
        at = base + step * (i0 + a)
        if l[a] != 0:
            inv = _ONE if normalised else 1 / l[a]
            for e in range(acc.shape[1]):
                out[at + e] = acc[a, e] * inv
            lse[i0 + a] = m[a] + np.log(l[a])
        else:
            for e in range(acc.shape[1]):
                out[at + e] = 0
            lse[i0 + a] = np.inf


def _forward(q, q_at, k, k_at, v, v_at, scale, sizes, bias, bias_head, has_bias, causal,
             offset, bq, bk, fast, keep, h0, h1, out, out_at, lse, probs):
    """Heads ``h0:h1`` of ``n = n1 · n2``. ``q``, ``k``, ``v`` and ``out`` are given as
    their memory and the element strides of their (n1, n2, row) axes (``*_at``; any
    layout whose rows are contiguous, such as a multi-head layer's heads, with no copy
    outside); a head's keys and values and a block's queries (times ``scale``) are copied
    into contiguous buffers here.
    ``sizes`` = (n2, L, S, E, Ev). Writes ``out``, ``lse`` (n, L) and, with ``keep``,
    ``probs`` (n, L, S); ``bk`` must cover every key then."""
    n2, L, S, E, Ev = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4]
    dtype = lse.dtype
    qb, kh, vh = np.empty((bq, E), dtype), np.empty((S, E), dtype), np.empty((S, Ev), dtype)
    buf = np.empty(bq * bk, dtype)
    acc = np.empty((bq, Ev), dtype)
    pv = np.empty((bq, Ev), dtype)
    m = np.empty(bq, dtype)
    l = np.empty(bq, dtype)
    for h in range(h0, h1):
        a1, a2 = h // n2, h % n2
        _load_kv(k, k_at, v, v_at, a1, a2, S, E, Ev, kh, vh)
        o_base = out_at[0] * a1 + out_at[1] * a2
        for i0 in range(0, L, bq):
            i1 = min(L, i0 + bq)
            r = i1 - i0
            _load(q, q_at, a1, a2, i0, r, E, scale, qb)
            limit = S if not causal else max(0, min(S, i1 + offset))
            m[:r] = -np.inf
            l[:r] = 0
            acc[:r] = 0
            for j0 in range(0, limit, bk):
                j1 = min(limit, j0 + bk)
                s = buf[:r * (j1 - j0)].reshape((r, j1 - j0))
                np.dot(qb[:r], kh[j0:j1].T, s)
                _fold_scores(s, i0, j0, bias, bias_head[h], has_bias, causal, offset, fast,
                             m, l, acc)
                if keep:
                    _keep_probabilities(s, l, i0, j0, probs[h])
                np.dot(s, vh[j0:j1], pv[:r])
                for a in range(r):
                    for e in range(Ev):
                        acc[a, e] += pv[a, e]
            if keep and limit == 0:
                probs[h, i0:i1] = 0
            _finish_rows(acc, l, m, keep, i0, r, out, o_base, out_at[2], lse[h])


# ----------------------------------------------------------------------------- backward
@kernel_fast(inline=True)
def _recompute_probabilities(p, lse, i0, j0, bias, bh, has_bias, causal, offset, fast):
    """The block's scores ``p`` turned back into probabilities ``exp(s − lse)`` (``lse``:
    the head's, (L,))."""
    r, c = p.shape
    brows = bias.shape[1] > 1
    bcols = bias.shape[2] > 1
    for a in range(r):
        i = i0 + a
        row = p[a]
        if has_bias:
            _add_bias(p, a, c, bias, bh, i if brows else 0, j0, bcols)
        n = _visible(i, j0, c, causal, offset)
        if lse[i] == np.inf:                         # the row saw nothing
            n = 0
        _exp_shifted(row, n, lse[i], fast)
        row[n:] = 0


@kernel_fast(inline=True)
def _softmax_grad(p, ds, D):
    """``dS = P ⊙ (dP − D)`` in place of ``ds`` (which holds ``dP``), row by row."""
    r, c = p.shape
    for a in range(r):
        da = D[a]
        for j in range(c):
            ds[a, j] = p[a, j] * (ds[a, j] - da)


@kernel_fast(inline=True)
def _write_rows(src, r, cols, scale, dst, base, step, i0):
    """``src[:r] · scale`` into rows ``i0:i0+r`` of the head that starts at ``dst[base]``."""
    for a in range(r):
        at = base + step * (i0 + a)
        for e in range(cols):
            dst[at + e] = src[a, e] * scale


@kernel_fast(inline=True)
def _add_rows(dst, base, step, j0, src, c):
    """Rows ``j0:j0+c`` of the head that starts at ``dst[base]`` (rows ``step`` apart)
    ``+= src[:c]``."""
    for j in range(c):
        at = base + step * (j0 + j)
        for e in range(src.shape[1]):
            dst[at + e] += src[j, e]


def _backward(q, q_at, k, k_at, v, v_at, g, g_at, o, o_at, sizes, lse, probs, bias,
              bias_head, has_bias, causal, offset, bq, bk, fast, use_probs, want_dbias,
              scale, h0, h1, dq, dq_at, dk, dk_at, dv, dv_at, dbias):
    """Heads ``h0:h1``, every (n1, n2, rows, features) array given as in ``_forward``:
    ``dq``, ``dk``, ``dv`` written, ``dbias`` (n, L, S) with ``want_dbias``."""
    n2, L, S, E, Ev = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4]
    dtype = lse.dtype
    qb, kh, vh = np.empty((bq, E), dtype), np.empty((S, E), dtype), np.empty((S, Ev), dtype)
    gb, ob = np.empty((bq, Ev), dtype), np.empty((bq, Ev), dtype)
    pbuf = np.empty(bq * bk, dtype)
    tbuf = np.empty(bq * bk, dtype)
    dvb = np.empty((bk, Ev), dtype)
    dkb = np.empty((bk, E), dtype)
    dqb = np.empty((bq, E), dtype)
    dqa = np.empty((bq, E), dtype)
    D = np.empty(bq, dtype)
    for h in range(h0, h1):
        a1, a2 = h // n2, h % n2
        _load_kv(k, k_at, v, v_at, a1, a2, S, E, Ev, kh, vh)
        dq0 = dq_at[0] * a1 + dq_at[1] * a2
        dk0 = dk_at[0] * a1 + dk_at[1] * a2
        dv0 = dv_at[0] * a1 + dv_at[1] * a2
        _zero_rows(dk, dk0, dk_at[2], S, E)
        _zero_rows(dv, dv0, dv_at[2], S, Ev)
        lseh = lse[h] if not use_probs else lse[0]
        for i0 in range(0, L, bq):
            i1 = min(L, i0 + bq)
            r = i1 - i0
            limit = S if not causal else max(0, min(S, i1 + offset))
            _load(q, q_at, a1, a2, i0, r, E, scale, qb)
            _load(g, g_at, a1, a2, i0, r, Ev, _ONE, gb)
            _load(o, o_at, a1, a2, i0, r, Ev, _ONE, ob)
            for a in range(r):                       # D = rowsum(dO ⊙ O)
                D[a] = _row_dot(gb[a], ob[a], Ev)
            dqa[:r] = 0
            if want_dbias:
                dbias[h, i0:i1, limit:] = 0
            for j0 in range(0, limit, bk):
                j1 = min(limit, j0 + bk)
                c = j1 - j0
                p = pbuf[:r * c].reshape((r, c))
                if use_probs:
                    p[:, :] = probs[h, i0:i1, j0:j1]
                else:
                    np.dot(qb[:r], kh[j0:j1].T, p)
                    _recompute_probabilities(p, lseh, i0, j0, bias, bias_head[h], has_bias,
                                             causal, offset, fast)
                ds = tbuf[:r * c].reshape((r, c))
                np.dot(p.T, gb[:r], dvb[:c])
                np.dot(gb[:r], vh[j0:j1].T, ds)
                _softmax_grad(p, ds, D)
                if want_dbias:
                    dbias[h, i0:i1, j0:j1] = ds
                np.dot(ds, kh[j0:j1], dqb[:r])
                np.dot(ds.T, qb[:r], dkb[:c])
                _add_rows(dv, dv0, dv_at[2], j0, dvb, c)
                _add_rows(dk, dk0, dk_at[2], j0, dkb, c)
                dqa[:r] += dqb[:r]
            _write_rows(dqa, r, E, scale, dq, dq0, dq_at[2], i0)


attention_forward = {True: kernel_fast(_forward), False: kernel(_forward)}
attention_backward = {True: kernel_fast(_backward), False: kernel(_backward)}

__all__ = ["attention_forward", "attention_backward"]
