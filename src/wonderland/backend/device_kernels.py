"""Array-library versions of the NumPy-only kernels, for accelerator backends.

The CPU kernels of convolution and pooling (``ops/conv.py``, ``ops/pool.py``) copy
windows chunk by chunk into small buffers on the library's thread pool and call
compiled loops: that is the fast way on a CPU, and it only exists for NumPy. These
versions do the same arithmetic with whole-array operations of whatever namespace the
arrays belong to (``B.ns(x)``: CuPy on a GPU), which is the fast way on a device:

* convolution: im2col through a strided window view (``as_strided``), then one batched
  matrix product per chunk of images (a few hundred MB of columns at most);
* the transposed convolution: the columns ``g · Wᵀ`` added back offset by offset
  (col2im), one strided slice-add per kernel offset;
* the kernel correlation: ``colsᵀ · g``;
* max pooling: one comparison pass per kernel offset over strided slices (no window is
  copied), keeping the first maximum, NaN winning and padding never chosen, exactly the
  rules of the CPU kernels.

Each function has the signature of the NumPy kernel it replaces, which names it as its
device version (``numpy_kernel(fn, device=conv_forward)``). The tests run them on a stand-in device backend whose arrays
refuse to meet CPU arrays (``backend/fake_device.py``) and compare them with the NumPy
kernels; ``benchmarks/gpu.py`` runs them on a real GPU.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import backend_of, ns

_MAX_COLUMN_ELEMENTS = 1 << 26        # columns per chunk of images (256 MB in float32)


def _out_size(size, k, stride, dilation):
    return (size - dilation * (k - 1) - 1) // stride + 1


def _windows(x, kernel, stride, dilation):
    """A read-only strided view ``(b, *O, *k, c)`` of every window of ``x``."""
    nd = len(kernel)
    b, c = x.shape[0], x.shape[-1]
    outs = [_out_size(n, k, s, d) for n, k, s, d in zip(x.shape[1:1 + nd], kernel, stride, dilation)]
    st = x.strides
    shape = (b, *outs, *kernel, c)
    strides = (st[0], *(st[1 + i] * stride[i] for i in range(nd)),
               *(st[1 + i] * dilation[i] for i in range(nd)), st[-1])
    return backend_of(x).as_strided(x, shape, strides), outs


def _image_chunks(b, per_image):
    step = max(1, _MAX_COLUMN_ELEMENTS // max(1, per_image))
    return [(s, min(s + step, b)) for s in range(0, b, step)]


def _times_kernel(xp, cols, w, groups):
    """``cols (rows, K·c_in)`` times the kernel ``w (*k, c_in/G, c_out)``."""
    cout = w.shape[-1]
    if groups == 1:
        return xp.matmul(cols, w.reshape(-1, cout))
    rows = cols.shape[0]
    k = math.prod(w.shape[:-2])
    cg, og = w.shape[-2], cout // groups
    c = cols.reshape(rows, k, groups, cg).transpose(2, 0, 1, 3).reshape(groups, rows, k * cg)
    wg = w.reshape(k, cg, groups, og).transpose(2, 0, 1, 3).reshape(groups, k * cg, og)
    return xp.matmul(c, wg).transpose(1, 0, 2).reshape(rows, cout)


def conv_forward(x, w, *, stride, dilation, groups):
    xp = ns(x)
    nd = len(stride)
    kernel = w.shape[:nd]
    dtype = np.result_type(x.dtype, w.dtype)
    w = w.astype(dtype, copy=False)
    if groups == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in stride):
        out = xp.matmul(x.reshape(-1, x.shape[-1]).astype(dtype, copy=False),
                        w.reshape(w.shape[-2], w.shape[-1]))
        return out.reshape(x.shape[:-1] + (w.shape[-1],))
    x = xp.ascontiguousarray(x.astype(dtype, copy=False))
    view, outs = _windows(x, kernel, stride, dilation)
    b, cout = x.shape[0], w.shape[-1]
    per_image = math.prod(outs) * math.prod(kernel) * x.shape[-1]
    out = xp.empty((b, *outs, cout), dtype=dtype)
    if out.size == 0:
        return out
    for lo, hi in _image_chunks(b, per_image):
        cols = xp.ascontiguousarray(view[lo:hi]).reshape((hi - lo) * math.prod(outs), -1)
        out[lo:hi] = _times_kernel(xp, cols, w, groups).reshape((hi - lo, *outs, cout))
    return out


def conv_bias_forward(x, w, b, *, stride, dilation, groups):
    out = conv_forward(x, w, stride=stride, dilation=dilation, groups=groups)
    out += b
    return out


def conv_weight_forward(x, g, *, stride, dilation, groups, kernel):
    xp = ns(x)
    nd = len(stride)
    dtype = np.result_type(x.dtype, g.dtype)
    cin, cout = x.shape[-1], g.shape[-1]
    if groups == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in stride):
        prod = xp.matmul(x.reshape(-1, cin).T.astype(dtype, copy=False),
                         g.reshape(-1, cout).astype(dtype, copy=False))
        return prod.reshape(*kernel, cin, cout)
    x = xp.ascontiguousarray(x.astype(dtype, copy=False))
    g = xp.ascontiguousarray(g.astype(dtype, copy=False))
    view, outs = _windows(x, kernel, stride, dilation)
    b = x.shape[0]
    k = math.prod(kernel)
    cg, og = cin // groups, cout // groups
    p = math.prod(outs)
    total = xp.zeros((groups, k * cg, og) if groups > 1 else (k * cin, cout), dtype=dtype)
    for lo, hi in _image_chunks(b, p * k * cin):
        cols = xp.ascontiguousarray(view[lo:hi]).reshape((hi - lo) * p, k * cin)
        rows = g[lo:hi].reshape((hi - lo) * p, cout)
        if groups == 1:
            total += xp.matmul(cols.T, rows)
        else:
            c = cols.reshape(-1, k, groups, cg).transpose(2, 1, 3, 0).reshape(groups, k * cg, -1)
            total += xp.matmul(c, rows.reshape(-1, groups, og).transpose(1, 0, 2))
    if groups == 1:
        return total.reshape(*kernel, cin, cout)
    return total.reshape(groups, *kernel, cg, og).transpose(
        *range(1, nd + 1), nd + 1, 0, nd + 2).reshape(*kernel, cg, cout)


def conv_transpose_forward(g, w, *, stride, dilation, groups, in_shape):
    xp = ns(g)
    nd = len(stride)
    kernel = w.shape[:nd]
    dtype = np.result_type(g.dtype, w.dtype)
    cin = in_shape[-1]
    cout = g.shape[-1]
    w = w.astype(dtype, copy=False)
    if groups == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in stride):
        prod = xp.matmul(g.reshape(-1, cout).astype(dtype, copy=False),
                         w.reshape(w.shape[-2], cout).T)
        return prod.reshape(in_shape)
    b, outs = g.shape[0], g.shape[1:1 + nd]
    k = math.prod(kernel)
    cg, og = cin // groups, cout // groups
    p = math.prod(outs)
    out = xp.zeros((b, *in_shape[1:1 + nd], cin), dtype=dtype)
    if out.size == 0 or g.size == 0:
        return out
    if groups == 1:
        wt = w.reshape(k * cin, cout).T                                # (c_out, K·c_in)
    else:
        wt = w.reshape(k, cg, groups, og).transpose(2, 3, 0, 1).reshape(groups, og, k * cg)
    offsets = list(itertools.product(*[range(n) for n in kernel]))
    for lo, hi in _image_chunks(b, p * k * cin):
        rows = g[lo:hi].reshape((hi - lo) * p, cout).astype(dtype, copy=False)
        if groups == 1:
            cols = xp.matmul(rows, wt).reshape(hi - lo, *outs, k, cin)
        else:
            cols = xp.matmul(rows.reshape(-1, groups, og).transpose(1, 0, 2), wt)
            cols = cols.reshape(groups, -1, k, cg).transpose(1, 2, 0, 3).reshape(
                hi - lo, *outs, k, cin)
        region = out[lo:hi]
        for j, offset in enumerate(offsets):
            target = (slice(None),) + tuple(
                slice(o * d, o * d + s * (n - 1) + 1, s)
                for o, d, s, n in zip(offset, dilation, stride, outs)) + (slice(None),)
            region[target] += cols[..., j, :]
    return out


# ----------------------------------------------------------------------------- pooling
def _offset_slices(shape, kernel, stride, dilation):
    nd = len(kernel)
    outs = [_out_size(n, k, s, d) for n, k, s, d in zip(shape[1:1 + nd], kernel, stride, dilation)]
    return [(slice(None),) + tuple(slice(o * d, o * d + s * (n - 1) + 1, s)
                                   for o, d, s, n in zip(offset, dilation, stride, outs))
            + (slice(None),)
            for offset in itertools.product(*[range(n) for n in kernel])]


def max_windows(x, kernel, stride, dilation, pads=()):
    """``(maxima, offsets)`` of every window: the rules of ``ops.pool.max_windows`` (the
    first maximum wins ties, a NaN wins, padding is never chosen)."""
    xp = ns(x)
    slices = _offset_slices(x.shape, kernel, stride, dilation)
    valid = None
    if pads and any(a or b for a, b in pads):
        valid = xp.zeros(x.shape, dtype=bool)
        valid[(slice(None),) + tuple(slice(a, n - b) for (a, b), n in
                                     zip(pads, x.shape[1:-1]))] = True
    best = x[slices[0]].copy()
    dtype = np.int8 if len(slices) < 128 else np.int32
    idx = xp.zeros(best.shape, dtype=dtype)
    nan = bool(xp.isnan(x).any()) if x.dtype.kind == "f" else False
    chosen = None if valid is None else valid[slices[0]].copy()
    for k, sl in enumerate(slices[1:], 1):
        view = x[sl]
        better = view > best
        if nan:
            better |= xp.isnan(view) & ~xp.isnan(best)
        if chosen is not None:
            ok = valid[sl]
            better = ok & (better | ~chosen)
            chosen |= ok
        idx = xp.where(better, dtype(k), idx)
        best = xp.where(better, view, best)
    return best, idx


def max_pool_forward(x, *, kernel, stride, dilation, pads):
    values, idx = max_windows(x, kernel, stride, dilation, pads)
    return values, (idx,)


def argmax_forward(x, *, kernel, stride, dilation, pads):
    return max_windows(x, kernel, stride, dilation, pads)[1]


def gather_forward(x, idx, *, kernel, stride, dilation):
    xp = ns(x)
    out = xp.zeros(idx.shape, dtype=x.dtype)
    for k, sl in enumerate(_offset_slices(x.shape, kernel, stride, dilation)):
        out = xp.where(idx == k, x[sl], out)          # a selection: -inf and NaN stay exact
    return out


def scatter_forward(g, idx, *, kernel, stride, dilation, in_shape):
    xp = ns(g)
    out = xp.zeros(in_shape, dtype=g.dtype)
    zero = xp.zeros((), dtype=g.dtype)
    for k, sl in enumerate(_offset_slices(in_shape, kernel, stride, dilation)):
        out[sl] += xp.where(idx == k, g, zero)
    return out


# ----------------------------------------------------------------------------- linear algebra
def solve_triangular_forward(a, b, *, lower, transpose):
    xp = ns(a)
    solve = backend_of(a).solve_triangular
    if a.ndim == 2:
        return solve(a, b, lower=lower, trans=1 if transpose else 0)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a_b = xp.broadcast_to(a, batch + a.shape[-2:])
    b_b = xp.broadcast_to(b, batch + b.shape[-2:])
    out = xp.empty(batch + b.shape[-2:], dtype=np.result_type(a.dtype, b.dtype))
    for i in np.ndindex(*batch):
        out[i] = solve(a_b[i], b_b[i], lower=lower, trans=1 if transpose else 0)
    return out
