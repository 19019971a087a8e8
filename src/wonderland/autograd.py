"""PyTorch-style access to the reverse-mode engine, and graph inspection.

``grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False)``
returns d(outputs)/d(inputs) for tensors already computed (PyTorch's
``torch.autograd.grad``); ``saved_bytes(t)`` reports how much array memory the graph
behind ``t`` keeps alive (used to see what ``checkpoint`` saves).
"""

from __future__ import annotations

from . import backend as B
from .core.engine import FREED, run_backward, toposort
from .core.tensor import Tensor, _wrap


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
            cts.append(_wrap(B.xp.ones_like(o.data)))
    else:
        cts = [c if isinstance(c, Tensor) else Tensor(c, dtype=o.dtype)
               for c, o in zip(_as_list(grad_outputs), outs)]
    for o in outs:
        if o._prim is FREED:
            raise RuntimeError("autograd.grad: the graph of an output was already freed by "
                               "a backward pass; use retain_graph=True there")
    order = toposort(outs, {id(t) for t in ins})
    reached = {id(n) for n in order}
    if not allow_unused:
        for i, t in enumerate(ins):
            if id(t) not in reached:
                raise RuntimeError(f"autograd.grad: input {i} was not used to compute the "
                                   f"outputs (pass allow_unused=True to get None for it)")
    retain = create_graph if retain_graph is None else retain_graph
    res = run_backward(outs, cts, ins, create_graph=create_graph, retain_graph=retain)
    res = [r if id(t) in reached else None for r, t in zip(res, ins)]
    return tuple(res)


def saved_bytes(t: Tensor) -> int:
    """Bytes of array memory held by the recorded graph behind ``t`` (each array once)."""
    seen, total = set(), 0
    for node in toposort([t]):
        for a in [node.data] + [p.data for p in (node._inputs or ())]:
            if id(a) not in seen:
                seen.add(id(a))
                total += a.nbytes
    return total
