"""Python operators and NumPy-style methods of :class:`~wonderland.Tensor`.

The table below installs them on the class, so ``x + y``, ``x @ w``, ``x.sum(0)`` and
``x[idx]`` all go to the primitives of the families in this package.
"""

from __future__ import annotations

from ..core.tensor import Tensor
from . import elementwise as E
from . import indexing as I
from . import linalg as L
from . import reductions as R
from . import shape as S


def _reflect(fn):
    return lambda self, other: fn(other, self)


def _setitem(self, index, value):
    raise TypeError("Tensor does not support item assignment: tensors are immutable. Use "
                    "wl.where(mask, value, x) or wl.add_at(x, index, values) to build a new "
                    "tensor")


def _shape_method(fn):
    def method(self, *shape):
        return fn(self, *shape)

    method.__doc__ = fn.__doc__
    return method


def _transpose_method(self, *axes):
    """Permute the axes: ``x.transpose()``, ``x.transpose(1, 0)`` or ``x.transpose((1, 0))``."""
    if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
        axes = axes[0]
    return S.transpose(self, axes or None)


def _pow(self, p):
    return E.power(self, p)


def _rpow(self, base):
    return E.power(base, self)


_OPERATORS = {
    "__add__": E.add, "__radd__": _reflect(E.add),
    "__sub__": E.subtract, "__rsub__": _reflect(E.subtract),
    "__mul__": E.multiply, "__rmul__": _reflect(E.multiply),
    "__truediv__": E.divide, "__rtruediv__": _reflect(E.divide),
    "__floordiv__": E.floor_divide, "__rfloordiv__": _reflect(E.floor_divide),
    "__mod__": E.remainder, "__rmod__": _reflect(E.remainder),
    "__pow__": _pow, "__rpow__": _rpow,
    "__matmul__": L.matmul, "__rmatmul__": _reflect(L.matmul),
    "__neg__": E.negative, "__pos__": lambda self: self, "__abs__": E.abs,
    "__eq__": E.equal, "__ne__": E.not_equal,
    "__lt__": E.less, "__le__": E.less_equal, "__gt__": E.greater, "__ge__": E.greater_equal,
    "__and__": E.logical_and, "__or__": E.logical_or, "__xor__": E.logical_xor,
    "__invert__": E.logical_not,
    "__getitem__": I.getitem, "__setitem__": _setitem,
}

_METHODS = {
    # elementwise
    "exp": E.exp, "log": E.log, "log1p": E.log1p, "expm1": E.expm1, "sqrt": E.sqrt,
    "abs": E.abs, "sign": E.sign, "sin": E.sin, "cos": E.cos, "tan": E.tan, "tanh": E.tanh,
    "sigmoid": E.sigmoid, "erf": E.erf, "relu": E.relu, "square": E.square,
    "clip": E.clip, "astype": E.astype, "maximum": E.maximum, "minimum": E.minimum,
    "isnan": E.isnan, "isfinite": E.isfinite, "round": E.round, "floor": E.floor, "ceil": E.ceil,
    # reductions
    "sum": R.sum, "mean": R.mean, "prod": R.prod, "max": R.max, "min": R.min, "var": R.var,
    "std": R.std, "logsumexp": R.logsumexp, "softmax": R.softmax,
    "log_softmax": R.log_softmax, "cumsum": R.cumsum, "argmax": R.argmax, "argmin": R.argmin,
    "any": R.any, "all": R.all,
    # shape
    "reshape": _shape_method(S.reshape), "transpose": _transpose_method,
    "swapaxes": S.swapaxes, "moveaxis": S.moveaxis, "expand_dims": S.expand_dims,
    "squeeze": S.squeeze, "broadcast_to": S.broadcast_to, "flatten": S.flatten,
    "ravel": S.ravel, "flip": S.flip, "repeat": S.repeat, "tile": S.tile,
    "take": I.take, "take_along_axis": I.take_along_axis,
    # products
    "matmul": L.matmul, "dot": L.matmul,
}


def install() -> None:
    """Attach the operator and method tables to ``Tensor``."""
    for name, fn in {**_OPERATORS, **_METHODS}.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda self: S.transpose(self), doc="The tensor with axes reversed.")
    Tensor.mT = property(lambda self: S.swapaxes(self, -1, -2),
                         doc="The last two axes swapped (batched matrix transpose).")
    Tensor.__hash__ = object.__hash__
