"""Float32 transcendental kernels at SIMD speed: erf, GELU (exact, and its tanh form) and
their slopes, the logistic sigmoid, SiLU and softplus (forward, and the one-pass backward rules of the
layers that use them), GELU in a linear layer's epilogue, and the inlined sigmoid and
tanh of the recurrent layers' loops.

SciPy's ``erf`` and ``expit`` evaluate a double-precision approximation element by
element (about 16 ns an element for ``erf`` here); a float32 network needs about seven
significant digits, which short polynomials give at a fraction of a nanosecond when the
compiler can run eight elements per instruction. Each kernel is one loop over flat
float32 arrays whose body is straight-line float32 arithmetic: constants are float32,
clamps are selects (no branches), nothing calls the C library, and the loop is compiled
with :func:`wonderland.backend.compiled.kernel_fast` (fused multiply-adds; NaN and
infinities kept). LLVM then vectorises it (``<8 x float>`` in the IR on AVX2 and
AVX-512 machines, whose preferred vector width is 256 bits).

* **erf**: ``erf(z) = z P(z²) / Q(z²)`` with ``z`` clamped to [−4, 4] (beyond, erf is
  ±1 in float32), ``P`` of degree 6 and ``Q`` of degree 4: the minimax coefficients that
  Eigen and XLA publish for float32. The approximation itself is within 7e-8 of erf; in
  float32 arithmetic the result is within 3.9e-7 (absolute and relative) of the exact
  value over the whole float32 range.
* **tanh** (inside the recurrent layers' loops; NumPy's own float32 tanh is already
  vectorised): ``x P(x²) / Q(x²)`` with ``x`` clamped to ±7.9053, ``P`` of degree 6 and
  ``Q`` of degree 3, Eigen's and XLA's float32 coefficients: within 4e-7, with the
  relative precision kept near 0.
* **exp** of arguments ``y ≤ 0`` (all these kernels need): ``eʸ = 2ᵏ eʳ`` with
  ``k = ⌊y/ln2 + ½⌋``, ``r = y − k ln2`` (ln 2 in two parts, so the subtraction is exact)
  and Cephes' degree-7 polynomial for ``eʳ``; ``2ᵏ`` is written straight into a float's
  exponent bits (:func:`~wonderland.backend.compiled.float32_from_bits`), as two factors so
  that results down to the subnormals come out right. Within 1 unit in the last place.
* **log1p** of ``e ∈ [0, 1]`` (softplus): ``u = 1 + e`` brought to ``[√½, √2]``, Cephes'
  polynomial for ``log(1 + f)``, plus the rounding error of ``1 + e`` divided by ``u``.

GELU is ``½ x (1 + erf(x/√2))``: in its negative tail ``1 + erf`` cancels, so the error
there is judged in absolute terms (about ``|x|/2 · 3.9e-7``), as for PyTorch's own GELU.
GELU's tanh form (GPT-2's) ``½ x (1 + tanh u)``, ``u = √(2/π) (x + 0.044715 x³)``, is
computed as ``x σ(2u)``, with ``σ(2u)`` and ``σ(−2u)`` from one exponential, so the tail
keeps its relative precision and the slope ``σ(2u) + 2x σ(2u) σ(−2u) u'`` has no
cancelling ``1 − tanh²``: within 1.4e-7 · max(|x|, 1) (value) and 2e-7 (slope).
Float64 arrays keep SciPy's and NumPy's functions. The tests compare every kernel with
SciPy in float64 over the whole float32 range; ``benchmarks/README.md`` has the table of
errors and times.
"""

from __future__ import annotations

import math

import numpy as np

from ...backend import compiled, threads
from ...backend.compiled import float32_from_bits, kernel_fast, kernel_fma

_F = np.float32
_ZERO, _HALF, _ONE, _TWO = _F(0.0), _F(0.5), _F(1.0), _F(2.0)
_SQRT_HALF = _F(1.0 / math.sqrt(2.0))
_INV_SQRT_2PI = _F(1.0 / math.sqrt(2.0 * math.pi))

# GELU's tanh form: ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))
_GELU_TANH_C = _F(math.sqrt(2.0 / math.pi))
_GELU_TANH_A = _F(0.044715)
_GELU_TANH_3A = _F(3 * 0.044715)

