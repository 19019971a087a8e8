"""Indexing: ``x[index]`` and its dual, scatter-add, plus take, take_along_axis,
index_add, scatter_add and one_hot built on the pair.

``getitem`` and ``add_at`` are each other's transpose: the cotangent of ``x[index]``
is ``add_at(zeros_like(x), index, g)`` (repeated indices accumulate), and the cotangent
of the values scattered by ``add_at`` is ``g[index]``. Every gather/scatter in the
library goes through these two primitives.

Index arrays are integer (or bool) *inputs* of the primitives, not constants hidden in
their parameters: the parameter ``index`` is a template in which :class:`Slot` ``k``
stands for the ``k``-th index input. So an index computed from data is an operation like
any other, and ``vmap`` can batch over it.

ONNX export (``onnx=``): basic indexing is Slice, Gather (for ints) and Unsqueeze (for
``None``); one integer array is a Gather along its axis; several (with ints, and boolean
masks through NonZero) are one GatherND on the indexed axes moved to the front, with the
result's axes put where NumPy puts them. ``add_at`` is the matching ScatterND with
``reduction="add"`` (opset 16).
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..core import dtypes
from ..core.primitive import Primitive, apply
from ..core.structural import zeros_like
from ..core.tensor import AbstractArray, Tensor, physical_data
from ..core.tracing import read_values, record_call
from ..core.vmap import batch_size, broadcast_batch, loop_rule, moveaxis
from .arguments import constant, normalize_axis, operands, to_tensor, zeros
from .elementwise import equal
from .segment import compiled_row_scatter


class Slot:
    """Placeholder for the ``k``-th index array input in an index template."""

    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __eq__(self, other):
        return isinstance(other, Slot) and other.k == self.k

    def __hash__(self):
        return hash(("slot", self.k))

    def __repr__(self):
        return f"Slot({self.k})"


def _fill(template, arrays):
    """The index tuple with each slot replaced by its array."""
    return tuple(arrays[i.k] if type(i) is Slot else i for i in template)


def _normalize_index(index, like):
    """``(template, index tensors, basic)``: the index as a template with slots, the
    integer/bool tensors that fill them, and whether it is basic slicing."""
    if not isinstance(index, tuple):
        index = (index,)
    template, arrays, basic = [], [], True
    for item in index:
        if isinstance(item, Tensor):
            if item.dtype.kind not in "iub":
                raise IndexError(f"getitem: tensors used as indices must be integer or "
                                 f"bool, got {item.dtype}")
            template.append(Slot(len(arrays)))
            arrays.append(item)
            basic = False
        elif isinstance(item, (list, np.ndarray)) or B.is_array(item):
            arr = B.asarray(item, like=like)
            if arr.dtype.kind not in "iub" and arr.size:
                raise IndexError(f"getitem: arrays used as indices must be integer or "
                                 f"bool, got {arr.dtype}")
            if arr.size == 0:
                arr = arr.astype(np.int64)
            template.append(Slot(len(arrays)))
            arrays.append(constant(arr))
            basic = False
        elif isinstance(item, (bool, np.bool_)):
            template.append(item)
            basic = False
        elif item is None or item is Ellipsis or isinstance(item, (slice, int, np.integer)):
            template.append(item)
        else:
            raise IndexError(f"getitem: unsupported index of type {type(item).__name__}; "
                             f"use ints, slices, None, ..., or integer/bool tensors")
    return tuple(template), tuple(arrays), basic


def _unique_index(template, arrays) -> bool:
    """True when the advanced index cannot name an element twice (one bool mask)."""
    return len(arrays) == 1 and arrays[0].dtype == bool


# ----------------------------------------------------------------------------- primitives
def _getitem_forward(x, *idx, index, unique):
    return x[_fill(index, idx)]


def _add_at_forward(x, v, *idx, index, unique):
    out = x.copy()
    full = _fill(index, idx)
    if unique:
        out[full] += v
    elif not _add_rows(out, full, v):
        B.of(out).add_at(out, full, v)
    return out


def _add_rows(out, full, v) -> bool:
    """``out[idx] += v`` with repeated rows accumulating, by the segment sum's compiled
    row scatter, when the index is one integer array on the first axis (an embedding's
    gradient: 80x faster than ``np.add.at`` on 2,048 rows of 128); False where it does
    not apply (NumPy then does it, and raises on out-of-range indices)."""
    if len(full) != 1 or type(out) is not np.ndarray or type(v) is not np.ndarray:
        return False
    idx = full[0]
    if (type(idx) is not np.ndarray or idx.dtype.kind not in "iu" or out.ndim == 0
            or out.dtype.kind != "f" or v.dtype != out.dtype or v.size == 0
            or v.shape != idx.shape + out.shape[1:] or not out.flags.c_contiguous):
        return False

    kernel = compiled_row_scatter()
    if kernel is None:
        return False
    n = out.shape[0]
    ids = idx.reshape(-1)
    lo, hi = ids.min(), ids.max()
    if lo < -n or hi >= n:
        return False
    if lo < 0:
        ids = np.where(ids < 0, ids + n, ids)
    kernel(np.ascontiguousarray(v.reshape(ids.size, -1)), ids, out.reshape(n, -1))
    return True


def _getitem_vjp_all(g, out, inputs, needs, *, index, unique):
    x, idx = inputs[0], inputs[1:]
    if not needs[0]:
        return [None] * len(inputs)
    return [scatter(zeros(x.shape, g.dtype, g), g, idx, index, unique)] + [None] * len(idx)


def _getitem_jvp_all(tangents, out, inputs, *, index, unique):
    t = tangents[0]
    if t is None:
        return None
    return gather(t, inputs[1:], index, unique)


def _add_at_vjp_all(g, out, inputs, needs, *, index, unique):
    idx = inputs[2:]
    return [g if needs[0] else None,
            gather(g, idx, index, unique) if needs[1] else None] + [None] * len(idx)


def _add_at_jvp_all(tangents, out, inputs, *, index, unique):
    tx, tv = tangents[0], tangents[1]
    if tx is None and tv is None:
        return None
    x, v, idx = inputs[0], inputs[1], inputs[2:]
    tx = tx if tx is not None else zeros_like(x)
    tv = tv if tv is not None else zeros_like(v)
    return scatter(tx, tv, idx, index, unique)


def _index_batch(template, n_lead):
    """The template with a leading full slice for the batch axis, and where the batch
    axis lands in the result (NumPy moves separated advanced indices to the front)."""
    new = (slice(None),) + template
    positions = [i for i, item in enumerate(new) if type(item) is Slot or isinstance(item, bool)]
    separated = positions and positions[-1] - positions[0] + 1 != len(positions)
    return new, (n_lead if separated else 0)


def _getitem_batch(args, axes, *, index, unique):
    if any(ax is not None for ax in axes[1:]):          # batched indices: one example at a time
        return loop_rule(_getitem)(args, axes, index=index, unique=unique)
    x = moveaxis(args[0], axes[0], 0)
    new, out_axis = _index_batch(index, _advanced_ndim(args[1:]))
    return apply(_getitem, (x,) + tuple(args[1:]), {"index": new, "unique": unique}), out_axis


def _advanced_ndim(idx):
    if not idx:
        return 0
    shapes = [i.shape if i.dtype != bool else (int(i.shape[0]) if i.ndim else 1,) for i in idx]
    return len(np.broadcast_shapes(*shapes))


def _add_at_batch(args, axes, *, index, unique):
    new, out_axis = _index_batch(index, _advanced_ndim(args[2:]))
    if any(ax is not None for ax in axes[2:]) or out_axis != 0:
        return loop_rule(_add_at)(args, axes, index=index, unique=unique)
    size = batch_size(args[:2], axes[:2])
    x = broadcast_batch(args[0], axes[0], size)
    v = args[1]
    if axes[1] is not None:
        v = moveaxis(v, axes[1], 0)
        target_nd = _target_ndim(x.shape[1:], index, args[2:])
        pad = target_nd - (v.ndim - 1)
        if pad > 0:
            v = v.reshape((v.shape[0],) + (1,) * pad + v.shape[1:])
    return apply(_add_at, (x, v) + tuple(args[2:]), {"index": new, "unique": unique}), 0


def _target_ndim(shape, template, idx):
    probe = np.empty(shape, dtype=np.int8)
    arrays = [np.zeros(i.shape, dtype=i.dtype) for i in idx]
    return probe[_fill(template, arrays)].ndim


# ----------------------------------------------------------------------------- ONNX export
_INT64_MAX, _INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def _is_mask(item) -> bool:
    return isinstance(item, tuple) and item[0] == "mask"


def _width(item) -> int:
    """How many axes of the indexed tensor an item consumes."""
    return 0 if item is None else item[2] if _is_mask(item) else 1


def _onnx_items(g, x, index, idx):
    """The template with ``...`` expanded and every axis of ``x`` indexed: a list of
    ints, slices, ``None``, ``("array", name)`` and ``("mask", name, ndim)``."""
    items = []
    for item in index:
        if type(item) is Slot:
            name = idx[item.k]
            items.append(("mask", name, g.ndim(name)) if g.dtype(name) == bool
                         else ("array", g.cast(name, np.int64)))
        elif isinstance(item, (bool, np.bool_)):
            raise NotImplementedError("a Python bool in an index")
        else:
            items.append(item)
    rest = [slice(None)] * (g.ndim(x) - sum(_width(it) for it in items if it is not Ellipsis))
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = rest
    else:
        items += rest
    return items


def _slice_bounds(item, n):
    """``(start, stop, step)`` of ``item`` on an axis of size ``n`` for ONNX's Slice
    (sizes and bounds may follow a dynamic axis); ``None`` for the whole axis."""
    step = 1 if item.step is None else item.step
    if all(isinstance(v, (int, np.integer)) for v in (n, step)) and \
            all(v is None or isinstance(v, (int, np.integer)) for v in (item.start, item.stop)):
        start, stop, step = item.indices(n)
        if step == 1 and start == 0 and stop >= n:
            return None
        return start, (_INT64_MIN if step < 0 and stop < 0 else stop), step
    start = item.start if item.start is not None else (0 if step > 0 else -1)
    stop = item.stop if item.stop is not None else (_INT64_MAX if step > 0 else _INT64_MIN)
    return None if (start == 0 and stop == n and step == 1) else (start, stop, step)


def _onnx_slices(g, x, items):
    """``x`` with every partial slice of ``items`` applied (all axes kept), and its shape
    (where a sliced size is not known here, the rank is all that is read)."""
    shape = list(g.shape(x))
    bounds, axis = [], 0
    for item in items:
        if isinstance(item, slice):
            b = _slice_bounds(item, shape[axis])
            if b is not None:
                bounds.append((axis,) + tuple(b))
                try:
                    shape[axis] = len(range(*item.indices(shape[axis])))
                except Exception:  # noqa: BLE001 - a bound that follows a dynamic axis
                    shape[axis] = item.stop if b[0] == 0 and b[2] == 1 else shape[axis]
        axis += _width(item)
    if not bounds:
        return x
    axes, starts, stops, steps = zip(*bounds)
    y = g.slice(x, list(starts), list(stops), list(axes), list(steps))
    return g.declare(y, shape, g.dtype(x))


def _getitem_basic_onnx(g, x, items, out):
    y = _onnx_slices(g, x, items)
    kept = [it for it in items if it is not None]
    for axis, i in reversed([(a, it) for a, it in enumerate(kept) if not isinstance(it, slice)]):
        y = g.node("Gather", [y, g.scalar(int(i), np.int64)], axis=axis)  # last first: no shifts
    positions, k = [], 0
    for it in items:
        if it is None:
            positions.append(k)
        if it is None or isinstance(it, slice):
            k += 1
    if positions:
        y = g.unsqueeze(y, positions)
    g.node("Identity", [y], out)


def _advanced(g, items):
    """``(axes, indices, first)``: the axes the advanced items (ints, integer arrays,
    masks) index, their index values as one ``(*B, len(axes))`` int64 value, and where
    NumPy puts the ``B`` axes among the others (at the first advanced axis when the
    advanced items are next to each other, else in front)."""
    axes, names, where, axis = [], [], [], 0
    for pos, it in enumerate(items):
        if not isinstance(it, slice):
            axes += range(axis, axis + _width(it))
            names.append(it)
            where.append(pos)
        axis += _width(it)
    first = axes[0] if where == list(range(where[0], where[0] + len(where))) else 0
    if len(names) == 1 and _is_mask(names[0]):          # x[mask]: the true positions
        return axes, g.transpose(g.node("NonZero", [names[0][1]]), [1, 0]), first
    if any(_is_mask(n) for n in names):
        raise NotImplementedError("a boolean mask together with other array indices")
    cols = [g.scalar(int(n), np.int64) if not isinstance(n, tuple) else n[1] for n in names]
    common = np.broadcast_shapes(*[g.shape(c) for c in cols])
    cols = [g.unsqueeze(g.expand(c, common), [len(common)]) for c in cols]
    ind = g.node("Concat", cols, axis=-1)
    return axes, g.declare(ind, tuple(common) + (len(cols),)), first


def _getitem_onnx(g, inputs, outputs, *, index, unique):
    x, out = inputs[0], outputs[0]
    items = _onnx_items(g, x, index, inputs[1:])
    if not any(isinstance(it, tuple) for it in items):
        return _getitem_basic_onnx(g, x, items, out)
    if None in items:
        raise NotImplementedError("None (a new axis) together with array indices")
    y = _onnx_slices(g, x, items)
    arrays = [it for it in items if isinstance(it, tuple)]
    if len(arrays) == 1 and not _is_mask(arrays[0]) and \
            all(isinstance(it, (slice, tuple)) for it in items):
        return g.node("Gather", [y, arrays[0][1]], out, axis=items.index(arrays[0]))
    axes, ind, first = _advanced(g, items)
    rest = [a for a in range(g.ndim(y)) if a not in axes]
    res = g.node("GatherND", [g.transpose(y, axes + rest), ind])
    nb, nr = len(g.shape(ind)) - 1 if g.has_shape(ind) else 1, len(rest)
    g.transpose(res, list(range(nb, nb + first)) + list(range(nb)) +
                list(range(nb + first, nb + nr)), out)


def _add_at_onnx(g, inputs, outputs, *, index, unique):
    """ScatterND with ``reduction="add"`` on the indexed axes moved to the front."""
    x, v, out = inputs[0], inputs[1], outputs[0]
    items = _onnx_items(g, x, index, inputs[2:])
    if any(it is None or isinstance(it, slice) and it != slice(None) for it in items) or \
            not any(isinstance(it, tuple) and not _is_mask(it) for it in items):
        raise NotImplementedError("add_at exports with integer array indices and whole "
                                  "axes (':') only")
    g.require_opset(16, "add_at (ScatterND with reduction='add')")
    axes, ind, first = _advanced(g, items)
    rest = [a for a in range(g.ndim(x)) if a not in axes]
    batch = list(g.shape(ind)[:-1])
    sub = [g.shape(x)[a] for a in rest]
    # the values broadcast to NumPy's indexed shape; ScatterND wants the index axes first
    vals = g.expand(g.cast(v, g.dtype(out)), sub[:first] + batch + sub[first:])
    nb = len(batch)
    vals = g.transpose(vals, list(range(first, first + nb)) + list(range(first)) +
                       list(range(first + nb, nb + len(rest))))
    res = g.node("ScatterND", [g.transpose(x, axes + rest), ind, vals], reduction="add")
    order = axes + rest
    g.transpose(res, [order.index(a) for a in range(len(order))], out)


_add_at = Primitive("add_at", _add_at_forward, vjp_all=_add_at_vjp_all,
                    jvp_all=_add_at_jvp_all, save=(slice(2, None),), batch=_add_at_batch,
                    onnx=_add_at_onnx)
_getitem = Primitive("getitem", _getitem_forward, vjp_all=_getitem_vjp_all,
                     jvp_all=_getitem_jvp_all, save=(slice(1, None),), batch=_getitem_batch,
                     view=True, onnx=_getitem_onnx)


def gather(x, idx, template, unique) -> Tensor:
    """``x[template filled with idx]`` (idx: index tensors)."""
    return apply(_getitem, (x,) + tuple(idx), {"index": template, "unique": unique})


def scatter(x, values, idx, template, unique) -> Tensor:
    """A copy of ``x`` with ``values`` added at the filled template."""
    return apply(_add_at, (x, values) + tuple(idx), {"index": template, "unique": unique})


# ----------------------------------------------------------------------------- public ops
def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy's rules: ints, slices, None, ``...``, integer and bool
    tensors or arrays. The gradient scatters back, and repeated indices accumulate."""
    x = to_tensor(x, "getitem")
    template, arrays, basic = _normalize_index(index, _array_like(x))
    for a in arrays:
        if a.dtype == bool and not isinstance(a.data, AbstractArray):
            read_values(a, "indexing with a boolean mask")   # the result's shape depends on it
    return gather(x, arrays, template, basic or _unique_index(template, arrays))


