"""Max pooling kernels over channels-last arrays seen as 3-D: ``(b, d, h, w, c)``.

1-D and 2-D pooling use the same kernels with unit leading spatial axes. ``lo``/``hi``
bound, per spatial axis, the real (unpadded) positions of the padded input: positions
outside are never chosen. The chosen position of a window is its kernel offset in
row-major order (``(i * kh + j) * kw + l``), the first maximum on ties; a NaN is the
maximum of its window (as PyTorch).
"""

from __future__ import annotations

import math

import numpy as np

from ...backend.compiled import kernel


@kernel
def max_pool_forward(x, kernel, stride, dilation, lo, hi, out, idx):
    """Fill ``out`` with every window's maximum and ``idx`` with its kernel offset.

    Offsets are the outer loop and channels the inner one, so the inner loop runs over
    contiguous memory."""
    n, c = x.shape[0], x.shape[4]
    od, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    padded = lo[0] > 0 or lo[1] > 0 or lo[2] > 0 or hi[0] < x.shape[1] \
        or hi[1] < x.shape[2] or hi[2] < x.shape[3]
    best = np.empty(c, x.dtype)
    have = np.empty(c, np.bool_)
    for b in range(n):
        for a in range(od):
            for p in range(oh):
                for q in range(ow):
                    d0, h0, w0 = a * stride[0], p * stride[1], q * stride[2]
                    ok0 = (not padded) or (lo[0] <= d0 < hi[0] and lo[1] <= h0 < hi[1]
                                          and lo[2] <= w0 < hi[2])
                    for ch in range(c):
                        best[ch] = x[b, d0, h0, w0, ch]
                        have[ch] = ok0
                        idx[b, a, p, q, ch] = 0
                    k = 0
                    for i in range(kd):
                        d = d0 + i * dilation[0]
                        for j in range(kh):
                            h = h0 + j * dilation[1]
                            for m in range(kw):
                                if k > 0:
                                    w = w0 + m * dilation[2]
                                    ok = (not padded) or (lo[0] <= d < hi[0] and lo[1] <= h < hi[1]
                                                          and lo[2] <= w < hi[2])
                                    for ch in range(c):
                                        v = x[b, d, h, w, ch]
                                        bv = best[ch]
                                        better = v > bv or (math.isnan(v) and not math.isnan(bv))
                                        if padded:
                                            better = ok and (better or not have[ch])
                                            if ok:
                                                have[ch] = True
                                        if better:
                                            idx[b, a, p, q, ch] = k
                                        if not math.isnan(bv) and (math.isnan(v) or v > bv):
                                            best[ch] = v
                                k += 1
                    for ch in range(c):
                        out[b, a, p, q, ch] = best[ch]


def offset_tables(kernel, dilation):
    """For each kernel offset ``k``: its displacement along d, h and w (in elements of
    the input), so that the kernels look them up instead of dividing."""
    kd, kh, kw = (int(v) for v in kernel)
    k = np.arange(kd * kh * kw)
    return ((k // (kh * kw)) * int(dilation[0]), ((k // kw) % kh) * int(dilation[1]),
            (k % kw) * int(dilation[2]))


@kernel
def window_scatter(g, idx, stride, dd, dh, dw, out):
    """``out`` (zeros, the padded input's shape) += ``g`` at the chosen positions."""
    n, od, oh, ow, c = g.shape
    for b in range(n):
        for a in range(od):
            for p in range(oh):
                for q in range(ow):
                    d0, h0, w0 = a * stride[0], p * stride[1], q * stride[2]
                    for ch in range(c):
                        k = idx[b, a, p, q, ch]
                        out[b, d0 + dd[k], h0 + dh[k], w0 + dw[k], ch] += g[b, a, p, q, ch]


@kernel
def window_gather(x, idx, stride, dd, dh, dw, out):
    """``out`` = ``x`` read at the chosen positions."""
    n, od, oh, ow, c = out.shape
    for b in range(n):
        for a in range(od):
            for p in range(oh):
                for q in range(ow):
                    d0, h0, w0 = a * stride[0], p * stride[1], q * stride[2]
                    for ch in range(c):
                        k = idx[b, a, p, q, ch]
                        out[b, a, p, q, ch] = x[b, d0 + dd[k], h0 + dh[k], w0 + dw[k], ch]


@kernel
def tiled_scatter(g, idx, kernel, out):
    """``window_scatter`` when the windows tile the input (stride = kernel, unit
    dilation): every position of every window is written once, the chosen one with its
    gradient and the others with zero, so ``out`` need not be zeroed first (rows and
    columns past the last window are left to the caller)."""
    n, od, oh, ow, c = g.shape
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    for b in range(n):
        for a in range(od):
            for p in range(oh):
                for q in range(ow):
                    k = 0
                    for i in range(kd):
                        for j in range(kh):
                            for m in range(kw):
                                d, h, w = a * kd + i, p * kh + j, q * kw + m
                                for ch in range(c):
                                    hit = idx[b, a, p, q, ch] == k
                                    out[b, d, h, w, ch] = g[b, a, p, q, ch] if hit else 0
                                k += 1
