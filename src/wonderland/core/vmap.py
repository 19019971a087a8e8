"""``vmap``: vectorising a function over a batch axis, as a transformation level.

Inside ``vmap(f)``, ``f`` sees *batched tensors*: a batched tensor at level ``L`` wraps an
inner tensor that holds every example, with the batch along axis ``a`` (its ``_batch``
slot is ``(L, inner, a)``); its own ``data`` is an :class:`AbstractArray` of the
per-example shape, so ``f`` sees per-example shapes and cannot branch on values.

``apply`` meets a batched input at the innermost active level and calls the primitive's
*batching rule* ``rule(args, bdims, **params) -> (out, out_axis)`` with the inner tensors
and their batch axes (``None`` for an input that is not batched). Most rules follow from
broadcasting (move the batch axis to the front, shift the axis parameters by one); a
primitive without a rule falls back to a loop over the examples, which is correct but
slow.

The reverse graph is always recorded on the inner tensors (the batched computation is
one bigger computation whose examples do not interact), so ``grad`` of a function that
uses ``vmap`` inside just works; ``grad`` *inside* ``vmap`` sweeps the inner graph with
the cotangents laid out like the inner tensors (:func:`batched_backward`).
"""

from __future__ import annotations

import functools

from .. import backend as B
from .modes import new_level
from .primitive import Primitive, apply, register_interpreter
from .pytree import flatten, unflatten
from .engine import run_backward
from .structural import (BROADCAST_TO, RESHAPE, TRANSPOSE, moveaxis,  # noqa: F401 - rules' helpers
                         moved_to_front, unbatched_like)
from .tensor import AbstractArray, Tensor, from_array, to_tensor


# The batch size of every vmap level that is running (levels are never reused, so one
# dict serves every thread).
ACTIVE_SIZES: dict = {}


# ----------------------------------------------------------------------------- batched tensors
def wrap(inner: Tensor, level: int, axis: int) -> Tensor:
    """The batched tensor at ``level`` whose examples lie along ``axis`` of ``inner``.

    Transformations nest by level: a wrapper only holds what belongs to lower levels.
    So batch levels of ``inner`` above ``level`` stay outside the new wrapper, and so do
    tangents at higher ``jvp`` levels (wrapped the same way, onto the new tensor).
    """
    if inner._batch is not None and inner._batch[0] > level:
        return _wrap_inside(inner, level, axis)
    high = _higher_tangents(inner, level)
    if high:
        inner = _without_tangents(inner, high)
    shape = inner.shape
    t = from_array(AbstractArray(shape[:axis] + shape[axis + 1:], inner.dtype))
    t._batch = (level, inner, axis)
    t.requires_grad = inner.requires_grad
    if high:
        t._tangents = {lv: wrap(tan, level, axis) for lv, tan in high.items()}
    return t


def _higher_tangents(x: Tensor, level: int) -> dict:
    return {lv: tan for lv, tan in x._tangents.items() if lv > level} if x._tangents else {}


def _without_tangents(x: Tensor, levels) -> Tensor:
    """A new object for ``x`` (same data, graph position, batching) without the tangents
    at ``levels``."""
    y = from_array(x.data)
    y._batch, y._vc = x._batch, x._vc
    y.requires_grad, y._node, y._index = x.requires_grad, x._node, x._index
    rest = {lv: tan for lv, tan in x._tangents.items() if lv not in levels}
    y._tangents = rest or None
    return y


def _wrap_inside(x: Tensor, level: int, axis: int) -> Tensor:
    """Wrap at ``level`` a tensor batched at a higher level: the new (lower) level goes
    inside, so that outer wrappers always carry the higher levels."""
    outer, inner, a = x._batch           # x.logical = inner.logical without axis a
    inner_axis = axis if axis < a else axis + 1      # our axis, in inner's coordinates
    new_a = a if a < axis else a - 1                  # outer's axis once ours is gone
    out = wrap(wrap(inner, level, inner_axis), outer, new_a)
    if x._tangents:                                   # x's tangents sit above its level
        out._tangents = {lv: wrap(tan, level, axis) for lv, tan in x._tangents.items()}
    return out


