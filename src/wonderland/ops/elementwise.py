"""Elementwise primitives: arithmetic, unary math, comparisons, where, clip, casts.

Every primitive sits with its rules: ``vjp`` gives one cotangent rule per input
(``g`` is the output cotangent, ``out`` the output), ``jvp`` one tangent contribution
per input. Rules may return the broadcast shape; the engine sums cotangents back to
each input's shape and broadcasts tangents to the output's.
"""

from __future__ import annotations

import math

from .. import backend as B
from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ._common import constant, floating, operands, to_tensor

xp = B.xp

# ----------------------------------------------------------------------------- binary
_add = Primitive(
    "add", xp.add,
    vjp=(lambda g, out, x, y: g, lambda g, out, x, y: g),
    jvp=(lambda t, out, x, y: t, lambda t, out, x, y: t))

_subtract = Primitive(
    "subtract", xp.subtract,
    vjp=(lambda g, out, x, y: g, lambda g, out, x, y: -g),
    jvp=(lambda t, out, x, y: t, lambda t, out, x, y: -t))

_multiply = Primitive(
    "multiply", xp.multiply,
    vjp=(lambda g, out, x, y: g * y, lambda g, out, x, y: g * x),
    jvp=(lambda t, out, x, y: t * y, lambda t, out, x, y: x * t))

_divide = Primitive(
    "divide", xp.true_divide,
    vjp=(lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y),
    jvp=(lambda t, out, x, y: t / y, lambda t, out, x, y: -t * out / y))


def _safe_log_times(out, x):
    """``out * log(x)`` with 0 where x == 0 (the derivative of x**y in y there)."""
    zero = constant(x.data == 0)
    safe_x = where(zero, 1.0, x)
    return where(zero, 0.0, out * log(safe_x))


def _power_dx(x, y):
    """``y · x^(y-1)``, taken as 0 where y == 0 (so 0^0 does not give 0 · inf)."""
    zero = constant(y.data == 0)
    return y * x ** (where(zero, 1.0, y) - 1.0)


_power = Primitive(
    "power", xp.power,
    vjp=(lambda g, out, x, y: g * _power_dx(x, y),
         lambda g, out, x, y: g * _safe_log_times(out, x)),
    jvp=(lambda t, out, x, y: t * _power_dx(x, y),
         lambda t, out, x, y: t * _safe_log_times(out, x)))


def _pow_scalar_rule(g, out, x, *, p):
    if p == 0:
        return g * 0.0
    return g * (p * pow_scalar(x, p - 1))


_pow_scalar = Primitive(
    "pow_scalar", lambda x, *, p: xp.power(x, p),
    vjp=_pow_scalar_rule, jvp=_pow_scalar_rule)


def _tie_weight(x, y, greater: bool):
    """1 where x wins, 0.5 at ties, 0 where y wins (a constant for differentiation)."""
    wins = (x.data > y.data) if greater else (x.data < y.data)
    w = wins + 0.5 * (x.data == y.data)
    return constant(w.astype(xp.result_type(x.data, y.data)))


def _extremum(name, fn, greater):
    return Primitive(
        name, fn,
        vjp=(lambda g, out, x, y: g * _tie_weight(x, y, greater),
             lambda g, out, x, y: g * (1.0 - _tie_weight(x, y, greater))),
        jvp=(lambda t, out, x, y: t * _tie_weight(x, y, greater),
             lambda t, out, x, y: t * (1.0 - _tie_weight(x, y, greater))))


_maximum = _extremum("maximum", xp.maximum, True)
_minimum = _extremum("minimum", xp.minimum, False)


def add(x, y) -> Tensor:
    """Elementwise ``x + y`` with NumPy broadcasting."""
    x, y = operands(x, y, "add")
    return apply(_add, (x, y))


def subtract(x, y) -> Tensor:
    """Elementwise ``x - y``."""
    x, y = operands(x, y, "subtract")
    return apply(_subtract, (x, y))


def multiply(x, y) -> Tensor:
    """Elementwise (Hadamard) product ``x * y``."""
    x, y = operands(x, y, "multiply")
    return apply(_multiply, (x, y))


