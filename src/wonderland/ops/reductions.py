"""Reductions and normalisations along axes: sum, mean, prod, max, min, var, std,
logsumexp, softmax, log_softmax, cumsum, argmax, argmin, any, all.

``axis`` is an int, a tuple of ints (negative counts from the end) or ``None`` for
every axis; ``keepdims`` keeps reduced axes with length 1, as in NumPy. Each primitive's ONNX export
rule (``onnx=``) is the matching Reduce* operator, or the same stable composition as its
forward (``logsumexp``, softmax over several axes).
"""

from __future__ import annotations

import builtins

import numpy as np

from .. import backend as B
from ..core.primitive import Primitive, apply
from ..core.structural import SUM
from ..core.structural import reshape as _reshape
from ..core.tensor import Tensor
from ..core.vmap import axis_rule
from .arguments import floating, kept_shape, normalize_axes, normalize_axis, to_tensor
from .elementwise import equal, logical_and, where


def _keep(t: Tensor, shape: tuple, axis: tuple, keepdims: bool) -> Tensor:
    """A reduced result reshaped to the keepdims shape (for broadcasting against input)."""
    return t if keepdims else _reshape(t, kept_shape(shape, axis))


def _reduction(name, forward, **rules):
    """A one-input primitive with an ``axis`` parameter (batching rule included)."""
    prim = Primitive(name, forward, **rules)
    prim.batch = axis_rule(prim)
    return prim


def _onnx_reduce(op_type):
    def rule(g, inputs, outputs, *, axis, keepdims):
        x = g.cast(inputs[0], g.dtype(outputs[0]))
        g.reduce(op_type, x, axis, keepdims, outputs[0])

    return rule


def _onnx_exp_shifted(g, x, axis):
    """``exp(x - max)`` over ``axis`` (the max made finite, as the forwards make it)."""
    m = g.reduce("ReduceMax", x, axis, True)
    m = g.node("Where", [g.node("IsInf", [m]), g.scalar(0, g.dtype(x)), m])
    return g.node("Exp", [g.node("Sub", [x, m])]), m


def _lse_onnx(g, inputs, outputs, *, axis, keepdims):
    x = inputs[0]
    e, m = _onnx_exp_shifted(g, x, axis)
    total = g.node("Log", [g.reduce("ReduceSum", e, axis, True)])
    if keepdims or not axis:
        g.node("Add", [total, m], outputs[0])
    else:
        g.squeeze(g.node("Add", [total, m]), axis, outputs[0])


def _softmax_onnx(g, inputs, outputs, *, axis):
    if len(axis) == 1:
        g.node("Softmax", inputs, outputs[0], axis=axis[0])
        return
    e, _ = _onnx_exp_shifted(g, inputs[0], axis)
    g.node("Div", [e, g.reduce("ReduceSum", e, axis, True)], outputs[0])


def _log_softmax_onnx(g, inputs, outputs, *, axis):
    if len(axis) == 1:
        g.node("LogSoftmax", inputs, outputs[0], axis=axis[0])
        return
    x = inputs[0]
    e, m = _onnx_exp_shifted(g, x, axis)
    shifted = g.node("Sub", [x, m])
    g.node("Sub", [shifted, g.node("Log", [g.reduce("ReduceSum", e, axis, True)])], outputs[0])


def _arg_onnx(op_type):
    def rule(g, inputs, outputs, *, axis, keepdims):
        x = inputs[0]
        if axis is not None:
            g.node(op_type, [x], outputs[0], axis=axis, keepdims=int(keepdims))
            return
        flat = g.node(op_type, [g.reshape(x, (-1,))], axis=0, keepdims=0)
        g.reshape(flat, (1,) * g.ndim(x) if keepdims else (), outputs[0])

    return rule


def _truth_onnx(op_type):
    """``any``/``all``: a max/min of the values as 0/1 integers."""
    def rule(g, inputs, outputs, *, axis, keepdims):
        bits = g.cast(g.cast(inputs[0], bool), np.int64)
        g.cast(g.reduce(op_type, bits, axis, keepdims), bool, outputs[0])

    return rule


