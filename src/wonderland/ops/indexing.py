"""Indexing: ``x[index]`` and its dual, scatter-add, plus take, take_along_axis,
index_add, scatter_add and one_hot built on the pair.

``getitem`` and ``add_at`` are each other's transpose: the cotangent of ``x[index]``
is ``add_at(zeros_like(x), index, g)`` (repeated indices accumulate), and the cotangent
of the values scattered by ``add_at`` is ``g[index]``. Every gather/scatter in the
library goes through these two primitives.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..core import dtypes
from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ._common import constant, normalize_axis, operands, to_tensor

xp = B.xp


def _normalize_index(index):
    """(index as a tuple with arrays for tensors/lists, whether it is basic slicing)."""
    if not isinstance(index, tuple):
        index = (index,)
    out, basic = [], True
    for item in index:
        if isinstance(item, Tensor):
            item = item.data
            basic = False
            if item.dtype.kind not in "iub":
                raise IndexError(f"getitem: tensors used as indices must be integer or "
                                 f"bool, got {item.dtype}")
        elif isinstance(item, (list, np.ndarray)):
            item = B.asarray(item)
            if item.dtype.kind not in "iub" and item.size:
                raise IndexError(f"getitem: arrays used as indices must be integer or "
                                 f"bool, got {item.dtype}")
            if item.size == 0:
                item = item.astype(np.int64)
            basic = False
        elif isinstance(item, (bool, np.bool_)):
            basic = False
        elif not (item is None or item is Ellipsis or isinstance(item, (slice, int, np.integer))):
            raise IndexError(f"getitem: unsupported index of type {type(item).__name__}; "
                             f"use ints, slices, None, ..., or integer/bool tensors")
        out.append(item)
    return tuple(out), basic


def _unique_index(index) -> bool:
    """True when the advanced index cannot name an element twice (single bool mask)."""
    arrays = [i for i in index if isinstance(i, B.ndarray)]
    return len(arrays) == 1 and arrays[0].dtype == bool


def _add_at_forward(x, v, *, index, unique):
    out = x.copy()
    if unique:
        out[index] += v
    else:
        B.add_at(out, index, v)
    return out


_add_at = Primitive(
    "add_at", _add_at_forward,
    vjp=(lambda g, out, x, v, *, index, unique: g,
         lambda g, out, x, v, *, index, unique: _gather(g, index, unique)),
    linear=True)


def _getitem_vjp(g, out, x, *, index, unique):
    zeros = constant(xp.zeros(x.shape, dtype=g.dtype))
    return apply(_add_at, (zeros, g), {"index": index, "unique": unique})


_getitem = Primitive("getitem", lambda x, *, index, unique: x[index], vjp=_getitem_vjp,
                     linear=True)


def _gather(x, index, unique):
    return apply(_getitem, (x,), {"index": index, "unique": unique})


def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy's rules: ints, slices, None, ``...``, integer and bool
    tensors or arrays. The gradient scatters back, and repeated indices accumulate."""
    x = to_tensor(x, "getitem")
    index, basic = _normalize_index(index)
    return _gather(x, index, basic or _unique_index(index))


def add_at(x, index, values) -> Tensor:
    """A copy of ``x`` with ``values`` added at ``index`` (repeated indices accumulate),
    like ``numpy.add.at``; differentiable in ``x`` and ``values``."""
    x, values = operands(x, values, "add_at")
    index, basic = _normalize_index(index)
    try:
        target_shape = np.empty(x.shape, dtype=np.int8)[index].shape
    except IndexError as exc:
        raise IndexError(f"add_at: {exc} (tensor of shape {x.shape})") from None
    try:
        np.broadcast_to(np.empty(values.shape, dtype=np.int8), target_shape)
    except ValueError:
        raise ValueError(f"add_at: values of shape {values.shape} do not fit the indexed "
                         f"shape {target_shape}") from None
    if values.dtype != x.dtype:
        values = values.astype(x.dtype)
    unique = basic or _unique_index(index)
    return apply(_add_at, (x, values), {"index": index, "unique": unique})


def _int_indices(indices, what):
    idx = indices.data if isinstance(indices, Tensor) else B.asarray(indices)
    if idx.dtype.kind not in "iu":
        if idx.size == 0:
            return idx.astype(np.int64)
        raise TypeError(f"{what}: indices must be integers, got {idx.dtype}")
    return idx


