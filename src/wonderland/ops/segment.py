"""Segment reductions and row gathers: the sparse primitives of graph layers.

A *segment* reduction combines the rows of ``data`` (shape ``(E, ...)``, one row per
edge, say) that share a segment id, giving ``(num_segments, ...)``: ``segment_sum``,
``segment_mean``, ``segment_max``; ``segment_softmax`` normalises the rows of each
segment instead (softmax over the edges entering each node, the attention of GAT).
``gather_rows(x, ids)`` is ``x[ids]`` along axis 0. Ids need not be sorted; they come
as an integer tensor or array, and are an *input* of each primitive (never a constant
hidden in its parameters), so ``vmap`` can batch over them.

``gather_rows`` and ``segment_sum`` are each other's transpose: the VJP of one is the
other, which is what makes message passing differentiable to any order with just these
two. ``segment_mean`` is ``segment_sum`` divided by the segment sizes; ``segment_max``
sends its gradient to the rows equal to their segment's maximum, split equally between
ties (like ``max``); ``segment_softmax`` has the softmax rule ``y * (g - Σ_seg g y)``.
Empty segments give 0 for sum, mean and max (never NaN, never -inf).

Kernels: the sum and the maximum are compiled loops (Numba, compiled on first use and
cached on disk) where Numba is installed. Their NumPy references — the sum as one SciPy
sparse product with an ``(S, E)`` matrix holding a single 1 per column (``bincount``
for one column), the maximum as ``numpy.maximum.at`` — run otherwise, and the tests
check that both agree.

ONNX export (``onnx=``): ``gather_rows`` is Gather; the reductions are ScatterND onto a
filled ``(S, ...)`` array with ``reduction="add"`` (opset 16) or ``"max"`` (opset 18),
and the segment sizes a ScatterND-add of ones.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..backend.compiled import kernel
from ..core.primitive import Primitive, apply
from ..core.tensor import AbstractArray, Tensor, physical_data
from ..core.tracing import read_values, record_call
from ..core.vmap import broadcast_batch, loop_rule, moveaxis
from .arguments import constant, floating, to_tensor
from .elementwise import equal, maximum

_ON_HOST = B.HostOnly("maps onto the device library's scatter-add and sparse products")

__all__ = ["gather_rows", "segment_sum", "segment_mean", "segment_max", "segment_softmax",
           "segment_count"]


# ----------------------------------------------------------------------------- kernels
def _flat2d(a):
    """``a`` (E, ...) as a C-contiguous (E, F) array."""
    return np.ascontiguousarray(a.reshape(a.shape[0], -1))


def segment_sum_reference(data, ids, num_segments):
    """NumPy/SciPy reference of the segment sum: ``bincount`` for one column, else one
    sparse product with a ``(S, E)`` matrix holding a single 1 per column."""
    rest = data.shape[1:]
    out_shape = (num_segments,) + rest
    if data.dtype.kind not in "fc":
        out = np.zeros(out_shape, dtype=data.dtype)
        np.add.at(out, ids, data)
        return out
    if data.shape[0] == 0 or num_segments == 0 or 0 in rest:
        return np.zeros(out_shape, dtype=data.dtype)
    if data.ndim == 1:
        return np.bincount(ids, weights=data, minlength=num_segments).astype(data.dtype, copy=False)
    import scipy.sparse as sp

    e = data.shape[0]
    scatter = sp.csc_matrix((np.ones(e, dtype=data.dtype), ids, np.arange(e + 1)),
                            shape=(num_segments, e))
    out = scatter @ _flat2d(data)
    return np.asarray(out, dtype=data.dtype).reshape(out_shape)


@kernel
def _segment_sum_loop(data, ids, out):
    """The compiled kernel's body: ``out[ids[e]] += data[e]`` row by row."""
    n, f = data.shape
    for e in range(n):
        s = ids[e]
        for k in range(f):
            out[s, k] += data[e, k]