def _array_like(t: Tensor):
    return physical_data(t)


def _probe(shape, template, arrays):
    """The shape of ``empty(shape)[index]`` (checks the index without touching data)."""
    stand_ins = []
    for a in arrays:
        if isinstance(a.data, AbstractArray) or a.dtype == bool:
            stand_ins.append(np.zeros(a.shape, dtype=a.dtype) if a.dtype != bool
                             else np.ones(a.shape, dtype=bool) if isinstance(a.data, AbstractArray)
                             else B.to_numpy(a.data))
        else:
            stand_ins.append(B.to_numpy(a.data))
    return np.empty(shape, dtype=np.int8)[_fill(template, stand_ins)].shape


def add_at(x, index, values) -> Tensor:
    """A copy of ``x`` with ``values`` added at ``index`` (repeated indices accumulate),
    like ``numpy.add.at``; differentiable in ``x`` and ``values``."""
    x, values = operands(x, values, "add_at")
    template, arrays, basic = _normalize_index(index, _array_like(x))
    try:
        target_shape = _probe(x.shape, template, arrays)
    except IndexError as exc:
        raise IndexError(f"add_at: {exc} (tensor of shape {x.shape})") from None
    try:
        np.broadcast_shapes(values.shape, target_shape)
        if len(values.shape) > len(target_shape):
            raise ValueError
    except ValueError:
        raise ValueError(f"add_at: values of shape {values.shape} do not fit the indexed "
                         f"shape {target_shape}") from None
    if values.dtype != x.dtype:
        values = values.astype(x.dtype)
    unique = basic or _unique_index(template, arrays)
    return scatter(x, values, arrays, template, unique)