def divide(x, y) -> Tensor:
    """Elementwise true division ``x / y`` (integer inputs give a float result)."""
    x, y = operands(x, y, "divide")
    if x.data.dtype.kind != "f" and y.data.dtype.kind != "f":
        x, y = floating(x), floating(y)
    return apply(_divide, (x, y))


def pow_scalar(x, p) -> Tensor:
    """``x ** p`` for a Python number ``p`` (which is a constant, not differentiated)."""
    return apply(_pow_scalar, (x,), {"p": p})


def power(x, y) -> Tensor:
    """Elementwise ``x ** y``; differentiable in both when both are tensors.

    The derivative in ``y`` is ``x**y * log(x)``, taken as 0 where ``x == 0``.
    """
    if isinstance(x, Tensor) and isinstance(y, (int, float)) and not isinstance(y, bool):
        if x.data.dtype.kind != "f" and (isinstance(y, float) or y < 0):
            x = floating(x)
        return pow_scalar(x, y)
    x, y = operands(x, y, "power")
    return apply(_power, (x, y))


def maximum(x, y) -> Tensor:
    """Elementwise maximum; at ties each input receives half of the gradient."""
    x, y = operands(x, y, "maximum")
    return apply(_maximum, (x, y))


def minimum(x, y) -> Tensor:
    """Elementwise minimum; at ties each input receives half of the gradient."""
    x, y = operands(x, y, "minimum")
    return apply(_minimum, (x, y))


# ----------------------------------------------------------------------------- unary
_negative = Primitive("negative", xp.negative, vjp=lambda g, out, x: -g, linear=True)
_exp = Primitive("exp", xp.exp, vjp=lambda g, out, x: g * out,
                 jvp=lambda t, out, x: t * out)
_log = Primitive("log", xp.log, vjp=lambda g, out, x: g / x, jvp=lambda t, out, x: t / x)
_log1p = Primitive("log1p", xp.log1p, vjp=lambda g, out, x: g / (x + 1.0),
                   jvp=lambda t, out, x: t / (x + 1.0))
_expm1 = Primitive("expm1", xp.expm1, vjp=lambda g, out, x: g * (out + 1.0),
                   jvp=lambda t, out, x: t * (out + 1.0))
_sqrt = Primitive("sqrt", xp.sqrt, vjp=lambda g, out, x: g / (out * 2.0),
                  jvp=lambda t, out, x: t / (out * 2.0))
_abs = Primitive("abs", xp.abs, vjp=lambda g, out, x: g * sign(x),
                 jvp=lambda t, out, x: t * sign(x))
_sin = Primitive("sin", xp.sin, vjp=lambda g, out, x: g * cos(x),
                 jvp=lambda t, out, x: t * cos(x))
_cos = Primitive("cos", xp.cos, vjp=lambda g, out, x: -g * sin(x),
                 jvp=lambda t, out, x: -t * sin(x))
_tan = Primitive("tan", xp.tan, vjp=lambda g, out, x: g * (out * out + 1.0),
                 jvp=lambda t, out, x: t * (out * out + 1.0))
_tanh = Primitive("tanh", xp.tanh, vjp=lambda g, out, x: g * (1.0 - out * out),
                  jvp=lambda t, out, x: t * (1.0 - out * out))
_sigmoid = Primitive("sigmoid", B.expit, vjp=lambda g, out, x: g * (out * (1.0 - out)),
                     jvp=lambda t, out, x: t * (out * (1.0 - out)))
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_erf = Primitive("erf", B.erf,
                 vjp=lambda g, out, x: g * (_TWO_OVER_SQRT_PI * exp(-(x * x))),
                 jvp=lambda t, out, x: t * (_TWO_OVER_SQRT_PI * exp(-(x * x))))


_softplus = Primitive("softplus", lambda x: xp.logaddexp(0, x),
                      vjp=lambda g, out, x: g * sigmoid(x), jvp=lambda t, out, x: t * sigmoid(x))


def _positive_mask(x):
    return constant(x.data > 0)


_relu = Primitive("relu", lambda x: xp.maximum(x, 0),
                  vjp=lambda g, out, x: g * _positive_mask(x),
                  jvp=lambda t, out, x: t * _positive_mask(x))