# erf(z) = z P(z²) / Q(z²) on [-4, 4] (Eigen's and XLA's float32 coefficients)
_ERF_CLAMP = _F(4.0)
_ERF_P = tuple(_F(c) for c in (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                               -5.69250639462346e-05, -7.34990630326855e-04,
                               -2.95459980854025e-03, -1.60960333262415e-02))
_ERF_Q = tuple(_F(c) for c in (-1.45660718464996e-05, -2.13374055278905e-04,
                               -1.68282697438203e-03, -7.37332916720468e-03,
                               -1.42647390514189e-02))
_P6, _P5, _P4, _P3, _P2, _P1, _P0 = _ERF_P
_Q4, _Q3, _Q2, _Q1, _Q0 = _ERF_Q

# tanh(x) = x P(x²) / Q(x²) on [-7.9053, 7.9053] (Eigen's and XLA's float32 coefficients)
_TANH_CLAMP = _F(7.90531110763549805)
_T6, _T5, _T4, _T3, _T2, _T1, _T0 = (_F(c) for c in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03))
_U3, _U2, _U1, _U0 = (_F(c) for c in (1.19825839466702e-06, 1.18534705686654e-04,
                                       2.26843463243900e-03, 4.89352518554385e-03))

# e^y: ln 2 in two parts (the first exact in float32 times any k here) and Cephes' expf
_EXP_LO = _F(-104.0)                 # e^-104 is below half the smallest subnormal: 0
_LOG2E = _F(1.4426950408889634)
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)
_E5, _E4, _E3, _E2, _E1, _E0 = (_F(c) for c in (1.9875691500e-4, 1.3981999507e-3,
                                                 8.3334519073e-3, 4.1665795894e-2,
                                                 1.6666665459e-1, 5.0000001201e-1))
_BIAS = np.int32(127)
_MANTISSA = np.int32(23)

# log(1 + f) for f in [√½ − 1, √2 − 1] (Cephes' logf)
_SQRT2 = _F(math.sqrt(2.0))
_L8, _L7, _L6, _L5, _L4, _L3, _L2, _L1, _L0 = (_F(c) for c in (
    7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
    -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1))


# ----------------------------------------------------------------------------- inlined helpers
@kernel_fast(inline=True)
def _erf(z):
    """erf of a float32 ``z`` (NaN stays NaN)."""
    z = _ERF_CLAMP if z > _ERF_CLAMP else z          # selects, not branches; NaN passes
    z = -_ERF_CLAMP if z < -_ERF_CLAMP else z
    z2 = z * z
    p = _P6 * z2 + _P5
    p = p * z2 + _P4
    p = p * z2 + _P3
    p = p * z2 + _P2
    p = p * z2 + _P1
    p = p * z2 + _P0
    q = _Q4 * z2 + _Q3
    q = q * z2 + _Q2
    q = q * z2 + _Q1
    q = q * z2 + _Q0
    return z * (p / q)                               # (z p underflows for tiny z)


@kernel_fast(inline=True)
def tanh_f32(x):
    """tanh of a float32 ``x`` (NaN stays NaN): within 4e-7, relative precision kept near
    0. Used inside the recurrent layers' loops, where a call to NumPy's would stop them."""
    x = _TANH_CLAMP if x > _TANH_CLAMP else x
    x = -_TANH_CLAMP if x < -_TANH_CLAMP else x
    x2 = x * x
    p = _T6 * x2 + _T5
    p = p * x2 + _T4
    p = p * x2 + _T3
    p = p * x2 + _T2
    p = p * x2 + _T1
    p = p * x2 + _T0
    q = _U3 * x2 + _U2
    q = q * x2 + _U1
    q = q * x2 + _U0
    return x * (p / q)


@kernel_fast(inline=True)
def _exp_neg(y):
    """``e^y`` of a float32 ``y ≤ 0`` (below −104: 0; a NaN gives a meaningless number,
    which the callers replace)."""
    y = _EXP_LO if not y >= _EXP_LO else y           # NaN too: the integer part stays defined
    kf = np.floor(y * _LOG2E + _HALF)
    r = y - kf * _LN2_HI
    r = r - kf * _LN2_LO
    p = _E5 * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + _E1
    p = p * r + _E0
    p = p * (r * r) + r + _ONE
    k = np.int32(kf)
    half = k >> 1                                    # 2^k as two factors: k down to -150
    return (p * float32_from_bits((half + _BIAS) << _MANTISSA)
            * float32_from_bits((k - half + _BIAS) << _MANTISSA))