def _int_indices(indices, what, like) -> Tensor:
    idx = indices if isinstance(indices, Tensor) else constant(B.asarray(indices, like=like))
    if idx.dtype.kind not in "iu":
        if idx.size == 0:
            return idx.astype(np.int64)
        raise TypeError(f"{what}: indices must be integers, got {idx.dtype}")
    return idx


def _check_bounds(idx: Tensor, n, what):
    if isinstance(idx.data, AbstractArray) or idx.size == 0:
        return                                  # inside vmap the values are not known
    record_call(_bounds_check, idx.data, n=n, what=what)


def _bounds_check(data, *, n, what):
    """Raise unless every index lies in ``[-n, n)`` (a recorded step under ``jit``)."""
    lo, hi = data.min(), data.max()
    if lo < -n or hi >= n:
        bad = hi if hi >= n else lo
        raise IndexError(f"{what}: index {int(bad)} is out of bounds for an axis of size {n}")


def take(x, indices, axis=None) -> Tensor:
    """Elements at ``indices`` along ``axis`` (flattened ``x`` when ``axis`` is None)."""
    x = to_tensor(x, "take")
    idx = _int_indices(indices, "take", _array_like(x))
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = normalize_axis(axis, x.ndim, "take")
    _check_bounds(idx, x.shape[axis], "take")
    template = (slice(None),) * axis + (Slot(0),)
    return gather(x, (idx,), template, idx.size <= 1)