@B.numpy_kernel(device=_ON_HOST)
def _segment_sum_kernel(data, ids, *, num_segments):
    kernel = compiled_row_scatter()
    if kernel is None or data.dtype.kind != "f" or data.size == 0:
        return segment_sum_reference(data, ids, num_segments)
    out = np.zeros((num_segments, data.size // data.shape[0]), dtype=data.dtype)
    kernel(_flat2d(data), ids, out)
    return out.reshape((num_segments,) + data.shape[1:])


@B.numpy_kernel(device=_ON_HOST)
def _gather_kernel(x, ids):
    return np.take(x, ids, axis=0)


@B.numpy_kernel(device=_ON_HOST)
def _count_kernel(ids, *, num_segments):
    return np.bincount(ids, minlength=num_segments).astype(np.int64, copy=False)


def segment_max_reference(data, ids, num_segments):
    """NumPy reference of the segment maximum (``maximum.at``; empty segments 0)."""
    out = np.full((num_segments,) + data.shape[1:], -np.inf, dtype=data.dtype)
    np.maximum.at(out, ids, data)
    out[np.bincount(ids, minlength=num_segments) == 0] = 0
    return out


@kernel
def _segment_max_loop(data, ids, out, seen):
    """The compiled kernel's body: one pass over the rows (Numba compiles it)."""
    n, f = data.shape
    for e in range(n):
        s = ids[e]
        if seen[s]:
            for k in range(f):
                v = data[e, k]
                if v > out[s, k] or v != v:
                    if out[s, k] == out[s, k]:      # a NaN already there stays
                        out[s, k] = v
        else:
            seen[s] = True
            for k in range(f):
                out[s, k] = data[e, k]


USE_COMPILED = True       # switch for the tests: False runs the NumPy references


def compiled_loop(loop):
    """``loop`` (a ``@kernel``) compiled, or ``None`` when compiled kernels are off or the
    tests ask for the NumPy references."""
    return loop.compiled_or_none() if USE_COMPILED else None


def compiled_row_scatter():
    """The compiled ``out[ids[e]] += data[e]`` loop (``data (E, F)``, ``out (S, F)``,
    ids in range), or None when compiled kernels are off: ``add_at`` uses it too."""
    return compiled_loop(_segment_sum_loop)


@B.numpy_kernel(device=_ON_HOST)
def _segment_max_kernel(data, ids, *, num_segments):
    loop = compiled_loop(_segment_max_loop)
    if loop is None or data.dtype.kind != "f" or data.size == 0:
        return segment_max_reference(data, ids, num_segments)
    out = np.zeros((num_segments, int(np.prod(data.shape[1:], dtype=np.int64))), data.dtype)
    loop(_flat2d(data), ids, out, np.zeros(num_segments, dtype=np.bool_))
    return out.reshape((num_segments,) + data.shape[1:])


def _expand_rows(a, like_ndim):
    """``a`` (S,) reshaped to broadcast against (S, ...) of ``like_ndim`` dimensions."""
    return a.reshape(a.shape + (1,) * (like_ndim - 1))


@B.numpy_kernel(device=_ON_HOST)
def _segment_softmax_kernel(data, ids, *, num_segments):
    if data.shape[0] == 0:
        return data.copy()
    m = _segment_max_kernel(data, ids, num_segments=num_segments)
    m = np.where(np.isfinite(m), m, 0).astype(data.dtype, copy=False)
    e = np.exp(data - np.take(m, ids, axis=0))
    s = _segment_sum_kernel(e, ids, num_segments=num_segments)
    e /= np.take(s, ids, axis=0)
    return e


@B.numpy_kernel(device=_ON_HOST)
def _segment_mean_kernel(data, ids, *, num_segments):
    total = _segment_sum_kernel(data, ids, num_segments=num_segments)
    count = np.maximum(np.bincount(ids, minlength=num_segments), 1).astype(total.dtype)
    return total / _expand_rows(count, total.ndim)


# ----------------------------------------------------------------------------- batching
def _offsets(size, step, like: Tensor) -> Tensor:
    """``arange(size) * step`` as a ``(size, 1)`` integer constant on ``like``'s backend."""
    xp = B.ns(physical_data(like))
    return constant(xp.arange(size, dtype=np.int64).reshape(size, 1) * step)


def _flat_ids(ids: Tensor, axis, size, step) -> Tensor:
    """Batched ids (one row per example) shifted so that example ``b`` uses rows
    ``b*step ... (b+1)*step - 1``, flattened: one problem with ``size*step`` segments."""
    ids = broadcast_batch(ids, axis, size)
    return (ids + _offsets(size, step, ids)).reshape(-1)


def _batch_size(args, axes):
    return next(a.shape[ax] for a, ax in zip(args, axes) if ax is not None)


def _reduce_batch(prim):
    """Batching rule of a reduction ``(data, ids) -> (S, ...)`` (sum, mean, max): with
    shared ids the batch axis of ``data`` becomes axis 1 (a trailing axis of the rows);
    with batched ids the examples become one problem with ``B * S`` segments."""
    def rule(args, axes, *, num_segments):
        (data, ids), (ad, ai) = args, axes
        if ai is None:
            return apply(prim, (moveaxis(data, ad, 1), ids), {"num_segments": num_segments}), 1
        size = _batch_size(args, axes)
        data = broadcast_batch(data, ad, size)
        flat = data.reshape((-1,) + tuple(data.shape[2:]))
        out = apply(prim, (flat, _flat_ids(ids, ai, size, num_segments)),
                    {"num_segments": size * num_segments})
        return out.reshape((size, num_segments) + tuple(data.shape[2:])), 0

    return rule


def _softmax_batch(args, axes, *, num_segments):
    (data, ids), (ad, ai) = args, axes
    if ai is None:
        return apply(_segment_softmax, (moveaxis(data, ad, 1), ids),
                     {"num_segments": num_segments}), 1
    size = _batch_size(args, axes)
    data = broadcast_batch(data, ad, size)
    flat = data.reshape((-1,) + tuple(data.shape[2:]))
    out = apply(_segment_softmax, (flat, _flat_ids(ids, ai, size, num_segments)),
                {"num_segments": size * num_segments})
    return out.reshape(tuple(data.shape)), 0


def _gather_batch(args, axes):
    (x, ids), (ax, ai) = args, axes
    if ai is None:
        return apply(_gather, (moveaxis(x, ax, 1), ids)), 1
    size = _batch_size(args, axes)
    ids_b = moveaxis(ids, ai, 0)
    rows = tuple(ids_b.shape[1:])
    if ax is None:                      # shared table, batched ids
        out = apply(_gather, (x, ids_b.reshape(-1)))
        return out.reshape((size,) + rows + tuple(x.shape[1:])), 0
    x = moveaxis(x, ax, 0)
    n = x.shape[1]
    flat = x.reshape((-1,) + tuple(x.shape[2:]))
    out = apply(_gather, (flat, _flat_ids(ids_b, 0, size, n)))
    return out.reshape((size,) + rows + tuple(x.shape[2:])), 0


# ----------------------------------------------------------------------------- ONNX export
def _scatter_rows_onnx(g, data, ids, num_segments, reduction, fill, dtype):
    """``fill`` everywhere in ``(S, ...)``, combined with ``data``'s rows at ``ids``."""
    g.require_opset(18 if reduction == "max" else 16, f"ScatterND with reduction={reduction!r}")
    shape = (num_segments,) + tuple(g.shape(data)[1:])
    base = g.expand(g.scalar(fill, dtype), shape)
    rows = g.unsqueeze(g.cast(ids, np.int64), [1])
    return g.node("ScatterND", [base, rows, g.cast(data, dtype)], reduction=reduction)


def _count_onnx(g, ids, num_segments, ndim, dtype):
    """Segment sizes as ``dtype`` shaped ``(S, 1, ...)`` (``ndim`` axes)."""
    ones = g.expand(g.scalar(1, np.int64), g.shape(ids))
    g.declare(ones, g.shape(ids), np.int64)
    counts = _scatter_rows_onnx(g, ones, ids, num_segments, "add", 0, np.int64)
    return g.reshape(g.cast(counts, dtype), (num_segments,) + (1,) * (ndim - 1))


def _segment_sum_onnx(g, inputs, outputs, *, num_segments):
    data, ids = inputs
    res = _scatter_rows_onnx(g, data, ids, num_segments, "add", 0, g.dtype(outputs[0]))
    g.node("Identity", [res], outputs[0])


def _segment_mean_onnx(g, inputs, outputs, *, num_segments):
    data, ids = inputs
    dtype = g.dtype(outputs[0])
    total = _scatter_rows_onnx(g, data, ids, num_segments, "add", 0, dtype)
    count = _count_onnx(g, ids, num_segments, g.ndim(outputs[0]), dtype)
    g.node("Div", [total, g.node("Max", [count, g.scalar(1, dtype)])], outputs[0])


def _segment_max_parts(g, data, ids, num_segments, dtype, ndim):
    """The segment maxima, 0 for empty segments (as the kernels give)."""
    top = _scatter_rows_onnx(g, data, ids, num_segments, "max", -np.inf, dtype)
    empty = g.node("Equal", [_count_onnx(g, ids, num_segments, ndim, dtype),
                             g.scalar(0, dtype)])
    return g.node("Where", [empty, g.scalar(0, dtype), top])


def _segment_max_onnx(g, inputs, outputs, *, num_segments):
    data, ids = inputs
    dtype = g.dtype(outputs[0])
    res = _segment_max_parts(g, data, ids, num_segments, dtype, g.ndim(outputs[0]))
    g.node("Identity", [res], outputs[0])


def _segment_softmax_onnx(g, inputs, outputs, *, num_segments):
    data, ids = inputs
    dtype = g.dtype(outputs[0])
    m = _segment_max_parts(g, data, ids, num_segments, dtype, g.ndim(data))
    m = g.node("Where", [g.node("IsInf", [m]), g.scalar(0, dtype), m])
    e = g.node("Exp", [g.node("Sub", [data, g.node("Gather", [m, ids], axis=0)])])
    g.declare(e, g.shape(data), dtype)
    total = _scatter_rows_onnx(g, e, ids, num_segments, "add", 0, dtype)
    g.node("Div", [e, g.node("Gather", [total, ids], axis=0)], outputs[0])


def _segment_count_onnx(g, inputs, outputs, *, num_segments):
    counts = _count_onnx(g, inputs[0], num_segments, 1, np.int64)
    g.cast(counts, g.dtype(outputs[0]), outputs[0])


# ----------------------------------------------------------------------------- primitives
def _gather_vjp(g, out, inputs, needs):
    x, ids = inputs
    return [segment_sum_raw(g, ids, x.shape[0]) if needs[0] else None, None]


def _gather_jvp(tangents, out, inputs):
    t = tangents[0]
    return None if t is None else gather_raw(t, inputs[1])


_gather = Primitive("gather_rows", lambda x, ids: _gather_kernel(x, ids), save=(1,),
                    onnx=lambda g, inputs, outputs: g.node("Gather", inputs, outputs[0], axis=0),
                    vjp_all=_gather_vjp, jvp_all=_gather_jvp, batch=_gather_batch)


def _sum_vjp(g, out, inputs, needs, *, num_segments):
    return [gather_raw(g, inputs[1]) if needs[0] else None, None]


def _sum_jvp(tangents, out, inputs, *, num_segments):
    t = tangents[0]
    return None if t is None else segment_sum_raw(t, inputs[1], num_segments)


_segment_sum = Primitive("segment_sum", _segment_sum_kernel, save=(1,), vjp_all=_sum_vjp,
                         jvp_all=_sum_jvp, onnx=_segment_sum_onnx)
_segment_sum.batch = _reduce_batch(_segment_sum)


def _count(ids: Tensor, num_segments, dtype, ndim) -> Tensor:
    """Segment sizes (at least 1) as a float tensor broadcasting against (S, ...)."""
    c = apply(_segment_count, (ids,), {"num_segments": num_segments})
    c = c.astype(dtype)

    return maximum(c, 1.0).reshape((num_segments,) + (1,) * (ndim - 1))


def _mean_vjp(g, out, inputs, needs, *, num_segments):
    if not needs[0]:
        return [None, None]
    ids = inputs[1]
    return [gather_raw(g / _count(ids, num_segments, g.dtype, g.ndim), ids), None]


def _mean_jvp(tangents, out, inputs, *, num_segments):
    t = tangents[0]
    return None if t is None else apply(_segment_mean, (t, inputs[1]),
                                        {"num_segments": num_segments})


_segment_mean = Primitive("segment_mean", _segment_mean_kernel, save=(1,), vjp_all=_mean_vjp,
                          jvp_all=_mean_jvp, onnx=_segment_mean_onnx)
_segment_mean.batch = _reduce_batch(_segment_mean)


def _max_share(data, ids, out, num_segments):
    """1/k for each of the k rows equal to their segment's maximum, 0 elsewhere."""
    hit = equal(data, gather_raw(out, ids)).astype(data.dtype)
    return hit / gather_raw(segment_sum_raw(hit, ids, num_segments), ids)


def _max_vjp(g, out, inputs, needs, *, num_segments):
    if not needs[0]:
        return [None, None]
    data, ids = inputs
    return [gather_raw(g, ids) * _max_share(data, ids, out, num_segments), None]


def _max_jvp(tangents, out, inputs, *, num_segments):
    t = tangents[0]
    if t is None:
        return None
    data, ids = inputs
    return segment_sum_raw(t * _max_share(data, ids, out, num_segments), ids, num_segments)


_segment_max = Primitive("segment_max", _segment_max_kernel, save=(0, 1, "out"),
                         vjp_all=_max_vjp, jvp_all=_max_jvp, onnx=_segment_max_onnx)
_segment_max.batch = _reduce_batch(_segment_max)


def _softmax_rule(g, out, ids, num_segments):
    return out * (g - gather_raw(segment_sum_raw(g * out, ids, num_segments), ids))


def _softmax_vjp(g, out, inputs, needs, *, num_segments):
    if not needs[0]:
        return [None, None]
    return [_softmax_rule(g, out, inputs[1], num_segments), None]


def _softmax_jvp(tangents, out, inputs, *, num_segments):
    t = tangents[0]
    return None if t is None else _softmax_rule(t, out, inputs[1], num_segments)


_segment_softmax = Primitive("segment_softmax", _segment_softmax_kernel, save=(1, "out"),
                             vjp_all=_softmax_vjp, jvp_all=_softmax_jvp, batch=_softmax_batch,
                             onnx=_segment_softmax_onnx)

_segment_count = Primitive("segment_count", _count_kernel, differentiable=False,
                           onnx=_segment_count_onnx,
                           batch=lambda args, axes, **p: loop_rule(_segment_count)(args, axes, **p))


def gather_raw(x: Tensor, ids: Tensor) -> Tensor:
    """``gather_rows`` without argument checks (for rules and layers)."""
    return apply(_gather, (x, ids))


def segment_sum_raw(data: Tensor, ids: Tensor, num_segments: int) -> Tensor:
    """``segment_sum`` without argument checks (for rules and layers)."""
    return apply(_segment_sum, (data, ids), {"num_segments": int(num_segments)})


# ----------------------------------------------------------------------------- public ops
def _ids(segment_ids, what: str, like: Tensor | None = None) -> Tensor:
    """Segment ids as a 1-D int64 tensor (on ``like``'s backend when given)."""
    if isinstance(segment_ids, Tensor):
        ids = segment_ids
    else:
        arr = B.asarray(segment_ids, like=None if like is None else physical_data(like))
        if arr.size == 0 and arr.dtype.kind not in "iu":
            arr = arr.astype(np.int64)
        ids = constant(arr)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{what}: segment ids must be integers, got {ids.dtype} "
                        f"(shape {ids.shape})")
    if ids.ndim != 1:
        raise ValueError(f"{what}: segment ids must be 1-D, got shape {ids.shape}")
    if ids.dtype != np.int64 and _known(ids):
        ids = ids.astype(np.int64)
    return ids


def _known(t: Tensor) -> bool:
    return not isinstance(t.data, AbstractArray)


def _segment_args(data, segment_ids, num_segments, what):
    data = to_tensor(data, what)
    if data.ndim == 0:
        raise ValueError(f"{what}: data must have a row axis (shape (E,) or (E, ...)), "
                         f"got a 0-d tensor")
    ids = _ids(segment_ids, what, data)
    if ids.shape[0] != data.shape[0]:
        raise ValueError(f"{what}: {ids.shape[0]} segment ids for {data.shape[0]} rows of "
                         f"data (shape {data.shape}); expected one id per row")
    if num_segments is None:
        if not _known(ids):
            raise ValueError(f"{what}: num_segments is required inside vmap")
        num_segments = int(read_values(ids, what).max()) + 1 if ids.size else 0
    if isinstance(num_segments, bool) or not isinstance(num_segments, (int, np.integer)) \
            or num_segments < 0:
        raise ValueError(f"{what}: num_segments must be a non-negative int, got "
                         f"{num_segments!r}")
    if _known(ids) and ids.size:
        record_call(_check_ids, ids.data, limit=int(num_segments), what=what)
    return data, ids, int(num_segments)


def _check_ids(ids, *, limit, what):
    """Raise if a segment id lies outside ``[0, limit)`` (a recorded step under ``jit``,
    so that every replay checks its own ids)."""
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= limit:
        bad = lo if lo < 0 else hi
        raise IndexError(f"{what}: segment id {bad} is out of range for num_segments={limit} "
                         f"(ids must lie in [0, {limit}))")


def _check_rows(ids, *, limit, what, shape):
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= limit:
        raise IndexError(f"{what}: index {lo if lo < 0 else hi} is out of range for {limit} "
                         f"rows (x of shape {shape})")


def segment_sum(data, segment_ids, num_segments=None) -> Tensor:
    """Sum of the rows of ``data`` (E, ...) sharing a segment id: ``(num_segments, ...)``
    with ``out[s] = Σ_{e: ids[e] = s} data[e]`` (0 for an empty segment). Ids are
    unsorted ints; ``num_segments=None`` means ``max(ids) + 1``."""
    data, ids, n = _segment_args(data, segment_ids, num_segments, "segment_sum")
    return apply(_segment_sum, (data, ids), {"num_segments": n})


def segment_mean(data, segment_ids, num_segments=None) -> Tensor:
    """Mean of the rows of each segment (0 for an empty segment)."""
    data, ids, n = _segment_args(data, segment_ids, num_segments, "segment_mean")
    if data.dtype.kind != "f":
        data = floating(data)
    return apply(_segment_mean, (data, ids), {"num_segments": n})


def segment_max(data, segment_ids, num_segments=None) -> Tensor:
    """Elementwise maximum of the rows of each segment (0 for an empty segment). The
    gradient goes to the rows that attain the maximum, split equally between ties."""
    data, ids, n = _segment_args(data, segment_ids, num_segments, "segment_max")
    return apply(_segment_max, (data, ids), {"num_segments": n})


def segment_softmax(data, segment_ids, num_segments=None) -> Tensor:
    """Softmax of the rows of ``data`` (E, ...) within each segment, elementwise in the
    trailing axes: ``out[e] = exp(data[e]) / Σ_{e': ids[e'] = ids[e]} exp(data[e'])``,
    computed stably (shifted by each segment's maximum). Same shape as ``data``."""
    data, ids, n = _segment_args(data, segment_ids, num_segments, "segment_softmax")
    if data.dtype.kind != "f":
        raise TypeError(f"segment_softmax: data must be floating, got {data.dtype}")
    return apply(_segment_softmax, (data, ids), {"num_segments": n})


def segment_count(segment_ids, num_segments=None) -> Tensor:
    """How many ids fall in each segment (int64, not differentiated)."""
    ids = _ids(segment_ids, "segment_count")
    if num_segments is None:
        num_segments = int(read_values(ids, "segment_count").max()) + 1 if ids.size else 0
    return apply(_segment_count, (ids,), {"num_segments": int(num_segments)})


def gather_rows(x, indices) -> Tensor:
    """``x[indices]`` along axis 0 for 1-D integer ``indices`` (E,): shape
    ``(E,) + x.shape[1:]``. Its gradient is ``segment_sum`` back onto the rows."""
    x = to_tensor(x, "gather_rows")
    if x.ndim == 0:
        raise ValueError("gather_rows: x must have a row axis, got a 0-d tensor")
    ids = _ids(indices, "gather_rows", x)
    if _known(ids) and ids.size:
        record_call(_check_rows, ids.data, limit=x.shape[0], what="gather_rows",
                    shape=tuple(x.shape))
    return apply(_gather, (x, ids))