def _unary(prim, float_only=True):
    def op(x) -> Tensor:
        x = to_tensor(x, prim.name)
        if float_only and x.data.dtype.kind != "f":
            x = floating(x)
        return apply(prim, (x,))

    op.__name__ = prim.name
    return op


negative = _unary(_negative, float_only=False)
exp = _unary(_exp)
log = _unary(_log)
log1p = _unary(_log1p)
expm1 = _unary(_expm1)
sqrt = _unary(_sqrt)
abs = _unary(_abs, float_only=False)  # noqa: A001 - NumPy's name
sin = _unary(_sin)
cos = _unary(_cos)
tan = _unary(_tan)
tanh = _unary(_tanh)
sigmoid = _unary(_sigmoid)
erf = _unary(_erf)
relu = _unary(_relu, float_only=False)
softplus = _unary(_softplus)
softplus.__doc__ = "Elementwise ``log(1 + exp(x))``, computed stably; its derivative is the sigmoid."

negative.__doc__ = "Elementwise ``-x``."
exp.__doc__ = "Elementwise exponential."
log.__doc__ = "Elementwise natural logarithm."
log1p.__doc__ = "Elementwise ``log(1 + x)``, accurate for small ``x``."
expm1.__doc__ = "Elementwise ``exp(x) - 1``, accurate for small ``x``."
sqrt.__doc__ = "Elementwise square root."
abs.__doc__ = "Elementwise absolute value; its derivative at 0 is taken as 0."
sin.__doc__ = "Elementwise sine."
cos.__doc__ = "Elementwise cosine."
tan.__doc__ = "Elementwise tangent."
tanh.__doc__ = "Elementwise hyperbolic tangent."
sigmoid.__doc__ = "Elementwise logistic sigmoid ``1 / (1 + exp(-x))``, computed stably."
erf.__doc__ = "Elementwise error function."
relu.__doc__ = "Elementwise ``max(x, 0)``; its derivative at 0 is taken as 0."


def square(x) -> Tensor:
    """Elementwise ``x * x``."""
    x = to_tensor(x, "square")
    return x * x


# ----------------------------------------------------------------------------- constant-gradient ops
def _nondiff(name, fn):
    return Primitive(name, fn, differentiable=False)


_sign = _nondiff("sign", xp.sign)
_floor = _nondiff("floor", xp.floor)
_ceil = _nondiff("ceil", xp.ceil)
_round = _nondiff("round", xp.round)
_isnan = _nondiff("isnan", xp.isnan)
_isinf = _nondiff("isinf", xp.isinf)
_isfinite = _nondiff("isfinite", xp.isfinite)
_logical_not = _nondiff("logical_not", xp.logical_not)


def sign(x) -> Tensor:
    """Elementwise sign (-1, 0 or 1); not differentiated (its derivative is 0)."""
    return apply(_sign, (to_tensor(x, "sign"),))


def floor(x) -> Tensor:
    """Elementwise floor; not differentiated."""
    return apply(_floor, (to_tensor(x, "floor"),))


def ceil(x) -> Tensor:
    """Elementwise ceiling; not differentiated."""
    return apply(_ceil, (to_tensor(x, "ceil"),))


def round(x) -> Tensor:  # noqa: A001 - NumPy's name
    """Elementwise rounding to the nearest integer (half to even); not differentiated."""
    return apply(_round, (to_tensor(x, "round"),))


def isnan(x) -> Tensor:
    return apply(_isnan, (to_tensor(x, "isnan"),))


def isinf(x) -> Tensor:
    return apply(_isinf, (to_tensor(x, "isinf"),))


def isfinite(x) -> Tensor:
    return apply(_isfinite, (to_tensor(x, "isfinite"),))


def logical_not(x) -> Tensor:
    return apply(_logical_not, (to_tensor(x, "logical_not"),))


def _comparison(name, fn):
    prim = _nondiff(name, fn)

    def op(x, y) -> Tensor:
        x, y = operands(x, y, name)
        return apply(prim, (x, y))

    op.__name__ = name
    op.__doc__ = f"Elementwise ``{name}`` as a bool tensor; not differentiated."
    return op