def _along_axis_index(shape, idx: Tensor, axis, like):
    """The advanced index (template, arrays) that picks ``idx`` along ``axis`` in every
    other position."""
    nd = len(shape)
    xp = B.ns(like)
    template, arrays = [], []
    for d in range(nd):
        template.append(Slot(len(arrays)))
        if d == axis:
            arrays.append(idx)
        else:
            view = [1] * nd
            view[d] = shape[d]
            arrays.append(constant(xp.arange(shape[d]).reshape(view)))
    return tuple(template), tuple(arrays)


def take_along_axis(x, indices, axis) -> Tensor:
    """Pick ``x[..., indices[i], ...]`` along ``axis`` for each position (NumPy's rule:
    ``indices`` has ``x``'s number of dimensions and broadcasts against it)."""
    x = to_tensor(x, "take_along_axis")
    idx = _int_indices(indices, "take_along_axis", _array_like(x))
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices must have the tensor's {x.ndim} "
                         f"dimensions, got {idx.ndim}")
    axis = normalize_axis(axis, x.ndim, "take_along_axis")
    _check_bounds(idx, x.shape[axis], "take_along_axis")
    # with one index per slice (and x not broadcast against idx) every output position
    # reads a different element, so the gradient can be assigned instead of accumulated
    unique = idx.shape[axis] == 1 and all(
        not (n == 1 and m > 1) for d, (n, m) in enumerate(zip(x.shape, idx.shape)) if d != axis)
    template, arrays = _along_axis_index(x.shape, idx, axis, _array_like(x))
    return gather(x, arrays, template, unique)


