"""The error function for float32 arrays, and the exact GELU built on it.

SciPy's ``erf`` evaluates a double-precision approximation per element and converts
float32 to float64 and back: about 16 ns an element here, which made ``erf`` a fifth of a
ViT training step. Float32 only needs about seven significant digits, so these kernels
use two short approximations, evaluated in float64 and rounded once:

* ``|z| < 0.5``: the Maclaurin series ``erf(z) = 2/√π Σ (−1)ⁿ z²ⁿ⁺¹ / (n! (2n+1))``, seven
  terms (the first omitted term is below 4e-10 there);
* ``|z| ≥ 0.5``: ``erfc(|z|) = t exp(−z² + P(t))`` with ``t = 1 / (1 + |z|/2)`` and a
  degree-9 polynomial ``P`` (the Chebyshev fit published in *Numerical Recipes*, relative
  error below 1.2e-7 for every ``z ≥ 0``); then ``erf(z) = ±(1 − erfc(|z|))``.

The result is within about two float32 units in the last place of the exact value; the
tests compare with SciPy over the whole range. Float64 arrays keep SciPy's ``erf``.
"""

from __future__ import annotations

import math

import numpy as np

from ...backend.compiled import ENABLED, kernel_fma

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


_BLOCK = 512                         # elements per pass, so the passes stay in cache
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.693147180369123816490    # ln 2 in two parts: k·ln2 is subtracted exactly
_LN2_LO = 1.90821492927058770002e-10


@kernel_fma
def erf_f32(x, g, out, mode):
    """For flat float32 arrays: ``mode`` 0, ``out = erf(x)``; 1, the exact GELU
    ``out = x Φ(x)``; 2, its gradient ``out = g (Φ(x) + x φ(x))``. ``Φ(x) = (1 + erf(x/√2))/2``;
    below ``x = −√2/2`` it is taken from erfc directly, so GELU's negative tail keeps its
    relative precision where ``1 + erf`` would cancel. (``g`` is unused unless ``mode`` is 2.)

    Blocks of elements go through two passes the compiler vectorises. The first computes
    the exponentials (erfc's ``exp(−z² + P(t))``, and ``exp(−z²)`` for the gradient) by
    range reduction: ``eʸ = 2ᵏ eʳ`` with ``|r| ≤ ln2/2``, a degree-8 Taylor polynomial
    (relative error below 1e-9) for ``eʳ`` and ``2ᵏ`` written straight into the exponent
    bits of a float64, so no call to the C library's scalar ``exp`` stops the vector
    loop. The second combines them with the series for small arguments."""
    n = x.size
    t_buf = np.empty(_BLOCK)
    e_buf = np.empty(2 * _BLOCK)         # erfc's exp, then the gradient's e^(-z²)
    bits = np.empty(2 * _BLOCK, dtype=np.int64)
    scale = bits.view(np.float64)
    for s in range(0, n, _BLOCK):
        m = min(_BLOCK, n - s)
        for i in range(m):                           # 1. the exponentials
            z = np.float64(x[s + i])
            if mode != 0:
                z *= _SQRT_HALF
            a = abs(z)
            t = 1.0 / (1.0 + 0.5 * a)                # erfc(|z|) = t exp(-z² + P(t))
            p = (-1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
                -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
                    -0.82215223 + t * 0.17087277)))))))))
            t_buf[i] = t
            for j in range(2 if mode == 2 else 1):
                y = -a * a + p if j == 0 else -a * a
                y = y if y > -700.0 else -700.0      # (NaN too: its result is set below)
                k = math.floor(y * _INV_LN2 + 0.5)
                r = (y - k * _LN2_HI) - k * _LN2_LO
                e_buf[j * _BLOCK + i] = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (
                    1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (
                        1.0 / 40320.0))))))))
                bits[j * _BLOCK + i] = (np.int64(k) + 1023) << 52
        for i in range(m):                           # 2. erf, GELU or its gradient
            v = np.float64(x[s + i])
            z = v if mode == 0 else v * _SQRT_HALF
            c = t_buf[i] * e_buf[i] * scale[i]
            if abs(z) < 0.5:                         # Maclaurin series of erf
                z2 = z * z
                sm = 1.0 + z2 * (-1.0 / 3.0 + z2 * (1.0 / 10.0 + z2 * (-1.0 / 42.0 + z2 * (
                    1.0 / 216.0 + z2 * (-1.0 / 1320.0 + z2 * (1.0 / 9360.0))))))
                erf_z = _TWO_OVER_SQRT_PI * z * sm
                two_phi = 1.0 + erf_z
            else:
                erf_z = 1.0 - c if z > 0 else c - 1.0
                two_phi = 2.0 - c if z > 0 else c
            if mode == 0:
                res = erf_z
            elif mode == 1:
                res = 0.5 * v * two_phi
            else:
                res = g[s + i] * (0.5 * two_phi + v * e_buf[_BLOCK + i] * scale[_BLOCK + i]
                                  * _INV_SQRT_2PI)
            out[s + i] = res if v == v else v        # NaN in, NaN out


def applies(x) -> bool:
    """Whether the float32 kernels serve ``x`` (a plain NumPy float32 array, kernels on)."""
    return ENABLED and type(x) is np.ndarray and x.dtype == np.float32


def _run(x, g, mode):
    flat = np.ascontiguousarray(x).reshape(-1)
    gflat = flat if g is None else np.ascontiguousarray(g, dtype=np.float32).reshape(-1)
    out = np.empty_like(flat)
    erf_f32(flat, gflat, out, mode)
    return out.reshape(x.shape)


def erf(x):
    """``erf`` of a float32 NumPy array (see the module's docstring)."""
    return _run(x, None, 0)


def gelu(x):
    """Exact GELU ``x Φ(x)`` of a float32 NumPy array."""
    return _run(x, None, 1)


def gelu_vjp(g, x):
    """``g · gelu'(x)`` for float32 NumPy arrays of one shape, in one pass."""
    return _run(x, g, 2)


@kernel_fma
def exp_into(x, out, bits):
    """``out[i] = exp(x[i])`` for 1-D arrays (``bits``: int64 scratch of at least their
    length), by the range reduction of ``erf_f32`` in float64: relative error below
    1e-9, enough for float32 results, in a loop the compiler vectorises (the C library's
    ``exp`` is one scalar call per element). Arguments are clamped to ±700; NaN stays NaN."""
    n = x.size
    scale = bits.view(np.float64)
    for i in range(n):
        y = np.float64(x[i])
        y = y if y > -700.0 else -700.0
        y = y if y < 700.0 else 700.0
        k = math.floor(y * _INV_LN2 + 0.5)
        r = (y - k * _LN2_HI) - k * _LN2_LO
        out[i] = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (
            1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0))))))))
        bits[i] = (np.int64(k) + 1023) << 52
    for i in range(n):
        v = x[i]
        out[i] = out[i] * scale[i] if v == v else v


@kernel_fma
def exp_all(arg, e, bits, fast):
    """``e[i] = exp(arg[i])`` for 1-D arrays: through :func:`exp_into` when ``fast`` (float32
    data: one vectorised loop), else one call of the C library's exp per element (float64
    keeps its last bits). Step-by-step kernels gather a step's exponents into ``arg`` and
    call this once per step."""
    if fast:
        exp_into(arg, e, bits)
    else:
        for i in range(arg.size):
            e[i] = np.exp(arg[i])
