"""Max pooling as a pair of linear primitives around a fixed choice of positions.

``max_pool`` picks, in every window, the position of the largest value (the first one
on ties, as PyTorch does), then *gathers* the input there. Gathering at fixed positions
is linear, and its transpose *scatters* a cotangent back to those positions, so
``window_gather`` and ``window_scatter`` are each other's VJP; the JVP of max pooling
gathers the tangent. (Average pooling needs no primitive of its own: it is a depthwise
convolution with a constant kernel.)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..core.primitive import Primitive, apply
from .conv import out_size


def _windows(x, kernel, stride, dilation):
    """Read-only view ``(b, *O, *k, c)`` of the windows of ``x``."""
    nd = len(kernel)
    st = x.strides
    outs = [out_size(n, k, s, d) for n, k, s, d in zip(x.shape[1:1 + nd], kernel, stride, dilation)]
    shape = (x.shape[0], *outs, *kernel, x.shape[-1])
    strides = (st[0], *(st[1 + i] * stride[i] for i in range(nd)),
               *(st[1 + i] * dilation[i] for i in range(nd)), st[-1])
    return as_strided(x, shape, strides, writeable=False), outs


def argmax_windows(x, kernel, stride, dilation):
    """For every window and channel, the flat kernel offset of its (first) maximum."""
    view, outs = _windows(x, kernel, stride, dilation)
    nd = len(kernel)
    flat = view.reshape(x.shape[0], *outs, int(np.prod(kernel)), x.shape[-1])
    return flat.argmax(axis=1 + nd)


def _gather_forward(x, *, idx, kernel, stride, dilation):
    view, outs = _windows(x, kernel, stride, dilation)
    nd = len(kernel)
    flat = view.reshape(x.shape[0], *outs, int(np.prod(kernel)), x.shape[-1])
    return np.take_along_axis(flat, idx[..., None, :], axis=1 + nd)[..., 0, :]


def _scatter_forward(g, *, idx, kernel, stride, dilation, in_shape):
    nd = len(kernel)
    out = np.zeros(in_shape, dtype=g.dtype)
    outs = g.shape[1:1 + nd]
    for k, offset in enumerate(np.ndindex(*kernel)):
        target = (slice(None),) + tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, dilation, stride, outs)) + (slice(None),)
        out[target] += np.where(idx == k, g, 0)
    return out


def window_gather(x, idx, kernel, stride, dilation):
    return apply(_gather, (x,), {"idx": idx, "kernel": kernel, "stride": stride, "dilation": dilation})


def window_scatter(g, idx, kernel, stride, dilation, in_shape):
    return apply(_scatter, (g,), {"idx": idx, "kernel": kernel, "stride": stride,
                                  "dilation": dilation, "in_shape": tuple(in_shape)})


_gather = Primitive(
    "window_gather", _gather_forward,
    vjp=lambda g, out, x, *, idx, kernel, stride, dilation:
        window_scatter(g, idx, kernel, stride, dilation, x.shape),
    linear=True)

_scatter = Primitive(
    "window_scatter", _scatter_forward,
    vjp=lambda h, out, g, *, idx, kernel, stride, dilation, in_shape:
        window_gather(h, idx, kernel, stride, dilation),
    linear=True)
