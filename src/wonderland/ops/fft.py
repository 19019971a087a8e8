"""Discrete Fourier transforms on real/imaginary pairs.

The core's tensors are real, so a complex array travels as two real tensors
``(re, im)``. One primitive, ``dft``, computes ``scale · fftn`` or ``scale · ifftn`` of
``re + i·im`` over ``axes`` and returns the pair. It is linear, so its JVP is itself
applied to the tangents, and its VJP is its adjoint as a real-linear map, which is again
a ``dft``: for ``A = s·F`` (``F`` the unnormalised DFT over ``N`` points) ``Aᴴ = s·N ·
ifft``; for ``A = s·F⁻¹`` it is ``s/N · fft``. The real transforms (``rfft``,
``irfft``) are compositions of ``dft`` with slicing and concatenation, so their
derivatives follow.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..core.primitive import Primitive, apply
from ..core.structural import zeros_like
from ..core.vmap import broadcast_batch, batch_size
from .arguments import floating, normalize_axes, to_tensor
from .shape import concatenate, flip
from .shape import pad as _pad


def _dft_forward(re, im, *, axes, inverse, scale):
    z = re + 1j * im
    y = np.fft.ifftn(z, axes=axes) if inverse else np.fft.fftn(z, axes=axes)
    if scale != 1.0:
        y *= scale
    dtype = np.result_type(re.dtype, im.dtype)
    xp = B.ns(re)
    return xp.asarray(y.real, dtype=dtype), xp.asarray(y.imag, dtype=dtype)


def _points(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _adjoint(axes, inverse, scale, shape):
    n = _points(shape, axes)
    return {"axes": axes, "inverse": not inverse, "scale": scale / n if inverse else scale * n}


def _vjp_all(gs, outs, inputs, needs, *, axes, inverse, scale):
    gre, gim = gs
    re = inputs[0]
    gre = zeros_like(gim) if gre is None else gre          # outputs share one shape
    gim = zeros_like(gre) if gim is None else gim
    r, i = apply(DFT, (gre, gim), _adjoint(axes, inverse, scale, re.shape))
    return [r if needs[0] else None, i if needs[1] else None]


def _jvp_all(tangents, outs, inputs, *, axes, inverse, scale):
    if tangents[0] is None and tangents[1] is None:
        return [None, None]
    tre = zeros_like(inputs[0]) if tangents[0] is None else tangents[0]
    tim = zeros_like(inputs[1]) if tangents[1] is None else tangents[1]
    return list(apply(DFT, (tre, tim), {"axes": axes, "inverse": inverse, "scale": scale}))


def _batch(args, axes_in, *, axes, inverse, scale):
    size = batch_size(args, axes_in)
    re, im = (broadcast_batch(a, ax, size) for a, ax in zip(args, axes_in))
    out = apply(DFT, (re, im), {"axes": tuple(a + 1 for a in axes), "inverse": inverse,
                                "scale": scale})
    return out, (0, 0)


DFT = Primitive("dft", _dft_forward, vjp_all=_vjp_all, jvp_all=_jvp_all, multiple_results=True,
                save=(), batch=_batch)


def _pair(re, im, what):
    re = floating(to_tensor(re, what))
    im = zeros_like(re) if im is None else floating(to_tensor(im, what))
    if re.shape != im.shape:
        raise ValueError(f"{what}: real part {re.shape} and imaginary part {im.shape} differ")
    if re.dtype != im.dtype:
        dtype = np.result_type(re.dtype, im.dtype)
        re, im = re.astype(dtype), im.astype(dtype)
    return re, im


def _norm_scale(norm, n, inverse, what):
    """numpy's ``norm``: "backward" (forward unscaled, inverse 1/n), "ortho", "forward"."""
    if norm in (None, "backward"):
        return 1.0
    if norm == "ortho":
        return float(np.sqrt(n)) if inverse else 1.0 / float(np.sqrt(n))
    if norm == "forward":
        return float(n) if inverse else 1.0 / n
    raise ValueError(f"{what}: norm must be 'backward', 'ortho' or 'forward', got {norm!r}")


def fftn(re, im=None, axes=None, norm=None, inverse=False):
    """The n-dimensional DFT of ``re + i·im`` over ``axes`` (all by default); returns
    ``(re, im)``."""
    what = "ifftn" if inverse else "fftn"
    re, im = _pair(re, im, what)
    ax = normalize_axes(axes, re.ndim, what)
    if not ax:
        raise ValueError(f"{what}: no axis to transform for shape {re.shape}")
    n = _points(re.shape, ax)
    scale = _norm_scale(norm, n, inverse, what)
    return apply(DFT, (re, im), {"axes": ax, "inverse": bool(inverse), "scale": scale})


def fft(re, im=None, axis=-1, norm=None):
    """1-D DFT along ``axis``: ``X_k = Σ_t x_t e^{−2πi kt/n}``; returns ``(re, im)``."""
    return fftn(re, im, (axis,), norm)


def ifft(re, im=None, axis=-1, norm=None):
    """Inverse 1-D DFT along ``axis`` (``1/n`` by default); returns ``(re, im)``."""
    return fftn(re, im, (axis,), norm, inverse=True)


def fft2(re, im=None, axes=(-2, -1), norm=None):
    """2-D DFT over ``axes``; returns ``(re, im)``."""
    if len(axes) != 2:
        raise ValueError(f"fft2: axes must name two axes, got {axes}")
    return fftn(re, im, axes, norm)


def ifft2(re, im=None, axes=(-2, -1), norm=None):
    return fftn(re, im, axes, norm, inverse=True)


def _take(x, axis, start, stop):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def rfft(x, axis=-1, norm=None):
    """DFT of a real signal, the ``n//2 + 1`` non-redundant frequencies; returns
    ``(re, im)``."""
    x = floating(to_tensor(x, "rfft"))
    axis = normalize_axes(axis, x.ndim, "rfft")[0]
    re, im = fft(x, None, axis, norm)
    m = x.shape[axis] // 2 + 1
    return _take(re, axis, 0, m), _take(im, axis, 0, m)


def irfft(re, im=None, n=None, axis=-1, norm=None):
    """Inverse of :func:`rfft`: a real signal of length ``n`` (default ``2(m − 1)``) from
    ``m`` non-redundant frequencies; the spectrum is completed by Hermitian symmetry,
    and, as in NumPy, the imaginary parts of the zero (and Nyquist) terms are ignored."""
    re, im = _pair(re, im, "irfft")
    axis = normalize_axes(axis, re.ndim, "irfft")[0]
    m = re.shape[axis]
    n = 2 * (m - 1) if n is None else int(n)
    if n < 1:
        raise ValueError(f"irfft: output length must be positive, got {n} (from {m} frequencies)")
    half = n // 2 + 1
    if m < half:                                     # zero-pad missing frequencies
        pad = [(0, 0)] * re.ndim
        pad[axis] = (0, half - m)
        re, im = _pad(re, pad), _pad(im, pad)
    re, im = _take(re, axis, 0, half), _take(im, axis, 0, half)
    tail = n - half                                   # X[n-k] = conj(X[k]) for k = 1..tail
    if tail > 0:
        r_tail = flip(_take(re, axis, 1, 1 + tail), axis)
        i_tail = -flip(_take(im, axis, 1, 1 + tail), axis)
        re = concatenate([re, r_tail], axis)
        im = concatenate([im, i_tail], axis)
    out, _ = fftn(re, im, (axis,), norm, inverse=True)
    return out


__all__ = ["fft", "ifft", "fft2", "ifft2", "fftn", "rfft", "irfft", "DFT"]
