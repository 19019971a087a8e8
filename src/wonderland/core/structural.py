"""The structural primitives the engine and the transforms themselves need: identity,
sum, broadcast_to, reshape, transpose and cast.

Cotangents are summed back to an input's shape (``sum``, ``reshape``), broadcast out to a
tangent's shape (``broadcast_to``), cast to an input's dtype (``cast``), and ``vmap``
moves batch axes (``transpose``); these live in the core so that the engine and the
transforms depend on nothing above it. ``wonderland.ops``
re-exports them with argument checking (``wl.sum``, ``wl.reshape`` ...); the functions
here take already-normalised arguments.

Each also declares its ONNX export rule (``onnx=``; see ``wonderland.onnx``): sizes that
follow a dynamic axis are read from the traced output shape, which the export graph
knows with those sizes symbolic, never from the parameters.
"""

from __future__ import annotations

import math

from .. import backend as B
from .primitive import IDENTITY, Primitive, apply
from .tensor import Tensor, from_array, physical_data


def _sum_vjp(g, out, x, *, axis, keepdims):
    if not keepdims:
        g = reshape(g, kept_shape(x.shape, axis))
    return broadcast_to(g, x.shape)


def _sum_batch(args, axes_in, *, axis, keepdims):
    x, = moved_to_front(args, axes_in)
    return apply(SUM, (x,), {"axis": tuple(a + 1 for a in axis), "keepdims": keepdims}), 0


def _reshape_batch(args, axes_in, *, shape):
    x, = moved_to_front(args, axes_in)
    return apply(RESHAPE, (x,), {"shape": (x.shape[0],) + tuple(shape)}), 0


def _broadcast_batch(args, axes_in, *, shape):
    x, = moved_to_front(args, axes_in)
    lead = len(shape) - (x.ndim - 1)
    if lead:
        x = apply(RESHAPE, (x,), {"shape": (x.shape[0],) + (1,) * lead + x.shape[1:]})
    return apply(BROADCAST_TO, (x,), {"shape": (x.shape[0],) + tuple(shape)}), 0


def _elementwise_batch(prim):
    def rule(args, axes_in, **params):
        return apply(prim, tuple(args), params), axes_in[0]

    return rule


IDENTITY.batch = _elementwise_batch(IDENTITY)
IDENTITY.onnx = lambda g, inputs, outputs: g.node("Identity", inputs, outputs[0])

_GEMV_MIN = 1 << 15          # elements from which a leading-axes sum is a product
_ones_cache: dict = {}


def _sum_forward(x, *, axis, keepdims):
    """``x.sum(axis)``; over the leading axes of a large contiguous float NumPy array (a
    bias's gradient, summed over batch and positions) it is ``ones · x`` as a matrix-vector
    product, which BLAS runs many times faster than NumPy's row-by-row reduction."""
    k = len(axis)
    if (type(x) is B.ndarray and 0 < k < x.ndim and x.size >= _GEMV_MIN
            and axis == tuple(range(k)) and x.dtype.char in "fd" and x.flags.c_contiguous):
        lead = x.size // math.prod(x.shape[k:])
        key = (lead, x.dtype.char)
        ones = _ones_cache.get(key)
        if ones is None:
            if len(_ones_cache) > 16:
                _ones_cache.clear()
            ones = _ones_cache[key] = B.ndarray((lead,), dtype=x.dtype)
            ones.fill(1)
        res = ones @ x.reshape(lead, -1)
        return res.reshape(((1,) * k if keepdims else ()) + x.shape[k:])
    return x.sum(axis=axis, keepdims=keepdims)


def _sum_onnx(g, inputs, outputs, *, axis, keepdims):
    # NumPy sums small integers and bools in int64: compute in the result's dtype
    x = g.cast(inputs[0], g.dtype(outputs[0]))
    g.reduce("ReduceSum", x, axis, keepdims, outputs[0])


SUM = Primitive("sum", _sum_forward, vjp=_sum_vjp, linear=True, save=(), batch=_sum_batch,
                onnx=_sum_onnx)

RESHAPE = Primitive("reshape", lambda x, *, shape: x.reshape(shape),
                    vjp=lambda g, out, x, *, shape: reshape(g, x.shape), linear=True,
                    save=(), view=True, batch=_reshape_batch,
                    onnx=lambda g, inputs, outputs, *, shape:
                        g.reshape(inputs[0], g.shape(outputs[0]), outputs[0]))

BROADCAST_TO = Primitive(
    "broadcast_to", lambda x, *, shape: B.of(x).broadcast_to(x, shape),
    vjp=lambda g, out, x, *, shape: g, linear=True, save=(), view=True,
    batch=_broadcast_batch,
    onnx=lambda g, inputs, outputs, *, shape: g.expand(inputs[0], g.shape(outputs[0]), outputs[0]))