@kernel_fast(inline=True)
def _log1p_unit(e):
    """``log(1 + e)`` of a float32 ``e`` in [0, 1]."""
    u = _ONE + e
    lost = e - (u - _ONE)                            # what rounding 1 + e dropped, exactly
    big = u > _SQRT2
    m = u * _HALF if big else u                      # m in [√½, √2]: u = 2^kf m
    kf = _ONE if big else _ZERO
    f = m - _ONE                                     # exact
    z = f * f
    p = _L8 * f + _L7
    p = p * f + _L6
    p = p * f + _L5
    p = p * f + _L4
    p = p * f + _L3
    p = p * f + _L2
    p = p * f + _L1
    p = p * f + _L0
    y = f * z * p + kf * _LN2_LO - _HALF * z
    return (f + y) + kf * _LN2_HI + lost / u


@kernel_fast(inline=True)
def sigmoid_f32(v):
    """σ(v) = 1 / (1 + e^-v) as ``e / (1 + e)`` or ``1 / (1 + e)`` with ``e = e^-|v|``: never
    overflows, and tiny results keep their relative precision."""
    e = _exp_neg(-abs(v))
    s = (e if v < _ZERO else _ONE) / (_ONE + e)
    return s if v == v else v


@kernel_fast(inline=True)
def _silu_slope(v):
    """``σ(v) (1 + v σ(−v))``, the derivative of ``v σ(v)``, with both σ(v) and
    σ(−v) = 1 − σ(v) from one exponential (each keeps its own relative precision);
    0 at −∞, 1 at +∞."""
    e = _exp_neg(-abs(v))
    d = _ONE / (_ONE + e)
    neg = v < _ZERO
    s = e * d if neg else d
    rest = d if neg else e * d
    vrest = _ZERO if rest == _ZERO else v * rest
    slope = _ZERO if s == _ZERO else s * (_ONE + vrest)
    return slope if v == v else v


@kernel_fast(inline=True)
def _sigmoid_both(w):
    """``(σ(w), σ(−w))`` from one exponential ``e = e^−|w|``, each with its own relative
    precision (``1 − σ`` would cancel in the tails)."""
    e = _exp_neg(-abs(w))
    d = _ONE / (_ONE + e)
    small = e * d
    return (small, d) if w < _ZERO else (d, small)


@kernel_fast(inline=True)
def _gelu_value(v, tanh_form):
    """GELU of a float32 ``v``: exact, ``½ v (1 + erf(v/√2))``, or the tanh form ``½ v (1 +
    tanh(u))`` with ``u = √(2/π) (v + 0.044715 v³)``, written as ``v σ(2u)`` so that the
    negative tail keeps its relative precision; 0 at −∞, NaN stays NaN."""
    if tanh_form:
        s, _ = _sigmoid_both(_TWO * _GELU_TANH_C * (v + _GELU_TANH_A * v * v * v))
        y = _ZERO if s == _ZERO else v * s
        return y if v == v else v
    two_phi = _ONE + _erf(v * _SQRT_HALF)
    return _ZERO if two_phi == _ZERO else _HALF * v * two_phi


@kernel_fast(inline=True)
def _gelu_slope(v, tanh_form):
    """d GELU / dv at a float32 ``v``: ``Φ(v) + v φ(v)`` (one ``exp(−v²/2)``), or for the
    tanh form ``σ(2u) + 2 v σ(2u) σ(−2u) u'`` (``½ (1 + tanh u) + ½ v sech²(u) u'``); 1 at
    +∞, 0 at −∞."""
    if tanh_form:
        v2 = v * v
        s, r = _sigmoid_both(_TWO * _GELU_TANH_C * (v + _GELU_TANH_A * v2 * v))
        both = s * r
        tail = _ZERO if both == _ZERO else \
            _TWO * v * both * _GELU_TANH_C * (_ONE + _GELU_TANH_3A * v2)
        d = s + tail
        return d if v == v else v
    phi = _HALF + _HALF * _erf(v * _SQRT_HALF)
    density = _exp_neg(-_HALF * v * v)
    tail = _ZERO if density == _ZERO else v * density * _INV_SQRT_2PI
    return phi + tail


