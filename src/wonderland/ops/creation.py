"""Tensors made from nothing: zeros, ones, full, arange, linspace, eye, and ``*_like``."""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..core import dtypes
from ..core.tensor import Tensor
from .arguments import shape_arg, to_tensor


def _xp():
    """The namespace of the default backend (where new tensors go)."""
    return B.default().xp


def _make(array, requires_grad):
    return Tensor(array, requires_grad=requires_grad)


def _float_or(dtype):
    return dtypes.as_dtype(dtype) or dtypes.get_default_dtype()


def _shape(shape, what):
    s = shape_arg(shape, what)
    if any(n < 0 for n in s):
        raise ValueError(f"{what}: negative dimension in shape {s}")
    return s


def zeros(*shape, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return _make(_xp().zeros(_shape(shape, "zeros"), dtype=_float_or(dtype)), requires_grad)


def ones(*shape, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of ones."""
    return _make(_xp().ones(_shape(shape, "ones"), dtype=_float_or(dtype)), requires_grad)


def empty(*shape, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of the given shape (filled with zeros: there is no uninitialised memory)."""
    return _make(_xp().zeros(_shape(shape, "empty"), dtype=_float_or(dtype)), requires_grad)


def _fill_dtype(value, dtype):
    if dtype is not None:
        return dtypes.as_dtype(dtype)
    if isinstance(value, (bool, np.bool_)):
        return dtypes.bool_
    if isinstance(value, (int, np.integer)):
        return dtypes.int64
    return dtypes.get_default_dtype()


def full(shape, fill_value, dtype=None, requires_grad=False) -> Tensor:
    """A tensor filled with ``fill_value`` (its dtype follows the value unless given)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _make(_xp().full(_shape(shape, "full"), fill_value, dtype=_fill_dtype(fill_value, dtype)),
                 requires_grad)


def zeros_like(x, dtype=None, requires_grad=False) -> Tensor:
    """Zeros with ``x``'s shape (and dtype unless given)."""
    x = to_tensor(x, "zeros_like")
    return _make(_xp().zeros(x.shape, dtype=dtypes.as_dtype(dtype) or x.dtype), requires_grad)


def ones_like(x, dtype=None, requires_grad=False) -> Tensor:
    """Ones with ``x``'s shape (and dtype unless given)."""
    x = to_tensor(x, "ones_like")
    return _make(_xp().ones(x.shape, dtype=dtypes.as_dtype(dtype) or x.dtype), requires_grad)


def full_like(x, fill_value, dtype=None, requires_grad=False) -> Tensor:
    """``fill_value`` with ``x``'s shape (and dtype unless given)."""
    x = to_tensor(x, "full_like")
    return _make(_xp().full(x.shape, fill_value, dtype=dtypes.as_dtype(dtype) or x.dtype),
                 requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False) -> Tensor:
    """Evenly spaced values in ``[start, stop)``; integers unless a float is involved."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
        dtype = dtypes.int64 if is_int else dtypes.get_default_dtype()
    return _make(_xp().arange(start, stop, step, dtype=dtypes.as_dtype(dtype)), requires_grad)


def linspace(start, stop, num=50, endpoint=True, dtype=None, requires_grad=False) -> Tensor:
    """``num`` evenly spaced values from ``start`` to ``stop``."""
    if num < 0:
        raise ValueError(f"linspace: num must be non-negative, got {num}")
    return _make(_xp().linspace(start, stop, num, endpoint=endpoint, dtype=_float_or(dtype)),
                 requires_grad)


def eye(n, m=None, k=0, dtype=None, requires_grad=False) -> Tensor:
    """The ``n × m`` identity (ones on the ``k``-th diagonal)."""
    if n < 0 or (m is not None and m < 0):
        raise ValueError(f"eye: dimensions must be non-negative, got n={n}, m={m}")
    return _make(_xp().eye(n, m, k, dtype=_float_or(dtype)), requires_grad)