def index_add(x, index, values, axis=0) -> Tensor:
    """Add slices of ``values`` into ``x`` at positions ``index`` along ``axis``
    (``out[..., index[i], ...] += values[..., i, ...]``; repeats accumulate)."""
    x, values = operands(x, values, "index_add")
    idx = _int_indices(index, "index_add", _array_like(x))
    axis = normalize_axis(axis, x.ndim, "index_add")
    if idx.ndim != 1:
        raise ValueError(f"index_add: index must be 1-D, got shape {idx.shape}")
    _check_bounds(idx, x.shape[axis], "index_add")
    expected = x.shape[:axis] + (idx.shape[0],) + x.shape[axis + 1:]
    if values.shape != expected:
        raise ValueError(f"index_add: values of shape {values.shape} do not match the "
                         f"expected shape {expected} (tensor {x.shape}, {idx.shape[0]} "
                         f"indices along axis {axis})")
    if values.dtype != x.dtype:
        values = values.astype(x.dtype)
    return scatter(x, values, (idx,), (slice(None),) * axis + (Slot(0),), False)


def scatter_add(x, index, values, axis) -> Tensor:
    """The transpose of ``take_along_axis``: ``out[..., index[p], ...] += values[p]``
    for every position ``p`` (``index`` and ``values`` have one shape)."""
    x, values = operands(x, values, "scatter_add")
    idx = _int_indices(index, "scatter_add", _array_like(x))
    axis = normalize_axis(axis, x.ndim, "scatter_add")
    if idx.shape != values.shape or idx.ndim != x.ndim:
        raise ValueError(f"scatter_add: index {idx.shape} and values {values.shape} must "
                         f"have one shape with the tensor's {x.ndim} dimensions")
    _check_bounds(idx, x.shape[axis], "scatter_add")
    if values.dtype != x.dtype:
        values = values.astype(x.dtype)
    template, arrays = _along_axis_index(idx.shape, idx, axis, _array_like(x))
    return scatter(x, values, arrays, template, False)


def one_hot(indices, num_classes, dtype=None) -> Tensor:
    """Rows of the identity: ``out[..., k] = 1`` where ``indices == k`` (not differentiated)."""
    idx = _int_indices(indices, "one_hot", None)
    if num_classes <= 0:
        raise ValueError(f"one_hot: num_classes must be positive, got {num_classes}")
    _check_class_range(idx, num_classes)
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()

    classes = constant(B.ns(_array_like(idx)).arange(num_classes))
    return equal(idx.expand_dims(-1), classes).astype(d)


def _check_class_range(idx: Tensor, num_classes):
    if isinstance(idx.data, AbstractArray) or idx.size == 0:
        return
    record_call(_class_range_check, idx.data, num_classes=num_classes)


def _class_range_check(data, *, num_classes):
    lo, hi = data.min(), data.max()
    if lo < 0 or hi >= num_classes:
        bad = hi if hi >= num_classes else lo
        raise ValueError(f"one_hot: index {int(bad)} is out of range for {num_classes} classes")