# ----------------------------------------------------------------------------- kernels
@kernel_fast
def erf_kernel(x, out):
    """``out = erf(x)``."""
    for i in range(x.size):
        out[i] = _erf(x[i])


@kernel_fast
def gelu_kernel(x, out):
    """``out = x Φ(x) = ½ x (1 + erf(x/√2))`` (0 at −∞)."""
    for i in range(x.size):
        out[i] = _gelu_value(x[i], False)


@kernel_fast
def gelu_grad_kernel(g, x, out):
    """``out = g (Φ(x) + x φ(x))``: GELU's slope times the cotangent, one vectorised
    ``exp(−x²/2)`` per element."""
    for i in range(x.size):
        out[i] = g[i] * _gelu_slope(x[i], False)


@kernel_fast
def gelu_tanh_kernel(x, out):
    """``out = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))`` (0 at −∞)."""
    for i in range(x.size):
        out[i] = _gelu_value(x[i], True)


@kernel_fast
def gelu_tanh_grad_kernel(g, x, out):
    """``out = g`` times the tanh form's slope."""
    for i in range(x.size):
        out[i] = g[i] * _gelu_slope(x[i], True)


@kernel_fast
def sigmoid_kernel(x, out):
    """``out = σ(x)``."""
    for i in range(x.size):
        out[i] = sigmoid_f32(x[i])


@kernel_fast
def silu_kernel(x, out):
    """``out = x σ(x)`` (0 at −∞)."""
    for i in range(x.size):
        v = x[i]
        s = sigmoid_f32(v)
        out[i] = _ZERO if s == _ZERO else v * s


@kernel_fast
def silu_grad_kernel(g, x, out):
    """``out = g σ(x) (1 + x (1 − σ(x)))``."""
    for i in range(x.size):
        out[i] = g[i] * _silu_slope(x[i])


@kernel_fast
def sigmoid_times_kernel(g, x, out):
    """``out = g σ(x)`` (softplus's backward)."""
    for i in range(x.size):
        out[i] = g[i] * sigmoid_f32(x[i])


@kernel_fast
def softplus_kernel(x, out):
    """``out = log(1 + e^x) = max(x, 0) + log1p(e^−|x|)``."""
    for i in range(x.size):
        v = x[i]
        pos = _ZERO if v < _ZERO else v              # NaN passes
        out[i] = pos + _log1p_unit(_exp_neg(-abs(v)))


@kernel_fast
def bias_gelu_kernel(h, bias, out, tanh_form):
    """The epilogue of ``gelu(x @ w + b)`` on the product ``h`` (rows × n): ``h += b`` in
    place (the backward reads it) and ``out = gelu(h)``, in one pass (``tanh_form``: the
    tanh form of GELU)."""
    rows, n = h.shape
    for r in range(rows):
        if tanh_form:
            for j in range(n):
                v = h[r, j] + bias[j]
                h[r, j] = v
                out[r, j] = _gelu_value(v, True)
        else:
            for j in range(n):
                v = h[r, j] + bias[j]
                h[r, j] = v
                out[r, j] = _gelu_value(v, False)


@kernel_fast
def gelu_grad_bias_kernel(g, h, out, g_bias, tanh_form):
    """``out = g gelu'(h)`` (rows × n) and ``g_bias`` (n) = its sum over the rows, in one
    pass (rows added one after another, as NumPy's ``sum(axis=0)`` does)."""
    rows, n = h.shape
    for j in range(n):
        g_bias[j] = _ZERO
    for r in range(rows):
        if tanh_form:
            for j in range(n):
                d = g[r, j] * _gelu_slope(h[r, j], True)
                out[r, j] = d
                g_bias[j] += d
        else:
            for j in range(n):
                d = g[r, j] * _gelu_slope(h[r, j], False)
                out[r, j] = d
                g_bias[j] += d


# ----------------------------------------------------------------------------- array level
def applies(x) -> bool:
    """Whether the float32 kernels serve ``x`` (a plain NumPy float32 array, kernels on)."""
    return compiled.ENABLED and type(x) is np.ndarray and x.dtype == np.float32


def _flat(a):
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