def batch_size(args, axes) -> int:
    sizes = {a.shape[ax] for a, ax in zip(args, axes) if ax is not None}
    if len(sizes) != 1:
        raise ValueError(f"vmap: batched inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def broadcast_batch(x: Tensor, axis, size: int) -> Tensor:
    """``x`` with its batch axis first, materialising one for an unbatched ``x``."""
    if axis is not None:
        return moveaxis(x, axis, 0)
    x = apply(RESHAPE, (x,), {"shape": (1,) + tuple(x.shape)})
    return apply(BROADCAST_TO, (x,), {"shape": (size,) + tuple(x.shape[1:])})


# ----------------------------------------------------------------------------- apply
def apply_batched(prim: Primitive, inputs, params, level: int):
    args, axes = [], []
    for x in inputs:
        b = x._batch
        if b is not None and b[0] == level:
            args.append(b[1])
            axes.append(b[2])
        else:
            args.append(x)
            axes.append(None)
    rule = prim.batch or loop_rule(prim)
    out, out_axis = rule(args, axes, **params)
    if prim.multiple_results:
        return tuple(o if ax is None else wrap(o, level, ax) for o, ax in zip(out, out_axis))
    return out if out_axis is None else wrap(out, level, out_axis)


# ----------------------------------------------------------------------------- generic rules
def _batched_at_level(x: Tensor, level: int) -> bool:
    b = x._batch
    return b is not None and b[0] == level


register_interpreter(_batched_at_level, apply_batched)


def elementwise_rule(prim: Primitive):
    """Rule for a broadcasting elementwise primitive: batch axes first, per-example
    dimensions right-aligned (``(B, 1, ..., 1, *shape)``), output batched at 0."""
    def rule(args, bdims, **params):
        nd = max(a.ndim - (ax is not None) for a, ax in zip(args, bdims))
        fixed = []
        for a, ax in zip(args, bdims):
            if ax is None:
                fixed.append(a)
                continue
            a = moveaxis(a, ax, 0)
            pad = nd - (a.ndim - 1)
            if pad:
                a = apply(RESHAPE, (a,), {"shape": (a.shape[0],) + (1,) * pad + a.shape[1:]})
            fixed.append(a)
        return apply(prim, tuple(fixed), params), 0

    return rule


def unary_rule(prim: Primitive):
    """Rule for a primitive acting elementwise on one input (any params)."""
    def rule(args, bdims, **params):
        return apply(prim, tuple(args), params), bdims[0]

    return rule


def axis_rule(prim: Primitive, name: str = "axis"):
    """Rule for a one-input primitive with an axis parameter (an int or a tuple of
    non-negative ints): batch first, axes shifted by one."""
    def rule(args, bdims, **params):
        x = moveaxis(args[0], bdims[0], 0)
        ax = params[name]
        if ax is None:                          # every axis: flatten the example first
            rest = 1
            for n in x.shape[1:]:
                rest *= n
            x = apply(RESHAPE, (x,), {"shape": (x.shape[0], rest)})
            shifted = 1
        elif isinstance(ax, tuple):
            shifted = tuple(a + 1 for a in ax)
        else:
            shifted = ax + 1
        return apply(prim, (x,) + tuple(args[1:]), {**params, name: shifted}), 0

    return rule


def loop_rule(prim: Primitive):
    """The fallback: run the primitive once per example and stack the results."""
    def rule(args, bdims, **params):
        size = batch_size(args, bdims)
        results = []
        for i in range(size):
            sliced = tuple(a if ax is None else _index_axis(a, ax, i) for a, ax in zip(args, bdims))
            results.append(apply(prim, sliced, params))
        if prim.multiple_results:
            return tuple(_stack(list(r)) for r in zip(*results)), (0,) * len(results[0])
        return _stack(results), 0

    return rule


# Two small linear primitives for the fallback: take example i, and stack examples.
def _index_axis_forward(x, *, axis, i):
    return x[(slice(None),) * axis + (i,)]


def _embed_forward(g, *, axis, i, size):
    xp = B.ns(g)
    out = xp.zeros(g.shape[:axis] + (size,) + g.shape[axis:], dtype=g.dtype)
    out[(slice(None),) * axis + (i,)] = g
    return out


_INDEX_AXIS = Primitive(
    "index_axis", _index_axis_forward, save=(), linear=True, view=True,
    vjp=lambda g, out, x, *, axis, i: apply(_EMBED, (g,), {"axis": axis, "i": i,
                                                           "size": x.shape[axis]}))
_EMBED = Primitive(
    "embed", _embed_forward, save=(), linear=True,
    vjp=lambda g, out, x, *, axis, i, size: apply(_INDEX_AXIS, (g,), {"axis": axis, "i": i}))


def _stack_forward(*xs):
    return B.ns(xs[0]).stack(xs)


_STACK = Primitive(
    "stack_examples", _stack_forward, save=(), linear=True,
    vjp_all=lambda g, out, xs, needs: [apply(_INDEX_AXIS, (g,), {"axis": 0, "i": i})
                                       if need else None for i, need in enumerate(needs)])


def _index_axis(x, axis, i):
    return apply(_INDEX_AXIS, (x,), {"axis": axis, "i": i})


def _stack(items):
    return apply(_STACK, tuple(items))


_INDEX_AXIS.batch = lambda args, axes, *, axis, i: (
    apply(_INDEX_AXIS, (moveaxis(args[0], axes[0], 0),), {"axis": axis + 1, "i": i}), 0)
_EMBED.batch = lambda args, axes, *, axis, i, size: (
    apply(_EMBED, (moveaxis(args[0], axes[0], 0),), {"axis": axis + 1, "i": i, "size": size}), 0)


def _stack_batch(args, axes):
    size = batch_size(args, axes)
    fixed = tuple(broadcast_batch(a, ax, size) for a, ax in zip(args, axes))
    return apply(_STACK, fixed), 1


_STACK.batch = _stack_batch


# ----------------------------------------------------------------------------- vmap
def _axes_tree(in_axes, args):
    """``in_axes`` expanded to one entry per leaf of ``args``."""
    if isinstance(in_axes, (int, type(None))):
        leaves, _ = flatten(args)
        return [in_axes] * len(leaves)
    if not isinstance(in_axes, (tuple, list)) or len(in_axes) != len(args):
        raise ValueError(f"vmap: in_axes must be an int, None, or a tuple with one entry per "
                         f"positional argument ({len(args)}), got {in_axes!r}")
    out = []
    for ax, a in zip(in_axes, args):
        leaves, _ = flatten(a)
        if isinstance(ax, (int, type(None))):
            out += [ax] * len(leaves)
        else:
            ax_leaves, ax_tree = flatten(ax)
            _, a_tree = flatten(a)
            if ax_tree != a_tree:
                raise ValueError(f"vmap: in_axes entry {ax!r} does not match the structure "
                                 f"of its argument")
            out += ax_leaves
    return out


def vmap(fun, in_axes=0, out_axes=0):
    """Vectorise ``fun`` over an axis of its arguments, as JAX's ``vmap``.

    ``in_axes`` is an int (every argument batched along that axis), ``None`` (not
    batched), or a tuple with one entry per positional argument (each an int, ``None`` or
    a pytree of them matching the argument). ``out_axes`` says where the batch axis goes
    in each output (an int, or a pytree matching the outputs). Composes with ``grad``,
    ``jvp`` and itself::

        per_example = wl.vmap(wl.grad(loss), in_axes=(None, 0, 0))(params, xs, ys)
    """

    @functools.wraps(fun)
    def batched(*args):
        flat, tree = flatten(tuple(args))
        axes = _axes_tree(in_axes, args)
        tensors, sizes = [], set()
        for x, ax in zip(flat, axes):
            if ax is None:
                tensors.append(x)
                continue
            x = to_tensor(x, "vmap")
            if x.ndim == 0:
                raise ValueError("vmap: cannot map over axis of a 0-d tensor")
            if not -x.ndim <= ax < x.ndim:
                raise ValueError(f"vmap: in_axes {ax} is out of range for a tensor of "
                                 f"shape {x.shape}")
            sizes.add(x.shape[ax % x.ndim])
            tensors.append((x, ax % x.ndim))
        if not sizes:
            raise ValueError("vmap: no argument is batched (every in_axes is None)")
        if len(sizes) > 1:
            raise ValueError(f"vmap: batched arguments have different sizes along their "
                             f"mapped axes: {sorted(sizes)}")
        size = sizes.pop()
        with new_level() as level:
            ACTIVE_SIZES[level] = size
            wrapped = [wrap(t[0], level, t[1]) if isinstance(t, tuple) else t for t in tensors]
            out = fun(*unflatten(tree, wrapped))
            out_flat, out_tree = flatten(out)
            oaxes = [out_axes] * len(out_flat) if isinstance(out_axes, int) \
                else flatten(out_axes)[0]
            if len(oaxes) != len(out_flat):
                raise ValueError("vmap: out_axes does not match the outputs' structure")
            results = [_unbatch(o, level, ax, size) for o, ax in zip(out_flat, oaxes)]
            ACTIVE_SIZES.pop(level, None)
        return unflatten(out_tree, results)

    return batched


def _unbatch(o, level, axis, size):
    if not isinstance(o, Tensor):
        raise TypeError(f"vmap: the function must return tensors, got {type(o).__name__}")
    b = o._batch
    if b is not None and b[0] == level:
        inner = b[1]
        return moveaxis(inner, b[2], axis % inner.ndim)
    # not batched: every example gave the same value
    x = apply(RESHAPE, (o,), {"shape": (1,) + tuple(o.shape)})
    x = apply(BROADCAST_TO, (x,), {"shape": (size,) + tuple(o.shape)})
    return moveaxis(x, 0, axis % x.ndim)


# ----------------------------------------------------------------------------- reverse mode
def physical(t: Tensor) -> Tensor:
    while t._batch is not None:
        t = t._batch[1]
    return t


def physical_tensors(tensors):
    return [physical(t) for t in tensors]


def batched_everywhere(x: Tensor, levels) -> Tensor:
    """``x`` batched at every active vmap level among ``levels`` (copies where it is not),
    so that a gradient with respect to it is per example."""
    for level in sorted(lv for lv in levels if lv in ACTIVE_SIZES):
        x = _batch_at(x, level, ACTIVE_SIZES[level])
    return x


def batch_levels(x: Tensor) -> set:
    """The vmap levels ``x`` is batched at."""
    found = set()
    while x._batch is not None:
        found.add(x._batch[0])
        x = x._batch[1]
    return found


def check_reverse_under_vmap(x: Tensor, what: str) -> None:
    """Refuse forward-over-reverse on values batched below the forward level.

    The reverse graph is recorded on the inner tensors, and a tangent of a higher
    ``jvp`` level lives on the batched wrapper, out of the inner graph's reach: the
    result would silently lose that derivative. (With the primal not batched, as in
    ``jacfwd(grad(f))``, everything works.)"""
    t = x
    while t._batch is not None:
        level = t._batch[0]
        if t._tangents and any(lv > level for lv in t._tangents):
            raise NotImplementedError(
                f"{what}: differentiating in reverse mode inside jvp inside vmap, with the "
                f"primal batched, is not supported (the forward derivative would be lost); "
                f"take the jvp of the vmapped function instead (jvp outside vmap), or use "
                f"reverse over reverse (grad of grad)")
        t = t._batch[1]


def _batched_at(x: Tensor, level: int) -> bool:
    t = x
    while t._batch is not None:
        if t._batch[0] == level:
            return True
        t = t._batch[1]
    return False


def _batch_at(x: Tensor, level: int, size: int) -> Tensor:
    """``x`` made batched at ``level`` by copying it along a new batch axis. Tangents at
    higher levels are batched the same way (or kept, when they already are: a tangent
    that differs per example is already its own batched value)."""
    if _batched_at(x, level):
        return x
    high = _higher_tangents(x, level)
    base = _without_tangents(x, high) if high else x
    inner = apply(RESHAPE, (base,), {"shape": (1,) + tuple(base.shape)})
    inner = apply(BROADCAST_TO, (inner,), {"shape": (size,) + tuple(base.shape)})
    out = wrap(inner, level, 0)
    if high:
        out._tangents = {lv: _batch_at(t, level, size) for lv, t in high.items()}
    return out


def batched_variable(x: Tensor, make):
    """A variable for a batched ``x``: ``make`` builds it from the innermost tensor and
    it is wrapped again in ``x``'s batch levels."""
    levels = []
    t = x
    while t._batch is not None:
        levels.append((t._batch[0], t._batch[2]))
        t = t._batch[1]
    v = make(t)
    for level, axis in reversed(levels):
        v = wrap(v, level, axis)
    return v


def _lift(c: Tensor, level: int, size: int, axis: int) -> Tensor:
    """Insert ``level``'s batch axis (of ``size``) into cotangent ``c`` at ``axis``: ``c``'s
    own examples at that level when it is batched there, copies otherwise."""
    b = c._batch
    if b is None or b[0] < level:                  # not batched at this level
        x = apply(RESHAPE, (c,), {"shape": c.shape[:axis] + (1,) + c.shape[axis:]})
        return apply(BROADCAST_TO, (x,), {"shape": c.shape[:axis] + (size,) + c.shape[axis:]})
    if b[0] == level:
        return moveaxis(b[1], b[2], axis)
    outer, inner, a = b                            # batched at a higher level: go inside
    inner = moveaxis(inner, a, 0)
    return wrap(_lift(inner, level, size, axis + 1), outer, 0)


def batched_backward(roots, cts, targets, create, retain):
    """``run_backward`` for batched roots and targets: sweep the inner graph with the
    cotangents laid out like the inner roots, and wrap the results like the targets."""
    phys_roots, phys_cts = [], []
    for r, c in zip(roots, cts):
        t = r
        while t._batch is not None:
            level, inner, axis = t._batch
            c = _lift(c, level, inner.shape[axis], axis)
            t = inner
        phys_roots.append(t)
        phys_cts.append(c)
    res = run_backward(phys_roots, phys_cts, physical_tensors(targets), create_graph=create,
                       retain_graph=retain)
    out = []
    for r, t in zip(res, targets):
        if r is None:
            out.append(None)
            continue
        levels = []
        while t._batch is not None:
            levels.append((t._batch[0], t._batch[2]))
            t = t._batch[1]
        for level, axis in reversed(levels):
            r = wrap(r, level, axis)
        out.append(r)
    return out


__all__ = ["vmap", "wrap", "apply_batched", "elementwise_rule", "unary_rule", "axis_rule",
           "loop_rule", "moved_to_front", "moveaxis", "broadcast_batch", "batch_size",
           "TRANSPOSE"]
