"""Helpers shared by the op families: turning arguments into tensors, normalising axes."""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend as B
from ..core import dtypes
from ..core.structural import cast, kept_shape  # noqa: F401 - shared with the families
from ..core.tensor import Tensor, from_array, physical_data, scalar_dtype, to_tensor  # noqa: F401

_SCALARS = (numbers.Number, np.generic)


def operands(a, b, what: str):
    """Two operands as tensors; a Python number takes the other operand's dtype."""
    a_is = isinstance(a, Tensor)
    b_is = isinstance(b, Tensor)
    if a_is and b_is:
        if a.dtype != b.dtype:
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
    da, db = a.dtype, b.dtype
    fa, fb = da.kind == "f", db.kind == "f"
    if fa != fb:
        want = da if fa else db
        if np.result_type(da, db) == want:     # e.g. float32 with bool: NumPy agrees already
            return a, b
        return (a, cast(b, da)) if fa else (cast(a, db), b)
    if a.ndim == 0 and b.ndim > 0:
        return cast(a, db), b
    if b.ndim == 0 and a.ndim > 0:
        return a, cast(b, da)
    return a, b


def result_dtype(tensors):
    """Common dtype of several tensors: floats win over integers without widening them."""
    floats = [t.dtype for t in tensors if t.dtype.kind == "f"]
    if floats and len(floats) != len(tensors):
        return np.result_type(*floats)
    return np.result_type(*[t.dtype for t in tensors])


def _int_meets_float(t: Tensor, lifted: Tensor) -> bool:
    """An integer/bool tensor next to a Python float becomes the default float."""
    return t.dtype.kind in "iub" and lifted.dtype.kind == "f"


def _lift(v, like: Tensor, what: str) -> Tensor:
    if isinstance(v, _SCALARS) and not isinstance(v, np.ndarray):
        if isinstance(v, complex):
            raise TypeError(f"{what}: complex numbers are not supported")
        return from_array(B.scalar_array(v, scalar_dtype(v, like.dtype), _array_of(like)))
    return to_tensor(v, what)


def _array_of(t: Tensor):
    """An array of ``t``'s backend (its data, or its innermost data inside vmap)."""
    return physical_data(t)


def floating(x: Tensor) -> Tensor:
    """``x`` cast to the default float dtype when it is an integer or bool tensor."""
    if x.dtype.kind == "f":
        return x
    return cast(x, dtypes.get_default_dtype())


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


def constant(array) -> Tensor:
    """A tensor around an array that is a constant for differentiation."""
    return from_array(array if B.is_array(array) else B.asarray(array))


def namespace(t: Tensor):
    """The array namespace of ``t``'s backend."""
    return B.ns(_array_of(t))


def zeros(shape, dtype, like: Tensor) -> Tensor:
    """A constant tensor of zeros on ``like``'s backend."""
    return from_array(namespace(like).zeros(shape, dtype=dtype))
