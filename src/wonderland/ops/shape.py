"""Shape primitives: reshape, transpose, broadcast_to, concatenate, pad, flip, and the
compositions built on them (moveaxis, swapaxes, expand_dims, squeeze, stack, split,
repeat, tile, flatten). All are linear: their JVP is the op applied to the tangent, and
their VJP moves the cotangent back (reshape back, transpose back, sum, slice).
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..core.primitive import Primitive, apply
from ..core.structural import BROADCAST_TO, RESHAPE, TRANSPOSE
from ..core.tensor import Tensor
from ..core.tracing import read_values
from ..core.vmap import axis_rule, batch_size, broadcast_batch, moveaxis
from .arguments import normalize_axes, normalize_axis, result_dtype, shape_arg, to_tensor
from .indexing import take

# ----------------------------------------------------------------------------- reshape
_reshape = RESHAPE


def reshape(x, *shape) -> Tensor:
    """Same elements in a new shape (one entry may be -1): ``reshape(x, (2, -1))``."""
    x = to_tensor(x, "reshape")
    shape = shape_arg(shape, "reshape")
    if shape == x.shape:
        return x
    known = 1
    unknown = [i for i, s in enumerate(shape) if s == -1]
    for s in shape:
        if s != -1:
            if s < 0:
                raise ValueError(f"reshape: invalid dimension {s} in shape {shape}")
            known *= s
    if len(unknown) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got shape {shape}")
    if unknown:
        if known == 0 or x.size % known:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                             f"({x.size} elements) into shape {shape}")
        shape = shape[:unknown[0]] + (x.size // known,) + shape[unknown[0] + 1:]
    elif known != x.size:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                         f"({x.size} elements) into shape {shape}")
    return apply(_reshape, (x,), {"shape": shape})


def ravel(x) -> Tensor:
    """The elements as a 1-D tensor."""
    return reshape(x, -1)


def flatten(x, start_axis=0, end_axis=-1) -> Tensor:
    """Merge axes ``start_axis..end_axis`` (inclusive) into one; by default all."""
    x = to_tensor(x, "flatten")
    if x.ndim == 0:
        return x.reshape(1)
    s = normalize_axis(start_axis, x.ndim, "flatten")
    e = normalize_axis(end_axis, x.ndim, "flatten")
    if e < s:
        raise ValueError(f"flatten: end_axis {end_axis} comes before start_axis {start_axis}")
    merged = 1                      # spelled out: -1 is ambiguous when another axis is 0
    for n in x.shape[s:e + 1]:
        merged *= n
    return x.reshape(x.shape[:s] + (merged,) + x.shape[e + 1:])


def expand_dims(x, axis) -> Tensor:
    """Insert length-1 axes at the positions ``axis`` (int or tuple) of the result."""
    x = to_tensor(x, "expand_dims")
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    axes = normalize_axes(axes, nd, "expand_dims")
    shape = iter(x.shape)
    return x.reshape(tuple(1 if i in axes else next(shape) for i in range(nd)))


def squeeze(x, axis=None) -> Tensor:
    """Remove length-1 axes (all of them, or those in ``axis``)."""
    x = to_tensor(x, "squeeze")
    if axis is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        axes = normalize_axes(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: cannot squeeze axis {a} of size {x.shape[a]} "
                                 f"(shape {x.shape})")
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))


# ----------------------------------------------------------------------------- transpose
_transpose = TRANSPOSE


def transpose(x, axes=None) -> Tensor:
    """Permute the axes (default: reverse them)."""
    x = to_tensor(x, "transpose")
    if axes is None:
        axes = tuple(range(x.ndim))[::-1]
    else:
        axes = tuple(normalize_axis(a, x.ndim, "transpose") for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the "
                             f"{x.ndim} axes of a tensor of shape {x.shape}")
    if axes == tuple(range(x.ndim)):
        return x
    return apply(_transpose, (x,), {"axes": axes})


def moveaxis(x, source, destination) -> Tensor:
    """Move axes from ``source`` to ``destination`` positions, keeping the others' order."""
    x = to_tensor(x, "moveaxis")
    src = [normalize_axis(a, x.ndim, "moveaxis") for a in ((source,) if isinstance(source, int) else source)]
    dst = [normalize_axis(a, x.ndim, "moveaxis") for a in ((destination,) if isinstance(destination, int) else destination)]
    if len(src) != len(dst):
        raise ValueError("moveaxis: source and destination must have the same length")
    order = [a for a in range(x.ndim) if a not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, order)


def swapaxes(x, axis1, axis2) -> Tensor:
    """Exchange two axes."""
    x = to_tensor(x, "swapaxes")
    a = normalize_axis(axis1, x.ndim, "swapaxes")
    b = normalize_axis(axis2, x.ndim, "swapaxes")
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


# ----------------------------------------------------------------------------- broadcast_to
_broadcast_to = BROADCAST_TO


