"""Max pooling as a pair of linear primitives around a fixed choice of positions.

(The JVP of ``window_gather`` is written out rather than marked linear because the
forward may be handed its precomputed maxima, which must not be reused for tangents.)

``max_pool`` picks, in every window, the kernel offset of the largest value (the first
one on ties, as PyTorch does), then *gathers* the input there. Gathering at fixed
positions is linear, and its transpose *scatters* a cotangent back to those positions,
so ``window_gather`` and ``window_scatter`` are each other's VJP; the JVP of max pooling
gathers the tangent. (Average pooling needs no primitive of its own: it is a depthwise
convolution with a constant kernel.)

Everything works offset by offset: for each of the k kernel offsets, the strided slice
of the input that offset reads in every window is a view, so a pass costs one
elementwise operation on an output-sized array and no window is ever copied.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..core.primitive import Primitive, apply
from .conv import out_size


def _offset_slices(shape, kernel, stride, dilation):
    """For each kernel offset, the index of the input elements it reads in all windows."""
    nd = len(kernel)
    outs = [out_size(n, k, s, d) for n, k, s, d in zip(shape[1:1 + nd], kernel, stride, dilation)]
    slices = []
    for offset in np.ndindex(*kernel):
        slices.append((slice(None),) + tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, dilation, stride, outs)) + (slice(None),))
    return slices, outs


def max_windows(x, kernel, stride, dilation, valid=None):
    """``(maxima, offsets)``: every window's maximum per channel and the kernel offset of
    its first occurrence (small integers, as the index of a k-way choice), following
    PyTorch: a NaN is the maximum of its window, and positions where ``valid`` is false
    (padding) are never chosen."""
    slices, _ = _offset_slices(x.shape, kernel, stride, dilation)
    best = x[slices[0]].copy()
    dtype = np.int8 if len(slices) < 128 else np.int32
    idx = np.zeros(best.shape, dtype=dtype)
    nan = bool(np.isnan(x).any()) if x.dtype.kind == "f" else False
    chosen = None if valid is None else valid[slices[0]].copy()   # a real element chosen yet?
    for k, sl in enumerate(slices[1:], 1):
        view = x[sl]
        better = view > best                      # strict: the first maximum wins ties
        if nan:
            better |= np.isnan(view) & ~np.isnan(best)
        if chosen is not None:
            ok = valid[sl]
            better = ok & (better | ~chosen)
            chosen |= ok
        idx += better * (dtype(k) - idx)          # arithmetic, not masked assignment: faster
        np.maximum(best, view, out=best)          # propagates NaN, as PyTorch does
    return best, idx


def _gather_forward(x, *, idx, kernel, stride, dilation, values=None):
    if values is not None:                        # max pooling already has the maxima
        return values
    slices, _ = _offset_slices(x.shape, kernel, stride, dilation)
    out = np.zeros(idx.shape, dtype=x.dtype)
    for k, sl in enumerate(slices):
        out += x[sl] * (idx == k)
    return out


def _scatter_forward(g, *, idx, kernel, stride, dilation, in_shape):
    slices, _ = _offset_slices(in_shape, kernel, stride, dilation)
    out = np.zeros(in_shape, dtype=g.dtype)
    overlap = any(s < (k - 1) * d + 1 for k, s, d in zip(kernel, stride, dilation))
    for k, sl in enumerate(slices):
        if overlap:
            out[sl] += g * (idx == k)
        else:                                     # windows do not overlap: plain assignment
            np.multiply(g, idx == k, out=out[sl])
    return out


def window_gather(x, idx, kernel, stride, dilation, values=None):
    params = {"idx": idx, "kernel": kernel, "stride": stride, "dilation": dilation}
    if values is not None:
        params["values"] = values
    return apply(_gather, (x,), params)


def window_scatter(g, idx, kernel, stride, dilation, in_shape):
    return apply(_scatter, (g,), {"idx": idx, "kernel": kernel, "stride": stride,
                                  "dilation": dilation, "in_shape": tuple(in_shape)})


_gather = Primitive(
    "window_gather", B.numpy_kernel(_gather_forward), save=(),
    vjp=lambda g, out, x, *, idx, kernel, stride, dilation, values=None:
        window_scatter(g, idx, kernel, stride, dilation, x.shape),
    jvp=lambda t, out, x, *, idx, kernel, stride, dilation, values=None:
        window_gather(t, idx, kernel, stride, dilation))

_scatter = Primitive(
    "window_scatter", B.numpy_kernel(_scatter_forward), save=(),
    vjp=lambda h, out, g, *, idx, kernel, stride, dilation, in_shape:
        window_gather(h, idx, kernel, stride, dilation),
    linear=True)