# ----------------------------------------------------------------------------- sum
_sum = SUM


def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - NumPy's name
    """Sum of elements over ``axis``."""
    x = to_tensor(x, "sum")
    axes = normalize_axes(axis, x.ndim, "sum")
    return apply(_sum, (x,), {"axis": axes, "keepdims": bool(keepdims)})


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Arithmetic mean over ``axis`` (integer inputs give a float result)."""
    x = floating(to_tensor(x, "mean"))
    axes = normalize_axes(axis, x.ndim, "mean")
    count = 1
    for a in axes:
        count *= x.shape[a]
    total = apply(_sum, (x,), {"axis": axes, "keepdims": bool(keepdims)})
    if count == 0:
        return total * float("nan")
    return total * (1.0 / count)


def var(x, axis=None, ddof=0, keepdims=False) -> Tensor:
    """Variance over ``axis``: mean squared deviation, divided by ``n - ddof``."""
    x = floating(to_tensor(x, "var"))
    axes = normalize_axes(axis, x.ndim, "var")
    count = 1
    for a in axes:
        count *= x.shape[a]
    d = x - mean(x, axes, keepdims=True)
    scale = 1.0 / (count - ddof) if count > ddof else float("nan")   # as NumPy and PyTorch
    return sum(d * d, axes, keepdims) * scale


def std(x, axis=None, ddof=0, keepdims=False) -> Tensor:
    """Standard deviation over ``axis``: ``sqrt(var(x, axis, ddof))``."""
    return var(x, axis, ddof, keepdims).sqrt()


# ----------------------------------------------------------------------------- prod
def _prod_others(x: Tensor, outk: Tensor, axis) -> Tensor:
    """For each element, the product of the *other* elements in its slice (exact where
    the slice holds zeros)."""
    zeros = equal(x, 0.0)
    count = sum(zeros.astype(x.dtype), axis, keepdims=True)
    safe = where(zeros, 1.0, x)
    nonzero_prod = prod(safe, axis, keepdims=True)
    only_zero = logical_and(zeros, equal(count, 1.0))
    return where(equal(count, 0.0), outk / safe, where(only_zero, nonzero_prod, 0.0))


def _prod_vjp(g, out, x, *, axis, keepdims):
    return _keep(g, x.shape, axis, keepdims) * _prod_others(x, _keep(out, x.shape, axis, keepdims), axis)


def _prod_jvp(t, out, x, *, axis, keepdims):
    return sum(t * _prod_others(x, _keep(out, x.shape, axis, keepdims), axis), axis, keepdims)


_prod = _reduction("prod", lambda x, *, axis, keepdims: x.prod(axis=axis, keepdims=keepdims),
                   vjp=_prod_vjp, jvp=_prod_jvp, save=(0, "out"), onnx=_onnx_reduce("ReduceProd"))


def prod(x, axis=None, keepdims=False) -> Tensor:
    """Product of elements over ``axis``; the gradient is exact also where there are zeros."""
    x = to_tensor(x, "prod")
    axes = normalize_axes(axis, x.ndim, "prod")
    return apply(_prod, (x,), {"axis": axes, "keepdims": bool(keepdims)})


# ----------------------------------------------------------------------------- max, min
def _tie_share(x, out, axis, keepdims):
    """1/k on each of the k elements equal to the extremum of their slice, else 0."""
    hit = equal(x, _keep(out, x.shape, axis, keepdims)).astype(x.dtype)
    return hit / sum(hit, axis, keepdims=True)


def _extremum(name, fn):
    def vjp(g, out, x, *, axis, keepdims):
        return _keep(g, x.shape, axis, keepdims) * _tie_share(x, out, axis, keepdims)

    def jvp(t, out, x, *, axis, keepdims):
        return sum(t * _tie_share(x, out, axis, keepdims), axis, keepdims)

    prim = _reduction(name, lambda x, *, axis, keepdims: fn(x, axis=axis, keepdims=keepdims),
                      vjp=vjp, jvp=jvp, save=(0, "out"),
                      onnx=_onnx_reduce("ReduceMax" if name == "max" else "ReduceMin"))

    def op(x, axis=None, keepdims=False) -> Tensor:
        x = to_tensor(x, name)
        axes = normalize_axes(axis, x.ndim, name)
        if x.size == 0 or builtins.any(x.shape[a] == 0 for a in axes):
            raise ValueError(f"{name}: zero-size reduction over axis {axis} of a tensor of "
                             f"shape {x.shape} has no identity")
        return apply(prim, (x,), {"axis": axes, "keepdims": bool(keepdims)})

    op.__name__ = name
    op.__doc__ = (f"{name.capitalize()} over ``axis``. When several elements tie for the "
                  f"{name}imum, the gradient is split equally among them.")
    return op


max = _extremum("max", lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims))  # noqa: A001
min = _extremum("min", lambda x, axis, keepdims: x.min(axis=axis, keepdims=keepdims))  # noqa: A001


# ----------------------------------------------------------------------------- logsumexp, softmax
def _lse_forward(x, *, axis, keepdims):
    if x.size == 0:          # no terms, or no slices: log of an empty sum is -inf
        shape = kept_shape(x.shape, axis) if keepdims else \
            tuple(n for i, n in enumerate(x.shape) if i not in axis)
        return B.ns(x).full(shape, -np.inf, dtype=x.dtype)
    m = x.max(axis=axis, keepdims=True)
    if not np.isfinite(m).all():
        m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        s = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return s if keepdims else s.squeeze(axis=axis)


def _lse_weights(x, out, axis, keepdims):
    return (x - _keep(out, x.shape, axis, keepdims)).exp()


_logsumexp = _reduction(
    "logsumexp", _lse_forward, save=(0, "out"), onnx=_lse_onnx,
    vjp=lambda g, out, x, *, axis, keepdims:
        _keep(g, x.shape, axis, keepdims) * _lse_weights(x, out, axis, keepdims),
    jvp=lambda t, out, x, *, axis, keepdims:
        sum(t * _lse_weights(x, out, axis, keepdims), axis, keepdims))


def logsumexp(x, axis=None, keepdims=False) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis``, computed without overflow. Over an empty axis
    the sum is empty and the result ``-inf``, as in PyTorch."""
    x = floating(to_tensor(x, "logsumexp"))
    axes = normalize_axes(axis, x.ndim, "logsumexp")
    return apply(_logsumexp, (x,), {"axis": axes, "keepdims": bool(keepdims)})


