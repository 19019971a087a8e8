"""PyTorch-style access to the reverse-mode engine, and graph inspection.

``grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False)``
returns d(outputs)/d(inputs) for tensors already computed (PyTorch's
``torch.autograd.grad``); ``saved_bytes(t)`` reports how much activation memory the
graph behind ``t`` keeps alive (the values its nodes saved for the backward pass).
"""

from __future__ import annotations

from .core.engine import FREED_MESSAGE, run_backward, toposort, walk
from .core.structural import ones_like, zeros_like
from .core.tensor import Tensor


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs`` (tensors in the graph)."""
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    for t in outs + ins:
        if not isinstance(t, Tensor):
            raise TypeError(f"autograd.grad: expected tensors, got {type(t).__name__}")
    for i, t in enumerate(ins):
        if not t.requires_grad:
            raise RuntimeError(f"autograd.grad: input {i} (shape {t.shape}) does not "
                               f"require grad")
    if grad_outputs is None:
        cts = []
        for o in outs:
            if o.size != 1:
                raise RuntimeError(f"autograd.grad: grad_outputs is needed for an output of "
                                   f"shape {o.shape}")
            cts.append(ones_like(o))
    else:
        cts = [c if isinstance(c, Tensor) else Tensor(c, dtype=o.dtype)
               for c, o in zip(_as_list(grad_outputs), outs)]
    for o in outs:
        if o._node is not None and o._node.freed:
            raise RuntimeError("autograd.grad: the graph of an output was already freed by "
                               "a backward pass; use retain_graph=True there")
    order, leaves, outputs_ = walk(outs, ins)
    reached = _reached(outs, order, ins)
    if not allow_unused:
        for i, t in enumerate(ins):
            if not reached[i]:
                raise RuntimeError(f"autograd.grad: input {i} was not used to compute the "
                                   f"outputs (pass allow_unused=True to get None for it)")
    retain = create_graph if retain_graph is None else retain_graph
    res = run_backward(outs, cts, ins, create_graph=create_graph, retain_graph=retain)
    return tuple((r if r is not None else zeros_like(t)) if reached[i] else None
                 for i, (r, t) in enumerate(zip(res, ins)))


def _reached(outs, order, ins):
    """For each input, whether the outputs depend on it."""
    out_ids = {id(o) for o in outs}
    edges = set()
    for node in order:
        for e in node.edges:
            if e is None:
                continue
            edges.add(id(e) if type(e) is not tuple else (id(e[0]), e[1]))
    res = []
    for t in ins:
        key = id(t) if t._node is None else (id(t._node), t._index)
        res.append(key in edges or id(t) in out_ids
                   or any(o._node is not None and o._node is t._node and o._index == t._index
                          for o in outs))
    return res


def saved_bytes(t: Tensor, include_leaves: bool = False) -> int:
    """Bytes of activation memory the recorded graph behind ``t`` holds for the backward
    pass: the values its nodes saved, each array (or the memory it views) once. Leaf
    tensors a node saved (inputs, parameters) are not counted unless ``include_leaves``:
    the caller holds them anyway."""
    seen, total = set(), 0
    for node in toposort([t]):
        for a in node.saved_arrays(leaves=include_leaves):
            base = a
            while getattr(base, "base", None) is not None:
                base = base.base
            if id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes
    return total


__all__ = ["grad", "saved_bytes", "FREED_MESSAGE"]
