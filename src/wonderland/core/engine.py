"""The reverse-mode engine: one topological sort and one loop.

``run_backward`` sweeps the recorded graph once, from the roots towards the leaves, in
reverse topological order. Each node's VJP rule turns the node's cotangent into
cotangents of its inputs; cotangents of tensors used several times are summed. With
``create_graph`` the rules run with recording on, so the gradients are themselves
differentiable; otherwise they run under ``no_grad`` and each node's saved inputs are
released as soon as it has been processed (unless ``retain_graph``).

Two callers:

* ``Tensor.backward`` (``targets=None``): every leaf requiring grad accumulates its
  gradient into ``.grad``.
* the transforms (``grad``, ``vjp``, ...) and ``autograd.grad``: the sweep stops at the
  given target tensors and returns their cotangents; ``.grad`` is not touched.
"""

from __future__ import annotations

from .. import backend as B
from .modes import state
from .primitive import NO_PARAMS, Primitive, describe, vjp_rule
from .tensor import Tensor, _wrap


def _freed_forward(*_args, **_kwargs):  # pragma: no cover - never evaluated
    raise RuntimeError("a freed graph node cannot be evaluated")


# Nodes whose saved tensors were released point to this primitive.
FREED = Primitive("freed", _freed_forward, differentiable=False)

_FREED_MESSAGE = (
    "backward: trying to backward through the graph a second time (or through tensors "
    "whose saved values were already released); pass retain_graph=True to the first "
    "backward() if you need to backward twice")


def toposort(roots, target_ids=None):
    """Tensors reachable from ``roots`` through tensors requiring grad, inputs first.

    The walk does not go past a tensor whose id is in ``target_ids``.
    """
    order = []
    seen = set()
    for root in roots:
        if not root.requires_grad or id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            nid = id(node)
            if nid in seen:
                continue
            seen.add(nid)
            stack.append((node, True))
            inputs = node._inputs
            if inputs and (target_ids is None or nid not in target_ids):
                for parent in inputs:
                    if parent.requires_grad and id(parent) not in seen:
                        stack.append((parent, False))
    return order


def dependents(order, target_ids):
    """Ids of the tensors in ``order`` that depend on a target."""
    dep = set()
    for node in order:
        nid = id(node)
        if nid in target_ids:
            dep.add(nid)
        elif node._inputs and any(id(p) in dep for p in node._inputs):
            dep.add(nid)
    return dep


def reaches_outside(order, target_ids) -> bool:
    """Whether the graph depends on variables other than the targets.

    True when it holds a leaf requiring grad that is not a target, or a target that is
    itself computed from another tensor: then the cotangents depend on tensors that an
    enclosing differentiation may want to follow, and must be recorded.
    """
    for node in order:
        is_target = id(node) in target_ids
        if (node._prim is None) != is_target:
            return True
    return False


def unbroadcast(c: Tensor, shape: tuple) -> Tensor:
    """Sum a cotangent of a broadcast shape back to ``shape``."""
    lead = c.ndim - len(shape)
    if lead < 0:
        return c.broadcast_to(shape)
    if lead and c.shape[lead:] == shape:                 # only leading axes were added
        return c.sum(axis=tuple(range(lead)))
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and c.shape[lead + i] != 1)
    if axes:
        c = c.sum(axis=axes, keepdims=True)
    if c.shape != shape:
        if c.size != _prod(shape):
            raise RuntimeError(f"backward: cannot reduce a cotangent of shape {c.shape} "
                               f"to an input of shape {shape}")
        c = c.reshape(shape)
    return c


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _without_graph(c: Tensor) -> Tensor:
    out = _wrap(c.data)
    out._tangents = c._tangents
    return out