def broadcast_to(x, shape) -> Tensor:
    """View ``x`` with NumPy broadcasting to ``shape``; the gradient sums back."""
    x = to_tensor(x, "broadcast_to")
    shape = shape_arg((shape,), "broadcast_to") if not isinstance(shape, int) else (shape,)
    if shape == x.shape:
        return x
    ok = len(shape) >= x.ndim and all(
        n == m or n == 1 for n, m in zip(x.shape[::-1], shape[::-1]))
    if not ok:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
    return apply(_broadcast_to, (x,), {"shape": shape})


def broadcast_arrays(*tensors):
    """Broadcast tensors against each other."""
    ts = [to_tensor(t, "broadcast_arrays") for t in tensors]
    try:
        shape = np.broadcast_shapes(*[t.shape for t in ts])
    except ValueError:
        raise ValueError(f"broadcast_arrays: shapes {[t.shape for t in ts]} cannot be "
                         f"broadcast together") from None
    return [broadcast_to(t, shape) for t in ts]


# ----------------------------------------------------------------------------- concatenate
def _concatenate_vjp_all(g, out, inputs, needs, *, axis):
    cts, start = [], 0
    for x, need in zip(inputs, needs):
        stop = start + x.shape[axis]
        if need:
            index = (slice(None),) * axis + (slice(start, stop),)
            cts.append(g[index])
        else:
            cts.append(None)
        start = stop
    return cts


def _concatenate_batch(args, axes, *, axis):
    size = batch_size(args, axes)
    fixed = tuple(broadcast_batch(a, ax, size) for a, ax in zip(args, axes))
    return apply(_concatenate, fixed, {"axis": axis + 1}), 0


def _concatenate_onnx(g, inputs, outputs, *, axis):
    dtype = g.dtype(outputs[0])
    g.node("Concat", [g.cast(x, dtype) for x in inputs], outputs[0], axis=axis)


_concatenate = Primitive(
    "concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis), save=(),
    vjp_all=_concatenate_vjp_all, linear=True, batch=_concatenate_batch, onnx=_concatenate_onnx)


def _tensor_list(tensors, what):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{what}: expected a list or tuple of tensors, got "
                        f"{type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{what}: need at least one tensor")
    ts = [to_tensor(t, what) for t in tensors]
    dtype = result_dtype(ts)
    return [t if t.dtype == dtype else t.astype(dtype) for t in ts]


def concatenate(tensors, axis=0) -> Tensor:
    """Join tensors along an existing axis."""
    ts = _tensor_list(tensors, "concatenate")
    nd = ts[0].ndim
    if nd == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    axis = normalize_axis(axis, nd, "concatenate")
    for t in ts[1:]:
        if t.ndim != nd or any(a != b for i, (a, b) in enumerate(zip(t.shape, ts[0].shape))
                               if i != axis):
            raise ValueError(f"concatenate: shapes {ts[0].shape} and {t.shape} differ "
                             f"outside axis {axis}")
    if len(ts) == 1:
        return ts[0]
    return apply(_concatenate, tuple(ts), {"axis": axis})


def stack(tensors, axis=0) -> Tensor:
    """Join tensors of one shape along a new axis."""
    ts = _tensor_list(tensors, "stack")
    for t in ts[1:]:
        if t.shape != ts[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape, got "
                             f"{ts[0].shape} and {t.shape}")
    axis = normalize_axis(axis, ts[0].ndim + 1, "stack")
    expanded = [t.expand_dims(axis) for t in ts]
    if len(expanded) == 1:
        return expanded[0]
    return apply(_concatenate, tuple(expanded), {"axis": axis})


def split(x, indices_or_sections, axis=0) -> list:
    """Split into equal sections (an int) or at the given indices (a list), as NumPy."""
    x = to_tensor(x, "split")
    if x.ndim == 0:
        raise ValueError("split: cannot split a 0-d tensor")
    axis = normalize_axis(axis, x.ndim, "split")
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: an axis of size {n} cannot be split into {k} equal "
                             f"sections")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        points = [int(i) for i in indices_or_sections]
        bounds = [0] + [min(max(p if p >= 0 else p + n, 0), n) for p in points] + [n]
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        pieces.append(x[(slice(None),) * axis + (slice(start, max(start, stop)),)])
    return pieces


# ----------------------------------------------------------------------------- pad
def _unpad(g, pad):
    return g[tuple(slice(lo, lo + n) for (lo, _), n in zip(pad, _inner(g.shape, pad)))]


def _inner(shape, pad):
    return tuple(n - lo - hi for n, (lo, hi) in zip(shape, pad))


def _pad_onnx(g, inputs, outputs, *, pad, value):
    widths = [int(a) for a, _ in pad] + [int(b) for _, b in pad]      # ONNX: begins, ends
    g.node("Pad", [inputs[0], g.ints(widths), g.scalar(value, g.dtype(outputs[0]))],
           outputs[0], mode="constant")


