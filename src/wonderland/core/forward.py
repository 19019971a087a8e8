"""Forward mode: a tangent travels beside each primal through every primitive's JVP rule.

Inside ``jvp`` a tensor carries its tangent at that transformation's level in
``_tangents`` (a dict level -> tangent). :func:`apply` hands an application with such an
input to :func:`apply_with_tangents`: strip the level's tangents, apply the primitive to
the primals (with the levels below still active), then push the tangents through the
primitive's JVP rule (``jvp`` per input, ``jvp_all``, or the primitive itself when it
is linear) and attach the result to the output.
"""

from __future__ import annotations

from .modes import get_state
from .primitive import alias, apply, register_interpreter
from .structural import zeros_like
from .tensor import Tensor


def strip(x: Tensor, level: int) -> Tensor:
    """``x`` without its tangent at ``level``: same value, same graph position, lower
    levels kept."""
    y = alias(x)
    active = get_state().levels
    rest = {k: v for k, v in x._tangents.items() if k != level and k in active}
    y._tangents = rest or None
    return y


def attach_tangent(x: Tensor, level: int, tangent: Tensor | None) -> None:
    """Set ``x``'s tangent at ``level`` (``None`` means zero and is not stored)."""
    if tangent is None:
        return
    if tangent.shape != x.shape:
        tangent = tangent.broadcast_to(x.shape) if tangent.ndim <= x.ndim \
            else _shape_mismatch(tangent, x)
    if tangent.dtype != x.dtype:
        tangent = tangent.astype(x.dtype)
    if x._tangents is None:
        x._tangents = {level: tangent}
    else:
        x._tangents[level] = tangent


def _shape_mismatch(tangent, x):
    raise ValueError(f"jvp: tangent of shape {tangent.shape} does not fit primal of "
                     f"shape {x.shape}")


def apply_with_tangents(prim, inputs, params, level):
    primals = tuple(strip(x, level) if x._tangents and level in x._tangents else x
                    for x in inputs)
    tangents = [x._tangents.get(level) if x._tangents else None for x in inputs]
    out = apply(prim, primals, params)
    outs = out if prim.multiple_results else (out,)
    node = outs[0]._node
    if node is not None and node.saved:
        # The node keeps the original inputs, tangents included: a backward pass run
        # while this level is active (grad inside jvp, i.e. forward-over-reverse) then
        # carries the tangents through the VJP rules.
        node.saved = tuple(
            (x, s[1], s[2]) if s is not None and s[0] is p and x is not p else s
            for s, x, p in zip(node.saved, inputs, primals))
    if not prim.differentiable:
        return out
    if prim.multiple_results:
        touts = prim.jvp_all(tangents, out, primals, **params)
        for o, t in zip(out, touts):
            if o.dtype.kind == "f":
                attach_tangent(o, level, t)
        return out
    if out.dtype.kind != "f":
        return out
    attach_tangent(out, level, jvp_rule(prim, tangents, out, primals, params))
    return out


def jvp_rule(prim, tangents, out, inputs, params):
    """The output tangent of one application, or ``None`` if it is zero."""
    if prim.linear:
        if all(t is None for t in tangents):
            return None
        full = tuple(t if t is not None else zeros_like(x) for t, x in zip(tangents, inputs))
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




def _has_tangent(x: Tensor, level: int) -> bool:
    return bool(x._tangents) and level in x._tangents


register_interpreter(_has_tangent, apply_with_tangents)

__all__ = ["strip", "attach_tangent", "apply_with_tangents", "jvp_rule"]
