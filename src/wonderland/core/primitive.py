"""Primitives and ``apply``: the single place where every operation is evaluated.

A :class:`Primitive` is the unit of differentiation: a ``forward`` function on backend
arrays, and rules written with Tensor operations (so the rules differentiate again):

* ``vjp``: one rule per input, ``rule(g, out, *inputs, **params) -> cotangent``; or
  ``vjp_all(g, out, inputs, needs, **params) -> [cotangent or None, ...]`` when the
  inputs' cotangents share work. Rules may return a cotangent of the broadcast shape;
  the engine sums it back to the input's shape.
* ``jvp``: one contribution per input, ``rule(t, out, *inputs, **params)``, summed;
  or ``jvp_all(tangents, out, inputs, **params)`` with ``None`` for zero tangents; or
  ``linear=True``, in which case the tangent is the primitive applied to the tangents.

``apply(prim, inputs, params)`` runs the forward, records the application for reverse
mode when an input requires grad, and, when forward-mode tangents are present, peels
off the innermost level, recurses on the primal, and pushes that level's tangent
through the JVP rule. Because levels are processed innermost first and stripped from
the primal before recursing, nested ``jvp``/``grad`` never confuse perturbations.
"""

from __future__ import annotations

import traceback

from .. import backend as B
from .modes import state
from .tensor import Tensor, _wrap

NO_PARAMS: dict = {}  # shared empty parameter dict; never mutated


class Primitive:
    """A differentiable operation: forward on arrays, VJP and JVP rules on tensors."""

    __slots__ = ("name", "forward", "vjp", "vjp_all", "jvp", "jvp_all", "linear",
                 "differentiable", "multiple_results")

    def __init__(self, name, forward, *, vjp=None, vjp_all=None, jvp=None, jvp_all=None,
                 linear=False, differentiable=True, multiple_results=False):
        self.name = name
        self.forward = forward
        self.vjp = (vjp,) if callable(vjp) else vjp
        self.vjp_all = vjp_all
        self.jvp = (jvp,) if callable(jvp) else jvp
        self.jvp_all = jvp_all
        self.linear = linear
        self.differentiable = differentiable
        self.multiple_results = multiple_results
        if differentiable and vjp is None and vjp_all is None:
            raise ValueError(f"primitive {name}: a differentiable primitive needs a vjp rule")
        if differentiable and not (linear or jvp is not None or jvp_all is not None):
            raise ValueError(f"primitive {name}: a differentiable primitive needs a jvp rule")

    def __call__(self, *inputs, **params):
        return apply(self, inputs, params)

    def __repr__(self):
        return f"<primitive {self.name}>"


def describe(tensors) -> str:
    """``float32[3, 4], int64[5]``: how error messages show a list of inputs."""
    return ", ".join(f"{t.data.dtype}[{', '.join(map(str, t.data.shape))}]" for t in tensors)


_PLAIN_ERRORS = (ValueError, TypeError, IndexError)


def apply(prim: Primitive, inputs: tuple, params: dict = NO_PARAMS):
    """Evaluate ``prim`` on ``inputs`` (a tuple of Tensors) under the active transforms."""
    if state.fwd_levels:
        level = _top_level(inputs)
        if level:
            return _apply_with_tangents(prim, inputs, params, level)
    try:
        n = len(inputs)
        if n == 2:
            data = prim.forward(inputs[0].data, inputs[1].data, **params)
        elif n == 1:
            data = prim.forward(inputs[0].data, **params)
        else:
            data = prim.forward(*[x.data for x in inputs], **params)
    except _PLAIN_ERRORS as exc:
        if type(exc) not in _PLAIN_ERRORS or str(exc).startswith(prim.name + ":"):
            raise
        raise type(exc)(f"{prim.name}: {exc} (inputs: {describe(inputs)})") from exc
    if prim.multiple_results:
        return _record_many(prim, inputs, params, data)
    out = _wrap(data)
    if state.grad_enabled and prim.differentiable:
        for x in inputs:
            if x.requires_grad:
                if out.data.dtype.kind == "f":
                    out.requires_grad = True
                    out._prim = prim
                    out._inputs = inputs
                    out._params = params
                break
    if state.anomaly:
        _check_forward(prim, inputs, out)
    return out


def _record_many(prim, inputs, params, datas):
    outs = tuple(_wrap(d) for d in datas)
    record = state.grad_enabled and prim.differentiable and any(x.requires_grad for x in inputs)
    for i, out in enumerate(outs):
        if record and out.data.dtype.kind == "f":
            out.requires_grad = True
            out._prim = prim
            out._inputs = inputs
            out._params = {**params, "index": i}
        if state.anomaly:
            _check_forward(prim, inputs, out)
    return outs


