"""Max pooling: a primitive whose backward scatters to the chosen positions, and the
linear pair it is built from.

``max_pool`` picks, in every window, the kernel offset of the largest value (the first
one on ties, as PyTorch does; a NaN wins; padding is never chosen) and returns the
maxima. Its node keeps only the chosen offsets (int8 for windows of fewer than 128
elements), and its VJP *scatters* the cotangent back to them. ``window_gather(x, idx)``
gathers ``x`` at given offsets and ``window_scatter(g, idx)`` is its transpose; both are
linear, so they are each other's VJP, and the JVP of max pooling gathers the tangent at
``argmax_windows(x)`` — an operation, so every rule also runs inside ``vmap``. (Average
pooling needs no primitive of its own: it is a depthwise convolution with a constant
kernel.) Offsets are integer tensors passed as inputs, never arrays hidden in
parameters.

Everything works offset by offset: for each of the k kernel offsets, the strided slice
of the input that offset reads in every window is a view, so a pass costs one
elementwise operation on an output-sized array and no window is ever copied.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..backend import threads
from ..core.primitive import Primitive, apply
from ..core.vmap import batch_size, broadcast_batch
from ..backend import compiled, device_kernels
from .kernels import pooling
from .conv import as_3d_array, five_d, out_size


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


def _valid(shape, pads):
    """Where the padded input holds real elements (``None`` without padding)."""
    if not any(a or b for a, b in pads):
        return None
    core = tuple(n - a - b for n, (a, b) in zip(shape[1:-1], pads))
    valid = np.zeros(shape, dtype=bool)
    valid[(slice(None),) + tuple(slice(a, a + n) for (a, _), n in zip(pads, core))] = True
    return valid


def max_windows(x, kernel, stride, dilation, pads=()):
    """``(maxima, offsets)``: every window's maximum per channel and the kernel offset of
    its first occurrence (small integers, as the index of a k-way choice), following
    PyTorch: a NaN is the maximum of its window, and padded positions (``pads``, per
    spatial dimension ``(before, after)``) are never chosen."""
    valid = _valid(x.shape, pads) if pads else None
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


# ----------------------------------------------------------------------------- compiled kernels
_PARALLEL_MIN = 1 << 18    # elements below which a thread hand-off costs more than it saves


def _over_batch(kernel_fn, size, *arrays):
    """Run ``kernel_fn(*parts)`` on parts of the batch (the first axis of every array)
    on the library's pool; the kernels release the GIL and no two parts share output."""
    def work(lo, hi, lane):
        kernel_fn(*(a[lo:hi] for a in arrays))
    threads.parallel_for(arrays[0].shape[0], work, size=size, min_size=_PARALLEL_MIN)


def _geometry_arrays(kernel, stride, dilation):
    nd = len(kernel)
    return [as_3d_array(v, nd) for v in (kernel, stride, dilation)]


def _compiled_max(x, kernel, stride, dilation, pads):
    nd = len(kernel)
    x = np.ascontiguousarray(x)
    outs = [out_size(n, k, s, d) for n, k, s, d in zip(x.shape[1:1 + nd], kernel, stride, dilation)]
    values = np.empty((x.shape[0], *outs, x.shape[-1]), dtype=x.dtype)
    idx = np.empty(values.shape, dtype=np.int8 if int(np.prod(kernel)) < 128 else np.int32)
    spatial = x.shape[1:1 + nd]
    pads = pads or ((0, 0),) * nd
    lo = as_3d_array([a for a, _ in pads], nd, fill=0)
    hi = as_3d_array([n - b for n, (_, b) in zip(spatial, pads)], nd)
    k3, s3, d3 = _geometry_arrays(kernel, stride, dilation)
    _over_batch(lambda x_, v_, i_: pooling.max_pool_forward(x_, k3, s3, d3, lo, hi, v_, i_),
                x.size, five_d(x, nd), five_d(values, nd), five_d(idx, nd))
    return values, idx


def _compiled_gather(x, idx, kernel, stride, dilation):
    nd = len(kernel)
    out = np.empty(idx.shape, dtype=x.dtype)
    k3, s3, d3 = _geometry_arrays(kernel, stride, dilation)
    pooling.window_gather(five_d(np.ascontiguousarray(x), nd), five_d(np.ascontiguousarray(idx), nd),
                          s3, *pooling.offset_tables(k3, d3), five_d(out, nd))
    return out


def _compiled_scatter(g, idx, kernel, stride, dilation, in_shape):
    nd = len(kernel)
    k3, s3, d3 = _geometry_arrays(kernel, stride, dilation)
    if tuple(stride) == tuple(kernel) and all(d == 1 for d in dilation):
        # windows tile the input: one dense pass, no zeroing first
        out = np.empty(in_shape, dtype=g.dtype)
        covered = tuple(o * k for o, k in zip(g.shape[1:1 + nd], kernel))
        for axis, n in enumerate(covered):
            if n < in_shape[1 + axis]:     # the rows past the last window get nothing
                out[(slice(None),) * (1 + axis) + (slice(n, None),)] = 0
        _over_batch(lambda g_, i_, o_: pooling.tiled_scatter(g_, i_, k3, o_), out.size,
                    five_d(np.ascontiguousarray(g), nd), five_d(np.ascontiguousarray(idx), nd),
                    five_d(out, nd))
        return out
    out = np.zeros(in_shape, dtype=g.dtype)
    pooling.window_scatter(five_d(np.ascontiguousarray(g), nd), five_d(np.ascontiguousarray(idx), nd),
                           s3, *pooling.offset_tables(k3, d3), five_d(out, nd))
    return out