def _softmax_forward(x, *, axis):
    if x.size == 0:
        return B.ns(x).zeros(x.shape, dtype=x.dtype)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


_softmax = _reduction(
    "softmax", _softmax_forward, save=("out",), onnx=_softmax_onnx,
    vjp=lambda g, out, x, *, axis: out * (g - sum(g * out, axis, keepdims=True)),
    jvp=lambda t, out, x, *, axis: out * (t - sum(t * out, axis, keepdims=True)))


def _log_softmax_forward(x, *, axis):
    if x.size == 0:
        return B.ns(x).zeros(x.shape, dtype=x.dtype)
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


_log_softmax = _reduction(
    "log_softmax", _log_softmax_forward, save=("out",), onnx=_log_softmax_onnx,
    vjp=lambda g, out, x, *, axis: g - out.exp() * sum(g, axis, keepdims=True),
    jvp=lambda t, out, x, *, axis: t - sum(out.exp() * t, axis, keepdims=True))


def _softmax_axes(axis, ndim: int, what: str) -> tuple:
    """The axes a softmax normalises over. A 0-d tensor is its own one-element slice:
    it takes axis 0 or -1 (as PyTorch does) and normalises over no axis at all."""
    if ndim == 0 and isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        if axis in (0, -1):
            return ()
        raise ValueError(f"{what}: axis {axis} is out of range for a tensor with 0 "
                         f"dimensions (a 0-d tensor takes axis 0 or -1)")
    return normalize_axes(axis, ndim, what)