def run_backward(roots, cotangents, targets=None, create_graph=False, retain_graph=False):
    """Propagate ``cotangents`` of ``roots`` back through the recorded graph.

    Returns the cotangents of ``targets`` (zeros where a target was not reached) or,
    with ``targets=None``, accumulates into ``.grad`` of every leaf requiring grad.
    """
    target_ids = None if targets is None else {id(t) for t in targets}
    order = toposort(roots, target_ids)
    dep = None if target_ids is None else dependents(order, target_ids)
    grads = {}
    for root, ct in zip(roots, cotangents):
        if root.requires_grad and ct is not None:
            rid = id(root)
            grads[rid] = ct if rid not in grads else grads[rid] + ct
    results = {}
    anomaly = state.anomaly
    saved_mode = state.grad_enabled
    state.grad_enabled = create_graph
    try:
        for node in reversed(order):
            nid = id(node)
            g = grads.pop(nid, None)
            if target_ids is not None and nid in target_ids:
                if g is not None:
                    results[nid] = g
                continue
            prim = node._prim
            if prim is None:                                   # a leaf
                if g is not None and target_ids is None:
                    node.grad = g if node.grad is None else node.grad + g
                continue
            if prim is FREED:
                if g is not None:
                    raise RuntimeError(_FREED_MESSAGE)
                continue
            if dep is not None and nid not in dep:
                continue
            if g is not None:
                inputs = node._inputs
                if dep is None:
                    needs = [p.requires_grad for p in inputs]
                else:
                    needs = [p.requires_grad and id(p) in dep for p in inputs]
                try:
                    cts = vjp_rule(prim, g, node, inputs, node._params, needs)
                except FloatingPointError as exc:
                    # a step inside this rule produced nan/inf: report the rule's owner
                    if anomaly and "the backward of" not in str(exc):
                        bad = "nan" if "produced nan" in str(exc) else "inf"
                        raise FloatingPointError(_backward_message(node, bad, None)) from exc
                    raise
                for i, p in enumerate(inputs):
                    c = cts[i]
                    if c is None or not needs[i]:
                        continue
                    pdata = p.data
                    if c.data.shape != pdata.shape:
                        c = unbroadcast(c, pdata.shape)
                    if c.data.dtype != pdata.dtype:
                        c = c.astype(pdata.dtype)
                    if not create_graph and c.requires_grad:
                        c = _without_graph(c)
                    if anomaly:
                        _check_backward(node, i, c)
                    pid = id(p)
                    prev = grads.get(pid)
                    grads[pid] = c if prev is None else prev + c
            if not retain_graph:
                node._prim = FREED
                node._inputs = None
                node._params = NO_PARAMS
    finally:
        state.grad_enabled = saved_mode
    if targets is None:
        return None
    return [results[id(t)] if id(t) in results else _wrap(B.xp.zeros_like(t.data))
            for t in targets]


def _check_backward(node, index, c):
    data = c.data
    if data.dtype.kind == "f" and not B.xp.isfinite(data).all():
        bad = "nan" if B.xp.isnan(data).any() else "inf"
        raise FloatingPointError(_backward_message(node, bad, index))


def _backward_message(node, bad, index):
    import traceback

    where = ""
    if node._origin:
        where = "\nthe failing operation was created at:\n" + "".join(
            traceback.format_list(node._origin[-6:]))
    which = "its gradient" if index is None else f"the gradient of its input {index}"
    return (f"detect_anomaly: the backward of '{node._prim.name}' produced {bad} in "
            f"{which} (inputs: {describe(node._inputs)}){where}")


def backward(root: Tensor, grad=None, retain_graph=None, create_graph=False) -> None:
    """``Tensor.backward``: accumulate gradients of ``root`` into the leaves' ``.grad``."""
    if not root.requires_grad:
        raise RuntimeError(
            f"backward: the tensor (shape {root.shape}) does not require grad: no leaf "
            f"it was computed from has requires_grad=True (or it was computed under no_grad)")
    if root._prim is FREED:
        raise RuntimeError(_FREED_MESSAGE)
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be created implicitly only for a one-element output; "
                f"got shape {root.shape}; pass grad= with the cotangent of that shape")
        grad = _wrap(B.xp.ones_like(root.data))
    else:
        grad = grad if isinstance(grad, Tensor) else Tensor(grad, dtype=root.dtype)
        if grad.shape != root.shape:
            raise RuntimeError(f"backward: grad has shape {grad.shape} but the output has "
                               f"shape {root.shape}")
        if grad.dtype != root.dtype:
            grad = grad.astype(root.dtype)
    if retain_graph is None:
        retain_graph = create_graph
    run_backward([root], [grad], None, create_graph, retain_graph)