def _gather_forward(x, idx, *, kernel, stride, dilation):
    if compiled.ENABLED:
        return _compiled_gather(x, idx, kernel, stride, dilation)
    slices, _ = _offset_slices(x.shape, kernel, stride, dilation)
    out = np.zeros(idx.shape, dtype=x.dtype)
    for k, sl in enumerate(slices):
        out += x[sl] * (idx == k)
    return out


def _scatter_forward(g, idx, *, kernel, stride, dilation, in_shape):
    if compiled.ENABLED:
        return _compiled_scatter(g, idx, kernel, stride, dilation, in_shape)
    slices, _ = _offset_slices(in_shape, kernel, stride, dilation)
    out = np.zeros(in_shape, dtype=g.dtype)
    overlap = any(s < (k - 1) * d + 1 for k, s, d in zip(kernel, stride, dilation))
    for k, sl in enumerate(slices):
        if overlap:
            out[sl] += g * (idx == k)
        else:                                     # windows do not overlap: plain assignment
            np.multiply(g, idx == k, out=out[sl])
    return out


def _windows(x, kernel, stride, dilation, pads):
    if compiled.ENABLED:
        return _compiled_max(x, kernel, stride, dilation, pads)
    return max_windows(x, kernel, stride, dilation, pads)


def _max_pool_forward(x, *, kernel, stride, dilation, pads):
    values, idx = _windows(x, kernel, stride, dilation, pads)
    return values, (idx,)


def _argmax_forward(x, *, kernel, stride, dilation, pads):
    return _windows(x, kernel, stride, dilation, pads)[1]


def _geometry(kernel, stride, dilation):
    return {"kernel": kernel, "stride": stride, "dilation": dilation}


def window_gather(x, idx, kernel, stride, dilation):
    """``x`` read, in every window, at the kernel offset ``idx`` holds."""
    return apply(_gather, (x, idx), _geometry(kernel, stride, dilation))


def window_scatter(g, idx, kernel, stride, dilation, in_shape):
    """The transpose of :func:`window_gather`: ``g`` added into zeros of ``in_shape`` at
    the chosen positions."""
    return apply(_scatter, (g, idx), {**_geometry(kernel, stride, dilation),
                                      "in_shape": tuple(in_shape)})


def argmax_windows(x, kernel, stride, dilation, pads=()):
    """The kernel offset of every window's first maximum (an integer tensor)."""
    return apply(_argmax, (x,), {**_geometry(kernel, stride, dilation), "pads": tuple(pads)})


def max_pool(x, kernel, stride, dilation, pads=()):
    """Every window's maximum (``x`` already padded; ``pads`` marks the padding, never
    chosen). The node keeps only the chosen offsets."""
    return apply(_max_pool, (x,), {**_geometry(kernel, stride, dilation), "pads": tuple(pads)})


def _fold_batch(prim, n_batched):
    """Batching rule: the examples of ``vmap`` become more images of the batch (the
    first ``n_batched`` inputs carry the image batch axis)."""
    def rule(args, bdims, **params):
        size = batch_size(args, bdims)
        folded = []
        for i, (a, ax) in enumerate(zip(args, bdims)):
            if i < n_batched:
                a = broadcast_batch(a, ax, size)
                a = a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])
            folded.append(a)
        if "in_shape" in params:
            params = {**params, "in_shape": (size * params["in_shape"][0],) + params["in_shape"][1:]}
        out = apply(prim, tuple(folded), params)
        return out.reshape((size, out.shape[0] // size) + out.shape[1:]), 0

    return rule


_gather = Primitive(
    "window_gather", B.numpy_kernel(_gather_forward, device=device_kernels.gather_forward), save=(1,),
    vjp=(lambda g, out, x, idx, *, kernel, stride, dilation:
         window_scatter(g, idx, kernel, stride, dilation, x.shape), None),
    jvp=(lambda t, out, x, idx, *, kernel, stride, dilation:
         window_gather(t, idx, kernel, stride, dilation), None))

_scatter = Primitive(
    "window_scatter", B.numpy_kernel(_scatter_forward, device=device_kernels.scatter_forward), save=(1,),
    vjp=(lambda h, out, g, idx, *, kernel, stride, dilation, in_shape:
         window_gather(h, idx, kernel, stride, dilation), None),
    jvp=(lambda t, out, g, idx, *, kernel, stride, dilation, in_shape:
         window_scatter(t, idx, kernel, stride, dilation, in_shape), None))

_argmax = Primitive("argmax_windows", B.numpy_kernel(_argmax_forward, device=device_kernels.argmax_forward), differentiable=False)

def _max_pool_onnx(g, inputs, outputs, *, kernel, stride, dilation, pads):
    """ONNX's MaxPool, channels first (the input arrives padded with -inf already)."""
    nd = len(kernel)
    x = g.transpose(inputs[0], [0, nd + 1] + list(range(1, nd + 1)))
    y = g.node("MaxPool", [x], kernel_shape=list(kernel), strides=list(stride),
               dilations=list(dilation))
    g.transpose(y, [0] + list(range(2, nd + 2)) + [1], outputs[0])


_max_pool = Primitive(
    "max_pool", B.numpy_kernel(_max_pool_forward, device=device_kernels.max_pool_forward), save=(), residuals=True,
    onnx=_max_pool_onnx,
    vjp=lambda g, out, x, *, kernel, stride, dilation, pads, res:
        window_scatter(g, res[0], kernel, stride, dilation, x.shape),
    jvp=lambda t, out, x, *, kernel, stride, dilation, pads:
        window_gather(t, argmax_windows(x, kernel, stride, dilation, pads), kernel, stride,
                      dilation))


_gather.batch = _fold_batch(_gather, 2)
_scatter.batch = _fold_batch(_scatter, 2)
_argmax.batch = _fold_batch(_argmax, 1)
_max_pool.batch = _fold_batch(_max_pool, 1)