equal = _comparison("equal", xp.equal)
not_equal = _comparison("not_equal", xp.not_equal)
less = _comparison("less", xp.less)
less_equal = _comparison("less_equal", xp.less_equal)
greater = _comparison("greater", xp.greater)
greater_equal = _comparison("greater_equal", xp.greater_equal)
logical_and = _comparison("logical_and", xp.logical_and)
logical_or = _comparison("logical_or", xp.logical_or)
logical_xor = _comparison("logical_xor", xp.logical_xor)
floor_divide = _comparison("floor_divide", xp.floor_divide)
floor_divide.__doc__ = "Elementwise ``x // y``; not differentiated."
_remainder = Primitive(
    "remainder", xp.remainder,
    vjp=(lambda g, out, x, y: g, lambda g, out, x, y: -g * floor(x / y)),
    jvp=(lambda t, out, x, y: t, lambda t, out, x, y: -t * floor(x / y)))


def remainder(x, y) -> Tensor:
    """Elementwise ``x % y`` (sign of ``y``, as NumPy); d/dx = 1, d/dy = −floor(x/y)."""
    x, y = operands(x, y, "remainder")
    return apply(_remainder, (x, y))


# ----------------------------------------------------------------------------- where, clip, cast
def _where_jvp(tangents, out, inputs):
    _, tx, ty = tangents
    cond = inputs[0]
    if tx is None and ty is None:
        return None
    return where(cond, tx if tx is not None else 0.0, ty if ty is not None else 0.0)


_where = Primitive(
    "where", xp.where,
    vjp=(None, lambda g, out, c, x, y: where(c, g, 0.0), lambda g, out, c, x, y: where(c, 0.0, g)),
    jvp_all=_where_jvp)


def where(condition, x, y) -> Tensor:
    """Elements of ``x`` where ``condition`` holds, else of ``y`` (broadcast together).

    Only ``x`` and ``y`` are differentiated; each receives the gradient where it was
    chosen and zero elsewhere (so a nan in the unchosen branch does not leak).
    """
    c = to_tensor(condition, "where")
    if c.data.dtype.kind != "b":
        c = constant(c.data.astype(bool))
    x, y = operands(x, y, "where")
    return apply(_where, (c, x, y))


def _clip_mask(x, lo, hi):
    mask = xp.ones(x.data.shape, dtype=bool)
    if lo is not None:
        mask &= x.data >= lo
    if hi is not None:
        mask &= x.data <= hi
    return constant(mask)


_clip = Primitive(
    "clip", lambda x, *, lo, hi: xp.clip(x, lo, hi),
    vjp=lambda g, out, x, *, lo, hi: g * _clip_mask(x, lo, hi),
    jvp=lambda t, out, x, *, lo, hi: t * _clip_mask(x, lo, hi))


def clip(x, min=None, max=None) -> Tensor:  # noqa: A002 - NumPy's names
    """Limit values to ``[min, max]`` (either may be ``None``).

    The gradient passes where ``min <= x <= max`` (bounds included, as PyTorch) and is
    zero elsewhere. Bounds that are tensors being differentiated are differentiated too
    (through ``maximum``/``minimum``, which split ties).
    """
    x = to_tensor(x, "clip")
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")

    if any(isinstance(b, Tensor) and (b.requires_grad or b._tangents) for b in (min, max)):
        out = x if min is None else maximum(x, min)       # differentiable tensor bounds
        return out if max is None else minimum(out, max)

    def bound(b):
        return b.data if isinstance(b, Tensor) else b

    return apply(_clip, (x,), {"lo": bound(min), "hi": bound(max)})


_cast = Primitive("cast", lambda x, *, dtype: x.astype(dtype),
                  vjp=lambda g, out, x, *, dtype: g, linear=True)


def astype(x, dtype) -> Tensor:
    """``x`` converted to ``dtype``; float-to-float casts pass gradients through."""
    from ..core.dtypes import as_dtype

    x = to_tensor(x, "astype")
    dtype = as_dtype(dtype)
    if x.data.dtype == dtype:
        return x
    return apply(_cast, (x,), {"dtype": dtype})
