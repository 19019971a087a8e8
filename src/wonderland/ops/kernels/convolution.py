"""Convolution loops that im2col + GEMM does badly, channels last, seen as 3-D.

* ``col2im_add``: the scatter half of a transposed convolution;
* ``direct_forward`` / ``direct_weight``: a convolution and its weight gradient computed
  directly, for inputs with few channels per window (an image's first layer: 3×3 × 1
  channel is 9 numbers per window). There a GEMM with an inner dimension of 9 runs far
  below the machine's peak and copying 9-number windows into columns costs more than
  the arithmetic; the direct loops read each input once and keep the ``c_out`` partial
  sums of a position in registers.

``conv_transpose`` multiplies the cotangent by the kernel matrix once, giving every
window's contribution to every input position it covers: columns ``(b, *O, *k, c)``.
Adding them back where they came from is a loop NumPy can only write as one strided
``+=`` per kernel offset (each a full pass over the result); compiled, it is one pass
over the columns with the channels innermost. 1-D and 2-D convolutions use the same
kernel with unit leading spatial axes.
"""

from __future__ import annotations

import numpy as np

from ...backend.compiled import kernel, kernel_fma


@kernel
def col2im_add(cols, stride, dilation, out):
    """``out[b, o*stride + k*dilation, :] += cols[b, o, k, :]`` for every output position
    ``o`` and kernel offset ``k`` (3 spatial axes each); ``out`` is ``(b, D, H, W, c)``."""
    n, od, oh, ow, kd, kh, kw, c = cols.shape
    for b in range(n):
        for a in range(od):
            for p in range(oh):
                for q in range(ow):
                    for i in range(kd):
                        d = a * stride[0] + i * dilation[0]
                        for j in range(kh):
                            h = p * stride[1] + j * dilation[1]
                            for m in range(kw):
                                w = q * stride[2] + m * dilation[2]
                                for ch in range(c):
                                    out[b, d, h, w, ch] += cols[b, a, p, q, i, j, m, ch]


@kernel_fma
def direct_forward(x, w, bias, stride, dilation, out):
    """``out[b, o, :] = bias + Σ_k Σ_ci x[b, o*stride + k*dilation, ci] w[k, ci, :]`` with
    ``x (b, D, H, W, c_in)``, ``w (kd, kh, kw, c_in, c_out)``, ``out (b, od, oh, ow, c_out)``.

    One output row ``out[b, a, p]`` (``ow × c_out`` numbers, in cache) at a time: for each
    kernel tap and input channel, the ``c_out`` weights stay in registers while the row's
    positions go by."""
    n, od, oh, ow, cout = out.shape
    kd, kh, kw, cin = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    for b in range(n):
        for a in range(od):
            for p in range(oh):
                row = out[b, a, p]
                for q in range(ow):
                    for co in range(cout):
                        row[q, co] = bias[co]
                for i in range(kd):
                    d = a * stride[0] + i * dilation[0]
                    for j in range(kh):
                        h = p * stride[1] + j * dilation[1]
                        line = x[b, d, h]
                        for m in range(kw):
                            for ci in range(cin):
                                tap = w[i, j, m, ci]
                                for q in range(ow):
                                    v = line[q * stride[2] + m * dilation[2], ci]
                                    for co in range(cout):
                                        row[q, co] += v * tap[co]


@kernel_fma
def direct_weight(x, g, stride, dilation, acc):
    """``acc[k, ci, :] += Σ_b Σ_o x[b, o*stride + k*dilation, ci] g[b, o, :]`` with ``acc
    (kd, kh, kw, c_in, c_out)`` (the weight gradient of ``direct_forward``), one row of
    ``g`` at a time."""
    n, od, oh, ow, cout = g.shape
    kd, kh, kw, cin = acc.shape[0], acc.shape[1], acc.shape[2], acc.shape[3]
    total = np.empty(cout, dtype=acc.dtype)
    for b in range(n):
        for a in range(od):
            for p in range(oh):
                grow = g[b, a, p]
                for i in range(kd):
                    d = a * stride[0] + i * dilation[0]
                    for j in range(kh):
                        h = p * stride[1] + j * dilation[1]
                        line = x[b, d, h]
                        for m in range(kw):
                            for ci in range(cin):
                                for co in range(cout):
                                    total[co] = 0
                                for q in range(ow):
                                    v = line[q * stride[2] + m * dilation[2], ci]
                                    for co in range(cout):
                                        total[co] += v * grow[q, co]
                                tap = acc[i, j, m, ci]
                                for co in range(cout):
                                    tap[co] += total[co]