def softmax(x, axis=-1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``axis`` (default the last), computed stably.
    A 0-d tensor gives 1; an empty axis gives an empty result."""
    x = floating(to_tensor(x, "softmax"))
    return apply(_softmax, (x,), {"axis": _softmax_axes(axis, x.ndim, "softmax")})


def log_softmax(x, axis=-1) -> Tensor:
    """``x - logsumexp(x)`` along ``axis`` (default the last), computed stably.
    A 0-d tensor gives 0; an empty axis gives an empty result."""
    x = floating(to_tensor(x, "log_softmax"))
    return apply(_log_softmax, (x,), {"axis": _softmax_axes(axis, x.ndim, "log_softmax")})


# ----------------------------------------------------------------------------- cumsum
_CUMSUM_SLAB = 256        # elements per step from which one add per step beats np.cumsum


def _cumsum_forward(x, *, axis):
    """``np.cumsum(x, axis)``. Along an axis other than the last, for float arrays with at
    least 256 elements per step, as one vectorised add per step: the same additions in the
    same order (bit for bit), several times faster than NumPy's strided loop there (see
    ``benchmarks/README.md``)."""
    if (type(x) is not np.ndarray or x.dtype.kind != "f" or axis == x.ndim - 1
            or x.shape[axis] < 2 or x.size // x.shape[axis] < _CUMSUM_SLAB):
        return np.cumsum(x, axis=axis)
    out = np.array(x, copy=True, order="C")
    steps = np.moveaxis(out, axis, 0)
    for t in range(1, steps.shape[0]):
        np.add(steps[t], steps[t - 1], out=steps[t])
    return out


_cumsum = _reduction(
    "cumsum", _cumsum_forward, save=(),
    onnx=lambda g, inputs, outputs, *, axis:
        g.node("CumSum", [inputs[0], g.scalar(axis, np.int64)], outputs[0]),
    vjp=lambda g, out, x, *, axis: cumsum(g.flip(axis), axis).flip(axis),
    linear=True)


def cumsum(x, axis=None) -> Tensor:
    """Cumulative sum along ``axis`` (``None``: over the flattened tensor)."""
    x = to_tensor(x, "cumsum")
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    return apply(_cumsum, (x,), {"axis": normalize_axis(axis, x.ndim, "cumsum")})


# ----------------------------------------------------------------------------- index-valued, boolean
_argmax = _reduction("argmax", lambda x, *, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims),
                     differentiable=False, onnx=_arg_onnx("ArgMax"))
_argmin = _reduction("argmin", lambda x, *, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims),
                     differentiable=False, onnx=_arg_onnx("ArgMin"))
_any = _reduction("any", lambda x, *, axis, keepdims: np.any(x, axis=axis, keepdims=keepdims),
                  differentiable=False, onnx=_truth_onnx("ReduceMax"))
_all = _reduction("all", lambda x, *, axis, keepdims: np.all(x, axis=axis, keepdims=keepdims),
                  differentiable=False, onnx=_truth_onnx("ReduceMin"))


def _arg(prim, name):
    def op(x, axis=None, keepdims=False) -> Tensor:
        x = to_tensor(x, name)
        if x.size == 0:
            raise ValueError(f"{name}: attempt to get {name} of an empty tensor")
        ax = None if axis is None else normalize_axis(axis, x.ndim, name)
        return apply(prim, (x,), {"axis": ax, "keepdims": bool(keepdims)})

    op.__name__ = name
    op.__doc__ = f"Indices of the {name[3:]}imum along ``axis`` (int64); not differentiated."
    return op


argmax = _arg(_argmax, "argmax")
argmin = _arg(_argmin, "argmin")


def any(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - NumPy's name
    """Whether any element along ``axis`` is true."""
    x = to_tensor(x, "any")
    return apply(_any, (x,), {"axis": normalize_axes(axis, x.ndim, "any"), "keepdims": bool(keepdims)})


def all(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - NumPy's name
    """Whether every element along ``axis`` is true."""
    x = to_tensor(x, "all")
    return apply(_all, (x,), {"axis": normalize_axes(axis, x.ndim, "all"), "keepdims": bool(keepdims)})