def _check_bounds(idx, n, what):
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx.max() if idx.max() >= n else idx.min()
        raise IndexError(f"{what}: index {int(bad)} is out of bounds for an axis of size {n}")


def take(x, indices, axis=None) -> Tensor:
    """Elements at ``indices`` along ``axis`` (flattened ``x`` when ``axis`` is None)."""
    x = to_tensor(x, "take")
    idx = _int_indices(indices, "take")
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = normalize_axis(axis, x.ndim, "take")
    _check_bounds(idx, x.shape[axis], "take")
    return _gather(x, (slice(None),) * axis + (idx,), idx.size <= 1)


def _along_axis_index(shape, idx, axis):
    """The full advanced index that picks ``idx`` along ``axis`` in every other position."""
    nd = len(shape)
    index = []
    for d in range(nd):
        if d == axis:
            index.append(idx)
        else:
            view = [1] * nd
            view[d] = shape[d]
            index.append(xp.arange(shape[d]).reshape(view))
    return tuple(index)


def take_along_axis(x, indices, axis) -> Tensor:
    """Pick ``x[..., indices[i], ...]`` along ``axis`` for each position (NumPy's rule:
    ``indices`` has ``x``'s number of dimensions and broadcasts against it)."""
    x = to_tensor(x, "take_along_axis")
    idx = _int_indices(indices, "take_along_axis")
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices must have the tensor's {x.ndim} "
                         f"dimensions, got {idx.ndim}")
    axis = normalize_axis(axis, x.ndim, "take_along_axis")
    _check_bounds(idx, x.shape[axis], "take_along_axis")
    # with one index per slice (and x not broadcast against idx) every output position
    # reads a different element, so the gradient can be assigned instead of accumulated
    unique = idx.shape[axis] == 1 and all(
        not (n == 1 and m > 1) for d, (n, m) in enumerate(zip(x.shape, idx.shape)) if d != axis)
    return _gather(x, _along_axis_index(x.shape, idx, axis), unique)


def index_add(x, index, values, axis=0) -> Tensor:
    """Add slices of ``values`` into ``x`` at positions ``index`` along ``axis``
    (``out[..., index[i], ...] += values[..., i, ...]``; repeats accumulate)."""
    x, values = operands(x, values, "index_add")
    idx = _int_indices(index, "index_add")
    axis = normalize_axis(axis, x.ndim, "index_add")
    if idx.ndim != 1:
        raise ValueError(f"index_add: index must be 1-D, got shape {idx.shape}")
    _check_bounds(idx, x.shape[axis], "index_add")
    expected = x.shape[:axis] + (idx.shape[0],) + x.shape[axis + 1:]
    if values.shape != expected:
        raise ValueError(f"index_add: values of shape {values.shape} do not match the "
                         f"expected shape {expected} (tensor {x.shape}, {idx.shape[0]} "
                         f"indices along axis {axis})")
    return add_at(x, (slice(None),) * axis + (idx,), values)


def scatter_add(x, index, values, axis) -> Tensor:
    """The transpose of ``take_along_axis``: ``out[..., index[p], ...] += values[p]``
    for every position ``p`` (``index`` and ``values`` have one shape)."""
    x, values = operands(x, values, "scatter_add")
    idx = _int_indices(index, "scatter_add")
    axis = normalize_axis(axis, x.ndim, "scatter_add")
    if idx.shape != values.shape or idx.ndim != x.ndim:
        raise ValueError(f"scatter_add: index {idx.shape} and values {values.shape} must "
                         f"have one shape with the tensor's {x.ndim} dimensions")
    _check_bounds(idx, x.shape[axis], "scatter_add")
    return add_at(x, _along_axis_index(idx.shape, idx, axis), values)


def one_hot(indices, num_classes, dtype=None) -> Tensor:
    """Rows of the identity: ``out[..., k] = 1`` where ``indices == k`` (not differentiated)."""
    idx = _int_indices(indices, "one_hot")
    if num_classes <= 0:
        raise ValueError(f"one_hot: num_classes must be positive, got {num_classes}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        bad = idx.max() if idx.max() >= num_classes else idx.min()
        raise ValueError(f"one_hot: index {int(bad)} is out of range for {num_classes} classes")
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    return constant(xp.eye(num_classes, dtype=d)[idx])