def _top_level(inputs) -> int:
    """The innermost active forward level carried by any input (0 when none)."""
    active = state.fwd_levels
    top = 0
    for x in inputs:
        tangents = x._tangents
        if tangents:
            for level in tangents:
                if level > top and level in active:
                    top = level
    return top


def strip(x: Tensor, level: int) -> Tensor:
    """``x`` without its tangent at ``level``: same value, same graph, lower levels kept."""
    y = _wrap(x.data)
    active = state.fwd_levels
    rest = {k: v for k, v in x._tangents.items() if k != level and k in active}
    y._tangents = rest or None
    if x.requires_grad and state.grad_enabled:
        y.requires_grad = True
        y._prim = identity
        y._inputs = (x,)
        y._params = NO_PARAMS
    return y


def attach_tangent(x: Tensor, level: int, tangent: Tensor | None) -> None:
    """Set ``x``'s tangent at ``level`` (``None`` means zero and is not stored)."""
    if tangent is None:
        return
    if tangent.data.shape != x.data.shape:
        tangent = tangent.broadcast_to(x.data.shape) if tangent.data.ndim <= x.data.ndim \
            else _shape_mismatch(tangent, x)
    if tangent.data.dtype != x.data.dtype:
        tangent = tangent.astype(x.data.dtype)
    if x._tangents is None:
        x._tangents = {level: tangent}
    else:
        x._tangents[level] = tangent


def _shape_mismatch(tangent, x):
    raise ValueError(f"jvp: tangent of shape {tangent.shape} does not fit primal of "
                     f"shape {x.shape}")


def _apply_with_tangents(prim, inputs, params, level):
    primals = tuple(strip(x, level) if x._tangents and level in x._tangents else x
                    for x in inputs)
    tangents = [x._tangents.get(level) if x._tangents else None for x in inputs]
    out = apply(prim, primals, params)
    # The recorded node keeps the original inputs, tangents included: a reverse sweep
    # run while this level is still active (grad inside jvp, i.e. forward-over-reverse)
    # then carries the tangents through the VJP rules. The stripped copies are only
    # used by the JVP rule below, connected to the originals by identity nodes.
    for o in (out if prim.multiple_results else (out,)):
        if o._inputs is primals:
            o._inputs = inputs
    if not prim.differentiable:
        return out
    if prim.multiple_results:
        touts = prim.jvp_all(tangents, out, primals, **params)
        for o, t in zip(out, touts):
            if o.data.dtype.kind == "f":
                attach_tangent(o, level, t)
        return out
    if out.data.dtype.kind != "f":
        return out
    attach_tangent(out, level, jvp_rule(prim, tangents, out, primals, params))
    return out


def jvp_rule(prim, tangents, out, inputs, params):
    """The output tangent of one application, or ``None`` if it is zero."""
    if prim.linear:
        if all(t is None for t in tangents):
            return None
        full = tuple(t if t is not None else _wrap(B.xp.zeros_like(x.data))
                     for t, x in zip(tangents, inputs))
        return apply(prim, full, params)
    if prim.jvp_all is not None:
        return prim.jvp_all(tangents, out, inputs, **params)
    total = None
    for rule, t in zip(prim.jvp, tangents):
        if t is None or rule is None:
            continue
        contribution = rule(t, out, *inputs, **params)
        total = contribution if total is None else total + contribution
    return total


def vjp_rule(prim, g, out, inputs, params, needs):
    """Cotangents of the inputs of one application (``None`` where not needed)."""
    if prim.vjp_all is not None:
        return prim.vjp_all(g, out, inputs, needs, **params)
    return [rule(g, out, *inputs, **params) if need and rule is not None else None
            for rule, need in zip(prim.vjp, needs)]


def _check_forward(prim, inputs, out):
    data = out.data
    if data.dtype.kind == "f" and not B.xp.isfinite(data).all():
        bad = "nan" if B.xp.isnan(data).any() else "inf"
        inputs_finite = all(x.data.dtype.kind != "f" or B.xp.isfinite(x.data).all()
                            for x in inputs)
        source = "from finite inputs" if inputs_finite else "(its inputs already held nan/inf)"
        raise FloatingPointError(
            f"detect_anomaly: the forward of '{prim.name}' produced {bad} {source}; "
            f"inputs: {describe(inputs)}\n{_where()}")
    if out.requires_grad:
        out._origin = traceback.extract_stack(limit=12)[:-3]


def _where() -> str:
    frames = traceback.extract_stack(limit=14)[:-4]
    return "created at:\n" + "".join(traceback.format_list(frames[-6:]))


# The identity is part of the core: transforms use it to make fresh variables that stay
# connected to the tensors they were made from.
identity = Primitive("identity", lambda x: x, vjp=lambda g, out, x: g, linear=True)