def _transpose_batch(args, axes_in, *, axes):
    x, = moved_to_front(args, axes_in)
    return apply(TRANSPOSE, (x,), {"axes": (0,) + tuple(a + 1 for a in axes)}), 0


def _inverse(axes):
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


TRANSPOSE = Primitive(
    "transpose", lambda x, *, axes: x.transpose(axes),
    vjp=lambda g, out, x, *, axes: apply(TRANSPOSE, (g,), {"axes": _inverse(axes)}),
    linear=True, save=(), view=True, batch=_transpose_batch,
    onnx=lambda g, inputs, outputs, *, axes: g.transpose(inputs[0], axes, outputs[0]))

CAST = Primitive("cast", lambda x, *, dtype: x.astype(dtype),
                 vjp=lambda g, out, x, *, dtype: g, linear=True, save=())
CAST.batch = _elementwise_batch(CAST)
CAST.onnx = lambda g, inputs, outputs, *, dtype: g.cast(inputs[0], dtype, outputs[0])


def kept_shape(shape: tuple, axes: tuple) -> tuple:
    """``shape`` with the reduced ``axes`` set to 1 (the ``keepdims=True`` shape)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def sum_axes(x: Tensor, axis: tuple, keepdims: bool = False) -> Tensor:
    """Sum over the (sorted, non-negative) ``axis`` tuple."""
    return apply(SUM, (x,), {"axis": axis, "keepdims": keepdims})


def reshape(x: Tensor, shape: tuple) -> Tensor:
    if tuple(x.shape) == tuple(shape):
        return x
    return apply(RESHAPE, (x,), {"shape": tuple(shape)})


def broadcast_to(x: Tensor, shape: tuple) -> Tensor:
    if tuple(x.shape) == tuple(shape):
        return x
    return apply(BROADCAST_TO, (x,), {"shape": tuple(shape)})


def transpose(x: Tensor, axes: tuple) -> Tensor:
    """Permute the axes (``axes`` a permutation of ``range(x.ndim)``)."""
    if tuple(axes) == tuple(range(len(axes))):
        return x
    return apply(TRANSPOSE, (x,), {"axes": tuple(axes)})


def moveaxis(x: Tensor, source: int, destination: int) -> Tensor:
    if source == destination:
        return x
    order = [i for i in range(x.ndim) if i != source]
    order.insert(destination, source)
    return transpose(x, tuple(order))


def moved_to_front(args, axes):
    """Batched arguments (``vmap``'s rules) with their batch axis first (others unchanged)."""
    return [a if ax is None else moveaxis(a, ax, 0) for a, ax in zip(args, axes)]


def unbatched_like(x: Tensor, value) -> Tensor:
    """A plain (unbatched) constant with ``x``'s per-example shape and dtype."""
    xp = B.ns(physical_data(x))
    return from_array(xp.full(x.shape, value, dtype=x.dtype))


def cast(x: Tensor, dtype) -> Tensor:
    if x.dtype == dtype:
        return x
    return apply(CAST, (x,), {"dtype": dtype})


def identity(x: Tensor) -> Tensor:
    return apply(IDENTITY, (x,))


def zeros_like(x) -> Tensor:
    """A constant tensor of zeros with ``x``'s shape and dtype (``x`` a tensor or a
    :class:`Meta`), batched like ``x`` inside ``vmap``."""
    if getattr(x, "_batch", None) is not None:
        return unbatched_like(x, 0)
    data = x.data if isinstance(x, Tensor) else None
    xp = B.ns(data) if data is not None else B.default().xp
    return from_array(xp.zeros(x.shape, dtype=x.dtype))


def ones_like(x) -> Tensor:
    """A constant tensor of ones with ``x``'s shape and dtype."""
    if getattr(x, "_batch", None) is not None:
        return unbatched_like(x, 1)
    data = x.data if isinstance(x, Tensor) else None
    xp = B.ns(data) if data is not None else B.default().xp
    return from_array(xp.ones(x.shape, dtype=x.dtype))


def unbroadcast(c: Tensor, shape: tuple) -> Tensor:
    """Sum a cotangent of a broadcast shape back to ``shape``."""
    cshape = c.shape
    lead = len(cshape) - len(shape)
    if lead < 0:
        return broadcast_to(c, shape)
    if lead and cshape[lead:] == shape:                 # only leading axes were added
        return sum_axes(c, tuple(range(lead)))
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and cshape[lead + i] != 1)
    if axes:
        c = sum_axes(c, axes, keepdims=True)
    if c.shape != shape:
        size = 1
        for s in shape:
            size *= s
        if c.size != size:
            raise RuntimeError(f"backward: cannot reduce a cotangent of shape {cshape} "
                               f"to an input of shape {shape}")
        c = reshape(c, shape)
    return c