def _map(kern, x, g=None):
    """``kern`` over ``x`` (and the cotangent ``g`` of its shape), split over the library's
    threads for large arrays."""
    xf = _flat(x)
    out = np.empty_like(xf)
    if g is None:
        threads.parallel_for(xf.size, lambda lo, hi, _: kern(xf[lo:hi], out[lo:hi]),
                             size=xf.size)
    else:
        gf = _flat(g)
        threads.parallel_for(xf.size, lambda lo, hi, _: kern(gf[lo:hi], xf[lo:hi], out[lo:hi]),
                             size=xf.size)
    return out.reshape(np.shape(x))


def erf(x):
    """``erf`` of a float32 NumPy array."""
    return _map(erf_kernel, x)


def gelu(x, tanh_form=False):
    """GELU of a float32 NumPy array: exact ``x Φ(x)``, or the tanh form."""
    return _map(gelu_tanh_kernel if tanh_form else gelu_kernel, x)


def gelu_vjp(g, x, tanh_form=False):
    """``g · gelu'(x)`` for float32 NumPy arrays of one shape, in one pass."""
    return _map(gelu_tanh_grad_kernel if tanh_form else gelu_grad_kernel, x, g)


def sigmoid(x):
    """The logistic sigmoid of a float32 NumPy array."""
    return _map(sigmoid_kernel, x)


def silu(x):
    """``x σ(x)`` of a float32 NumPy array."""
    return _map(silu_kernel, x)


def silu_vjp(g, x):
    """``g · silu'(x)`` in one pass."""
    return _map(silu_grad_kernel, x, g)


def softplus(x):
    """``log(1 + e^x)`` of a float32 NumPy array."""
    return _map(softplus_kernel, x)


def softplus_vjp(g, x):
    """``g σ(x)`` (softplus's slope) in one pass."""
    return _map(sigmoid_times_kernel, x, g)


# ----------------------------------------------------------------------------- float64 exponentials
# for the step-by-step kernels of the selective scan and RWKV: float64 arithmetic, any sign
_INV_LN2 = 1.4426950408889634
_LN2_HI_64 = 0.693147180369123816490    # ln 2 in two parts: k·ln2 is subtracted exactly
_LN2_LO_64 = 1.90821492927058770002e-10


@kernel_fma
def exp_into(x, out, bits):
    """``out[i] = exp(x[i])`` for 1-D arrays (``bits``: int64 scratch of at least their
    length), by range reduction in float64 (``e^y = 2^k e^r``, ``|r| ≤ ln2/2``, a degree-8
    Taylor polynomial, ``2^k`` written into the exponent bits): relative error below 1e-9,
    enough for float32 results, in a loop the compiler vectorises (the C library's
    ``exp`` is one scalar call per element). Arguments are clamped to ±700; NaN stays NaN."""
    n = x.size
    scale = bits.view(np.float64)
    for i in range(n):
        y = np.float64(x[i])
        y = y if y > -700.0 else -700.0
        y = y if y < 700.0 else 700.0
        k = math.floor(y * _INV_LN2 + 0.5)
        r = (y - k * _LN2_HI_64) - k * _LN2_LO_64
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


def bias_gelu(h, bias, tanh_form=False):
    """``gelu(h + bias)`` for a C-contiguous float32 product ``h`` (rows × n), which gets
    ``h + bias`` in place; rows split over the library's threads."""
    out = np.empty_like(h)
    b = np.ascontiguousarray(bias, dtype=np.float32)
    threads.parallel_for(h.shape[0], lambda lo, hi, _: bias_gelu_kernel(
        h[lo:hi], b, out[lo:hi], tanh_form), size=h.size)
    return out


def gelu_grad_bias(g, h, tanh_form=False):
    """``(g gelu'(h), its sum over every axis but the last)`` for float32 ``g`` and ``h``
    of one shape, in one pass (rows split over the library's threads)."""
    n = h.shape[-1]
    h2 = np.ascontiguousarray(h).reshape(-1, n)
    g2 = np.ascontiguousarray(g, dtype=np.float32).reshape(-1, n)
    out = np.empty_like(h2)
    parts = np.zeros((threads.get_num_threads(), n), np.float32)
    threads.parallel_for(h2.shape[0], lambda lo, hi, lane: gelu_grad_bias_kernel(
        g2[lo:hi], h2[lo:hi], out[lo:hi], parts[lane], tanh_form), size=h2.size)
    return out.reshape(h.shape), parts.sum(axis=0)