_pad = Primitive(
    "pad", lambda x, *, pad, value: np.pad(x, pad, mode="constant", constant_values=value),
    save=(), onnx=_pad_onnx, vjp=lambda g, out, x, *, pad, value: _unpad(g, pad),
    jvp=lambda t, out, x, *, pad, value: apply(_pad, (t,), {"pad": pad, "value": 0}),
    batch=lambda args, axes, *, pad, value: (apply(_pad, (moveaxis(args[0], axes[0], 0),),
                                                   {"pad": ((0, 0),) + pad, "value": value}), 0))


def _pad_indices(n, before, after, mode):
    """Source index of every position of a padded axis of length ``n``."""
    i = np.arange(-before, n + after)
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return i % n
    # reflect (mirror without repeating the edge): period 2n - 2
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    j = i % period
    return np.where(j < n, j, period - j)


def pad(x, pad_width, mode="constant", constant_values=0) -> Tensor:
    """Pad each axis, NumPy's ``pad_width`` forms: ``n``, ``(before, after)`` or one
    ``(before, after)`` pair per axis. ``mode`` is ``"constant"`` (with
    ``constant_values``), ``"reflect"`` (mirror, edge not repeated), ``"edge"``
    (replicate) or ``"wrap"`` (circular); the last three gather from ``x``, so their
    gradient adds the copies back."""
    x = to_tensor(x, "pad")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'edge' or 'wrap', got {mode!r}")
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except ValueError:
        raise ValueError(f"pad: pad_width {pad_width!r} does not fit a tensor with "
                         f"{x.ndim} dimensions") from None
    if (widths < 0).any():
        raise ValueError(f"pad: pad widths must be non-negative, got {pad_width!r}")
    widths = tuple((int(a), int(b)) for a, b in widths)
    if mode != "constant":
        out = x
        for axis, (a, b) in enumerate(widths):
            if a == 0 and b == 0:
                continue
            n = x.shape[axis]
            if n == 0:
                raise ValueError(f"pad: mode={mode!r} cannot pad the empty axis {axis}")

            out = take(out, _pad_indices(n, a, b, mode), axis=axis)
        return out
    if isinstance(constant_values, Tensor):
        constant_values = constant_values.item()
    return apply(_pad, (x,), {"pad": widths, "value": constant_values})


# ----------------------------------------------------------------------------- flip, repeat, tile
_INT64_MIN = np.iinfo(np.int64).min


def _flip_onnx(g, inputs, outputs, *, axis):
    """Slices with step -1 from the last element to before the first."""
    n = len(axis)
    if not n:
        g.node("Identity", inputs, outputs[0])
        return
    g.slice(inputs[0], [-1] * n, [_INT64_MIN] * n, list(axis), [-1] * n, outputs[0])


_flip = Primitive("flip", lambda x, *, axis: np.flip(x, axis=axis), save=(), view=True,
                  onnx=_flip_onnx,
                  vjp=lambda g, out, x, *, axis: apply(_flip, (g,), {"axis": axis}), linear=True)
_flip.batch = axis_rule(_flip)


def flip(x, axis=None) -> Tensor:
    """Reverse the order of elements along ``axis`` (default: every axis)."""
    x = to_tensor(x, "flip")
    return apply(_flip, (x,), {"axis": normalize_axes(axis, x.ndim, "flip")})


def repeat(x, repeats, axis=None) -> Tensor:
    """Repeat each element ``repeats`` times along ``axis`` (flattened when ``None``)."""
    x = to_tensor(x, "repeat")
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = normalize_axis(axis, x.ndim, "repeat")
    r = np.asarray(B.to_numpy(read_values(repeats, "repeat")))   # the result's shape
    if r.dtype.kind not in "iu" or (r < 0).any():
        raise ValueError(f"repeat: repeats must be non-negative integers, got {repeats!r}")
    index = np.repeat(np.arange(x.shape[axis]), r)
    return x[(slice(None),) * axis + (index,)]


def tile(x, reps) -> Tensor:
    """Repeat the whole tensor ``reps`` times along each axis (NumPy's ``tile``)."""
    x = to_tensor(x, "tile")
    reps = (reps,) if isinstance(reps, int) else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: repetitions must be non-negative, got {reps}")
    nd = max(x.ndim, len(reps))
    reps = (1,) * (nd - len(reps)) + reps
    x = x.reshape((1,) * (nd - x.ndim) + x.shape)
    # (r0, n0, r1, n1, ...) by broadcasting, then merge each pair
    expanded = x.reshape(tuple(d for n in x.shape for d in (1, n)))
    target = tuple(d for r, n in zip(reps, x.shape) for d in (r, n))
    return expanded.broadcast_to(target).reshape(tuple(r * n for r, n in zip(reps, x.shape)))
