"""Helpers shared by the op families: turning arguments into tensors, normalising axes."""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend as B
from ..core import dtypes
from ..core.tensor import Tensor, _wrap, scalar_dtype

xp = B.xp

_SCALARS = (numbers.Number, np.generic)


def to_tensor(x, what: str) -> Tensor:
    """``x`` as a tensor (numbers take the default dtypes)."""
    if isinstance(x, Tensor):
        return x
    try:
        return Tensor(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected a tensor, a number or an array, got "
                        f"{type(x).__name__}") from exc


def operands(a, b, what: str):
    """Two operands as tensors; a Python number takes the other operand's dtype."""
    a_is = isinstance(a, Tensor)
    b_is = isinstance(b, Tensor)
    if a_is and b_is:
        if a.data.dtype != b.data.dtype:
            return promote_pair(a, b)
        return a, b
    if a_is:
        b = _lift(b, a, what)
        return (floating(a) if _int_meets_float(a, b) else a), b
    if b_is:
        a = _lift(a, b, what)
        return a, (floating(b) if _int_meets_float(b, a) else b)
    return to_tensor(a, what), to_tensor(b, what)


def promote_pair(a: Tensor, b: Tensor):
    """PyTorch's (and JAX's) promotion between two tensors of different dtypes: an
    integer or bool tensor meeting a float one takes the float dtype, and a 0-d tensor
    does not widen a dimensioned one of the same kind; otherwise NumPy's rules."""
    da, db = a.data.dtype, b.data.dtype
    fa, fb = da.kind == "f", db.kind == "f"
    if fa != fb:
        want = da if fa else db
        if np.result_type(da, db) == want:     # e.g. float32 with bool: NumPy agrees already
            return a, b
        return (a, b.astype(da)) if fa else (a.astype(db), b)
    if a.data.ndim == 0 and b.data.ndim > 0:
        return a.astype(db), b
    if b.data.ndim == 0 and a.data.ndim > 0:
        return a, b.astype(da)
    return a, b


def result_dtype(tensors):
    """Common dtype of several tensors: floats win over integers without widening them."""
    floats = [t.data.dtype for t in tensors if t.data.dtype.kind == "f"]
    if floats and len(floats) != len(tensors):
        return np.result_type(*floats)
    return np.result_type(*[t.data.dtype for t in tensors])


def _int_meets_float(t: Tensor, lifted: Tensor) -> bool:
    """An integer/bool tensor next to a Python float becomes the default float."""
    return t.data.dtype.kind in "iub" and lifted.data.dtype.kind == "f"


def _lift(v, like: Tensor, what: str) -> Tensor:
    if isinstance(v, _SCALARS) and not isinstance(v, np.ndarray):
        if isinstance(v, complex):
            raise TypeError(f"{what}: complex numbers are not supported")
        return _wrap(xp.asarray(v, dtype=scalar_dtype(v, like.data.dtype)))
    return to_tensor(v, what)


def floating(x: Tensor) -> Tensor:
    """``x`` cast to the default float dtype when it is an integer or bool tensor."""
    if x.data.dtype.kind == "f":
        return x
    return _wrap(x.data.astype(dtypes.get_default_dtype()))


def normalize_axis(axis, ndim: int, what: str) -> int:
    """A single axis in ``[0, ndim)``; negative axes count from the end."""
    if isinstance(axis, Tensor):
        axis = int(axis)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{what}: axis must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what}: axis {axis} is out of range for a tensor with {ndim} "
                         f"dimension{'s' if ndim != 1 else ''}")
    return int(axis) % ndim


_ALL_AXES = [tuple(range(n)) for n in range(33)]


def normalize_axes(axis, ndim: int, what: str) -> tuple:
    """Axes as a sorted tuple in ``[0, ndim)``; ``None`` means every axis."""
    if axis is None:
        return _ALL_AXES[ndim] if ndim < 33 else tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:
        return (axis % ndim,)
    if isinstance(axis, (tuple, list)):
        axes = tuple(normalize_axis(a, ndim, what) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{what}: repeated axis in {tuple(axis)}")
        return tuple(sorted(axes))
    return (normalize_axis(axis, ndim, what),)


def shape_arg(shape, what: str) -> tuple:
    """A shape given as ints or one tuple/list, as a tuple of ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: shape must be ints or a tuple of ints, got "
                        f"{shape!r}") from None


def kept_shape(shape: tuple, axes: tuple) -> tuple:
    """``shape`` with the reduced ``axes`` set to 1 (the ``keepdims=True`` shape)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def constant(array) -> Tensor:
    """A tensor around an array that is a constant for differentiation."""
    return _wrap(array)
