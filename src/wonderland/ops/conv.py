"""Convolution in 1, 2 and 3 spatial dimensions, channels last, as three primitives that
are each other's transposes:

* ``conv(x, w)``            x ``(b, *S, c_in)``, w ``(*k, c_in/groups, c_out)`` → ``(b, *O, c_out)``
* ``conv_transpose(g, w)``  the adjoint of ``conv`` in ``x``: ``(b, *O, c_out)`` → ``(b, *S, c_in)``
* ``conv_weight(x, g)``     the adjoint of ``conv`` in ``w``: → ``(*k, c_in/groups, c_out)``

All three are bilinear, so each one's VJP and JVP are made of the other two and any
order of derivative stays in the family. Padding is not part of them: callers pad with
``wl.pad`` (whose gradient crops), so the primitives see ``x`` already padded.

The arithmetic is im2col + GEMM: a strided *view* of the input gives every window
without copying; windows are copied chunk by chunk into a small buffer (the innermost
kernel axis and the channels are contiguous in memory, so the copy moves long runs)
and multiplied with the kernel matrix by BLAS. Chunks over the batch run on the
library's one thread pool (``backend/threads.py``), each thread with a single-threaded
BLAS call, so that one thread's copy overlaps another's product. ``conv_transpose`` with
stride 1 is itself a convolution
(of the padded cotangent with the flipped kernel); with larger strides it scatters
column blocks back (col2im).

ONNX's Conv and ConvTranspose are channels first with kernels ``(out, in/groups, *k)``:
the export rules (``onnx=``) transpose the input to ``(b, c, *S)``, the kernel from
``(*k, in/groups, out)``, and the result back to channels last.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import backend as B
from ..backend import threads
from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ..core.vmap import loop_rule, moveaxis
from ..backend import compiled, device_kernels
from .kernels import convolution as kernels_conv

_ROWS_PER_CHUNK = 1024
# ----------------------------------------------------------------------------- geometry
def out_size(size, k, stride, dilation):
    return (size - dilation * (k - 1) - 1) // stride + 1


def as_3d(values, nd, fill=1):
    """Per-axis numbers (sizes, strides...) of ``nd`` spatial axes with ``fill`` in front,
    to 3 axes: 1-D and 2-D windows run the compiled 3-D kernels."""
    return (fill,) * (3 - nd) + tuple(values)


def as_3d_array(values, nd, fill=1):
    """``as_3d`` as an int64 array (what the kernels take)."""
    return np.array(as_3d(values, nd, fill), dtype=np.int64)


def five_d(a, nd):
    """A channels-last array with ``nd`` spatial axes as ``(b, d, h, w, c)`` (a view)."""
    return a.reshape(a.shape[:1] + (1,) * (3 - nd) + a.shape[1:])


def _window_view(x, kernel, stride, dilation):
    """A read-only view ``(b, *O, *k[:-1], k[-1]*c)`` of every window of ``x``.

    With unit dilation along the last kernel axis the last two window axes are one
    contiguous run in memory, which makes the copy into columns fast.
    """
    nd = len(kernel)
    b, c = x.shape[0], x.shape[-1]
    spatial = x.shape[1:1 + nd]
    outs = [out_size(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation)]
    st = x.strides
    if dilation[-1] == 1 and x.strides[-1] * c == x.strides[-2]:
        shape = (b, *outs, *kernel[:-1], kernel[-1] * c)
        strides = (st[0], *(st[1 + i] * stride[i] for i in range(nd)),
                   *(st[1 + i] * dilation[i] for i in range(nd - 1)), st[-1])
    else:
        shape = (b, *outs, *kernel, c)
        strides = (st[0], *(st[1 + i] * stride[i] for i in range(nd)),
                   *(st[1 + i] * dilation[i] for i in range(nd)), st[-1])
    return as_strided(x, shape, strides, writeable=False), outs


def _chunk_images(per_image_rows):
    return max(1, _ROWS_PER_CHUNK // max(1, per_image_rows))


# ----------------------------------------------------------------------------- kernel products
def _kernel_matrix(w, groups):
    """``w (*k, cg, G*og)`` as ``(K*cg, cout)`` for groups=1, else ``(G, K*cg, og)``."""
    cout = w.shape[-1]
    kcg = int(np.prod(w.shape[:-1]))
    if groups == 1:
        return w.reshape(kcg, cout)
    k = int(np.prod(w.shape[:-2]))
    cg, og = w.shape[-2], cout // groups
    return np.ascontiguousarray(w.reshape(k, cg, groups, og).transpose(2, 0, 1, 3)).reshape(
        groups, k * cg, og)


def _columns_times(cols, wmat, groups, k, cg, out):
    """``out (rows, cout) = cols (rows, K*C) · kernel`` for the given grouping."""
    if groups == 1:
        np.matmul(cols, wmat, out=out)
        return
    rows = cols.shape[0]
    og = wmat.shape[-1]
    c4 = cols.reshape(rows, k, groups, cg)
    if cg == 1 and og == 1:                           # depthwise: a sum of products over k
        np.einsum("rkg,gk->rg", c4[..., 0], wmat[..., 0], out=out)
        return
    cg_cols = np.ascontiguousarray(c4.transpose(2, 0, 1, 3)).reshape(groups, rows, k * cg)
    res = np.matmul(cg_cols, wmat)                    # (G, rows, og)
    out.reshape(rows, groups, og)[...] = res.transpose(1, 0, 2)


def _conv_forward(x, w, *, stride, dilation, groups, bias=None):
    """The convolution, plus ``bias`` (per output channel) added to each chunk of the
    result while it is still in cache."""
    nd = len(stride)
    kernel = w.shape[:nd]
    if groups == 1 and all(k == 1 for k in kernel) and all(s_ == 1 for s_ in stride):
        # a 1x1 convolution is one matrix product over all positions
        out = np.matmul(x.reshape(-1, x.shape[-1]), w.reshape(w.shape[-2], w.shape[-1]))
        if bias is not None:
            out += bias
        return out.reshape(x.shape[:-1] + (w.shape[-1],))
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if _direct_applies(x, w, groups):
        return _direct_forward(x, w, bias, stride, dilation)
    view, outs = _window_view(x, kernel, stride, dilation)
    b = x.shape[0]
    cout = w.shape[-1]
    per_image = int(np.prod(outs))
    out = np.empty((b, *outs, cout), dtype=np.result_type(x, w))
    if out.size == 0:
        return out
    wmat = _kernel_matrix(w.astype(out.dtype, copy=False), groups)
    k = int(np.prod(kernel))
    cg = w.shape[-2]
    cin = x.shape[-1]
    step = _chunk_images(per_image)
    flat_out = out.reshape(b * per_image, cout)

    def work(lo, hi, lane):
        buf = None
        for s in range(lo, hi, step):
            e = min(s + step, hi)
            part = view[s:e]
            if buf is None or buf.shape[0] < e - s:
                buf = np.empty((step,) + part.shape[1:], dtype=out.dtype)
            cols = buf[:e - s]
            np.copyto(cols, part)
            block = flat_out[s * per_image:e * per_image]
            _columns_times(cols.reshape((e - s) * per_image, k * cin), wmat, groups, k, cg, block)
            if bias is not None:
                block += bias

    threads.parallel_for(b, work, size=b * per_image * k * cin)
    return out


def _conv_weight_forward(x, g, *, stride, dilation, groups, kernel):
    nd = len(stride)
    if groups == 1 and all(k == 1 for k in kernel) and all(s_ == 1 for s_ in stride):
        cin, cout = x.shape[-1], g.shape[-1]
        prod = x.reshape(-1, cin).T @ g.reshape(-1, cout)
        return prod.reshape(*kernel, cin, cout)
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    g = np.ascontiguousarray(g)
    if _direct_applies(x, g, groups, kernel):
        return _direct_weight(x, g, stride, dilation, kernel)
    view, outs = _window_view(x, kernel, stride, dilation)
    b, cin = x.shape[0], x.shape[-1]
    cout = g.shape[-1]
    cg = cin // groups
    og = cout // groups
    k = int(np.prod(kernel))
    per_image = int(np.prod(outs))
    dtype = np.result_type(x, g)
    rows_g = g.reshape(b * per_image, cout)
    step = _chunk_images(per_image)
    partial = {}

    def work(lo, hi, lane):
        acc = np.zeros((groups, k * cg, og) if groups > 1 else (k * cin, cout), dtype=dtype)
        buf = None
        for s in range(lo, hi, step):
            e = min(s + step, hi)
            part = view[s:e]
            if buf is None:
                buf = np.empty((step,) + part.shape[1:], dtype=dtype)
            cols = buf[:e - s]
            np.copyto(cols, part)
            cols = cols.reshape((e - s) * per_image, k * cin)
            gr = rows_g[s * per_image:e * per_image]
            if groups == 1:
                acc += cols.T @ gr
            else:
                c4 = cols.reshape(-1, k, groups, cg).transpose(2, 1, 3, 0).reshape(groups, k * cg, -1)
                acc += np.matmul(c4, gr.reshape(-1, groups, og).transpose(1, 0, 2))
        partial[lane] = acc

    if b * per_image:
        threads.parallel_for(b, work, size=b * per_image * k * cin)
    total = sum(partial.values()) if partial else np.zeros(
        (groups, k * cg, og) if groups > 1 else (k * cin, cout), dtype=dtype)
    if groups == 1:
        return total.reshape(*kernel, cin, cout)
    return total.reshape(groups, *kernel, cg, og).transpose(
        *range(1, nd + 1), nd + 1, 0, nd + 2).reshape(*kernel, cg, cout)


# ----------------------------------------------------------------------------- few channels
_DIRECT_MAX_WINDOW = 16     # numbers per window (kernel size × c_in) for the direct loops


def _direct_applies(x, other, groups, kernel=None):
    """Whether the direct loops serve a convolution of ``x`` (few numbers per window)."""
    window = int(np.prod(other.shape[:-2] if kernel is None else kernel)) * x.shape[-1]
    return (groups == 1 and window <= _DIRECT_MAX_WINDOW and compiled.ENABLED
            and type(x) is np.ndarray and type(other) is np.ndarray)


def _direct_forward(x, w, bias, stride, dilation):
    nd = len(stride)
    kernel = w.shape[:nd]
    b, cin, cout = x.shape[0], x.shape[-1], w.shape[-1]
    dtype = np.result_type(x, w)
    outs = [out_size(n, k, s, d) for n, k, s, d in zip(x.shape[1:1 + nd], kernel, stride, dilation)]
    out = np.empty((b, *outs, cout), dtype=dtype)
    if out.size == 0:
        return out
    x5 = five_d(x.astype(dtype, copy=False), nd)
    w5 = np.ascontiguousarray(w, dtype=dtype).reshape(as_3d(kernel, nd) + (cin, cout))
    bias = np.zeros(cout, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype).reshape(cout)
    s3, d3 = as_3d_array(stride, nd), as_3d_array(dilation, nd)
    out5 = five_d(out, nd)

    def work(lo, hi, lane):
        kernels_conv.direct_forward(x5[lo:hi], w5, bias, s3, d3, out5[lo:hi])

    threads.parallel_for(b, work, size=out.size * int(np.prod(kernel)) * cin)
    return out


def _direct_weight(x, g, stride, dilation, kernel):
    nd = len(stride)
    b, cin, cout = x.shape[0], x.shape[-1], g.shape[-1]
    dtype = np.result_type(x, g)
    x5 = five_d(x.astype(dtype, copy=False), nd)
    g5 = five_d(g.astype(dtype, copy=False), nd)
    s3, d3 = as_3d_array(stride, nd), as_3d_array(dilation, nd)
    shape = as_3d(kernel, nd) + (cin, cout)
    partial = {}

    def work(lo, hi, lane):
        acc = np.zeros(shape, dtype=dtype)
        kernels_conv.direct_weight(x5[lo:hi], g5[lo:hi], s3, d3, acc)
        partial[lane] = acc

    threads.parallel_for(b, work, size=g.size * int(np.prod(kernel)) * cin)
    total = sum(partial.values()) if partial else np.zeros(shape, dtype=dtype)
    return total.reshape(*kernel, cin, cout)


def _flip_transpose_kernel(w, groups):
    """The kernel of the convolution that computes ``conv_transpose`` at stride 1:
    spatially flipped, with input and output channels exchanged (within groups)."""
    nd = w.ndim - 2
    cg, cout = w.shape[-2], w.shape[-1]
    og = cout // groups
    flipped = w[(slice(None, None, -1),) * nd]
    # (*k, cg, G, og) -> (*k, og, G, cg) -> (*k, og, G*cg)
    return np.ascontiguousarray(
        flipped.reshape(*w.shape[:nd], cg, groups, og).swapaxes(-1, -3)).reshape(
        *w.shape[:nd], og, groups * cg)


def _conv_transpose_forward(g, w, *, stride, dilation, groups, in_shape):
    nd = len(stride)
    kernel = w.shape[:nd]
    b = g.shape[0]
    cin = in_shape[-1]
    dtype = np.result_type(g, w)
    if groups == 1 and all(k == 1 for k in kernel) and all(s_ == 1 for s_ in stride):
        prod = g.reshape(-1, g.shape[-1]) @ w.reshape(w.shape[-2], w.shape[-1]).T
        return prod.reshape(in_shape).astype(dtype, copy=False)
    cout = g.shape[-1]
    # At stride 1 the transpose is a convolution of the padded cotangent with the
    # flipped kernel; its columns hold c_out values per window, col2im's hold c_in.
    if all(s == 1 for s in stride) and cout < cin:
        pads = [(d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation)]
        gp = np.pad(g, [(0, 0)] + pads + [(0, 0)])
        full = _conv_forward(gp, _flip_transpose_kernel(w.astype(dtype, copy=False), groups),
                             stride=stride, dilation=dilation, groups=groups)
        # positions of x beyond the last window received nothing
        want = tuple(in_shape[1:1 + nd])
        if full.shape[1:1 + nd] == want:
            return full
        out = np.zeros((b, *want, cin), dtype=dtype)
        out[(slice(None),) + tuple(slice(0, n) for n in full.shape[1:1 + nd])] = full
        return out
    return _col2im(g, w, stride, dilation, groups, in_shape, dtype)


def _col2im_kernel(w, groups, use_loop, dtype):
    """The kernel as ``_col2im`` multiplies by it: with the compiled scatter, one
    ``(c_out, k·c_in)`` matrix (one product gives every offset's columns); without it,
    one ``(c_out, c_in)`` block per offset (each offset's contribution then comes out
    contiguous, added into its strided region); grouped, ``(groups, og, k·cg)``."""
    cin_g, cout = w.shape[-2], w.shape[-1]
    k = int(np.prod(w.shape[:-2]))
    if groups == 1 and use_loop:
        wt = w.reshape(k * cin_g, cout).T
    elif groups == 1:
        wt = w.reshape(k, cin_g, cout).transpose(0, 2, 1)
    else:
        og = cout // groups
        wt = w.reshape(k, cin_g, groups, og).transpose(2, 3, 0, 1).reshape(groups, og, k * cin_g)
    return np.ascontiguousarray(wt).astype(dtype, copy=False)


def _offset_regions(kernel, stride, dilation, outs):
    """For each kernel offset, the strided region of the input its windows' entries
    land on (an index into ``(b, *spatial, c)``)."""
    return [(slice(None),) + tuple(slice(o * d, o * d + st * (n - 1) + 1, st)
                                   for o, d, st, n in zip(offset, dilation, stride, outs))
            + (slice(None),) for offset in np.ndindex(*kernel)]


def _col2im(g, w, stride, dilation, groups, in_shape, dtype):
    """Transposed convolution by columns: ``g · kernelᵀ`` gives every window's
    contribution to every position it covers, which is added back in place (the
    compiled ``col2im_add``; offset by offset with NumPy when kernels are off). Chunks
    of the batch run in parallel, each chunk's columns staying in cache between the
    product and the scatter."""
    nd = len(stride)
    kernel = w.shape[:nd]
    b, outs, cout = g.shape[0], g.shape[1:1 + nd], g.shape[-1]
    cin = in_shape[-1]
    cg, og = cin // groups, cout // groups
    k = int(np.prod(kernel))
    per_image = int(np.prod(outs))
    rows = np.ascontiguousarray(g).reshape(b * per_image, cout).astype(dtype, copy=False)
    use_loop = compiled.ENABLED
    wt = _col2im_kernel(w, groups, use_loop, dtype)
    out = np.zeros((b, *in_shape[1:1 + nd], cin), dtype=dtype)
    if out.size == 0 or rows.size == 0:
        return out
    targets = _offset_regions(kernel, stride, dilation, outs)
    step = max(1, (_ROWS_PER_CHUNK // 4) // max(1, per_image))
    cols_3d = as_3d(outs, nd) + as_3d(kernel, nd) + (cin,)
    out_3d = as_3d(in_shape[1:1 + nd], nd) + (cin,)
    stride_3d, dilation_3d = as_3d_array(stride, nd), as_3d_array(dilation, nd)

    def scatter(cols, s, e):
        if use_loop:
            kernels_conv.col2im_add(cols.reshape((e - s,) + cols_3d), stride_3d, dilation_3d,
                                    out[s:e].reshape((e - s,) + out_3d))
            return
        cols = cols.reshape(e - s, *outs, k, cin)
        region = out[s:e]
        for j, target in enumerate(targets):
            region[target] += cols[..., j, :]

    def work(lo, hi, lane):
        buf = None
        for s in range(lo, hi, step):
            e = min(s + step, hi)
            gr = rows[s * per_image:e * per_image]
            if groups == 1 and use_loop:
                if buf is None:
                    buf = np.empty((step * per_image, k * cin), dtype=dtype)
                scatter(np.matmul(gr, wt, out=buf[:gr.shape[0]]), s, e)
            elif groups == 1:
                if buf is None:
                    buf = np.empty((step * per_image, cin), dtype=dtype)
                block = buf[:gr.shape[0]]
                region = out[s:e]
                for j, target in enumerate(targets):
                    np.matmul(gr, wt[j], out=block)          # one 2-D product per offset
                    region[target] += block.reshape(e - s, *outs, cin)
            else:
                cols = np.matmul(gr.reshape(-1, groups, og).transpose(1, 0, 2), wt)
                scatter(np.ascontiguousarray(cols.reshape(groups, -1, k, cg).transpose(1, 2, 0, 3)),
                        s, e)

    threads.parallel_for(b, work, size=b * per_image * k * cin)
    return out


# ----------------------------------------------------------------------------- ONNX export
def _channels_first(g, x, nd):
    return g.transpose(x, [0, nd + 1] + list(range(1, nd + 1)))


def _onnx_kernel(g, w, nd):
    """``(*k, c_in/groups, c_out)`` as ONNX's ``(c_out, c_in/groups, *k)``."""
    return g.transpose(w, [nd + 1, nd] + list(range(nd)))


def _conv_onnx(g, inputs, outputs, *, stride, dilation, groups):
    nd = len(stride)
    x, w = inputs[:2]
    y = g.node("Conv", [_channels_first(g, x, nd), _onnx_kernel(g, w, nd)] + inputs[2:3],
               strides=list(stride), dilations=list(dilation), group=groups,
               kernel_shape=list(g.shape(w)[:nd]))
    g.transpose(y, [0] + list(range(2, nd + 2)) + [1], outputs[0])


def _conv_transpose_onnx(g, inputs, outputs, *, stride, dilation, groups, in_shape):
    """The adjoint of ``conv`` in ``x`` is ONNX's ConvTranspose with the same kernel; the
    sizes it cannot tell from the strides come back as ``output_padding``."""
    nd = len(stride)
    gy, w = inputs
    kernel = g.shape(w)[:nd]
    outs = g.shape(gy)[1:1 + nd]
    extra = [n - ((o - 1) * s + (k - 1) * d + 1)
             for n, o, s, k, d in zip(in_shape[1:1 + nd], outs, stride, kernel, dilation)]
    y = g.node("ConvTranspose", [_channels_first(g, gy, nd), _onnx_kernel(g, w, nd)],
               strides=list(stride), dilations=list(dilation), group=groups,
               kernel_shape=list(kernel), output_padding=extra)
    g.transpose(y, [0] + list(range(2, nd + 2)) + [1], outputs[0])


# ----------------------------------------------------------------------------- primitives
def _params(stride, dilation, groups):
    return {"stride": stride, "dilation": dilation, "groups": groups}


def conv_raw(x, w, stride, dilation, groups):
    return apply(_conv, (x, w), _params(stride, dilation, groups))


def conv_transpose_raw(g, w, stride, dilation, groups, in_shape):
    return apply(_conv_t, (g, w), {**_params(stride, dilation, groups), "in_shape": tuple(in_shape)})


def conv_weight_raw(x, g, stride, dilation, groups, kernel):
    return apply(_conv_w, (x, g), {**_params(stride, dilation, groups), "kernel": tuple(kernel)})


def _fold_rule(prim, foldable):
    """Batching rule: when only input ``foldable`` is batched, fold the batch axis into
    the image batch (examples are independent images); otherwise loop."""
    def rule(args, bdims, **params):
        if any(ax is not None for i, ax in enumerate(bdims) if i != foldable):
            return loop_rule(prim)(args, bdims, **params)
        x = moveaxis(args[foldable], bdims[foldable], 0)
        n, b = x.shape[0], x.shape[1]
        folded = list(args)
        folded[foldable] = x.reshape((n * b,) + x.shape[2:])
        if "in_shape" in params:
            params = {**params, "in_shape": (n * b,) + tuple(params["in_shape"][1:])}
        out = apply(prim, tuple(folded), params)
        return out.reshape((n, b) + out.shape[1:]), 0

    return rule


_conv = Primitive(
    "conv", B.numpy_kernel(_conv_forward, device=device_kernels.conv_forward), save={0: (1,), 1: (0,)},
    onnx=_conv_onnx,
    vjp=(lambda g, out, x, w, *, stride, dilation, groups:
         conv_transpose_raw(g, w, stride, dilation, groups, x.shape),
         lambda g, out, x, w, *, stride, dilation, groups:
         conv_weight_raw(x, g, stride, dilation, groups, w.shape[:len(stride)])),
    jvp=(lambda t, out, x, w, *, stride, dilation, groups: conv_raw(t, w, stride, dilation, groups),
         lambda t, out, x, w, *, stride, dilation, groups: conv_raw(x, t, stride, dilation, groups)))

def _conv_bias_forward(x, w, b, *, stride, dilation, groups):
    return _conv_forward(x, w, stride=stride, dilation=dilation, groups=groups, bias=b)


def conv_bias_raw(x, w, b, stride, dilation, groups):
    return apply(_conv_bias, (x, w, b), _params(stride, dilation, groups))


# convolution and bias in one node (the bias is added in place into the product)
_conv_bias = Primitive(
    "conv_bias", B.numpy_kernel(_conv_bias_forward, device=device_kernels.conv_bias_forward), save={0: (1,), 1: (0,)},
    onnx=_conv_onnx,
    vjp=(lambda g, out, x, w, b, *, stride, dilation, groups:
         conv_transpose_raw(g, w, stride, dilation, groups, x.shape),
         lambda g, out, x, w, b, *, stride, dilation, groups:
         conv_weight_raw(x, g, stride, dilation, groups, w.shape[:len(stride)]),
         lambda g, out, x, w, b, *, stride, dilation, groups: g),
    jvp=(lambda t, out, x, w, b, *, stride, dilation, groups: conv_raw(t, w, stride, dilation, groups),
         lambda t, out, x, w, b, *, stride, dilation, groups: conv_raw(x, t, stride, dilation, groups),
         lambda t, out, x, w, b, *, stride, dilation, groups: t))

_conv_t = Primitive(
    "conv_transpose", B.numpy_kernel(_conv_transpose_forward,
                                       device=device_kernels.conv_transpose_forward), save={0: (1,), 1: (0,)},
    onnx=_conv_transpose_onnx,
    vjp=(lambda h, out, g, w, *, stride, dilation, groups, in_shape:
         conv_raw(h, w, stride, dilation, groups),
         lambda h, out, g, w, *, stride, dilation, groups, in_shape:
         conv_weight_raw(h, g, stride, dilation, groups, w.shape[:len(stride)])),
    jvp=(lambda t, out, g, w, *, stride, dilation, groups, in_shape:
         conv_transpose_raw(t, w, stride, dilation, groups, in_shape),
         lambda t, out, g, w, *, stride, dilation, groups, in_shape:
         conv_transpose_raw(g, t, stride, dilation, groups, in_shape)))

_conv_w = Primitive(
    "conv_weight", B.numpy_kernel(_conv_weight_forward,
                                    device=device_kernels.conv_weight_forward), save={0: (1,), 1: (0,)},
    vjp=(lambda wb, out, x, g, *, stride, dilation, groups, kernel:
         conv_transpose_raw(g, wb, stride, dilation, groups, x.shape),
         lambda wb, out, x, g, *, stride, dilation, groups, kernel:
         conv_raw(x, wb, stride, dilation, groups)),
    jvp=(lambda t, out, x, g, *, stride, dilation, groups, kernel:
         conv_weight_raw(t, g, stride, dilation, groups, kernel),
         lambda t, out, x, g, *, stride, dilation, groups, kernel:
         conv_weight_raw(x, t, stride, dilation, groups, kernel)))


_conv.batch = _fold_rule(_conv, 0)
_conv_bias.batch = _fold_rule(_conv_bias, 0)
_conv_t.batch = _fold_rule(_conv_t, 0)
_conv_w.batch = loop_rule(_conv_w)

__all__ = ["conv_raw", "conv_bias_raw", "conv_transpose_raw", "conv_weight_raw", "out_size", "Tensor"]
