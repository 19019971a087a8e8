"""The reverse-mode engine: one topological sort of the nodes and one loop.

``run_backward`` sweeps the recorded nodes once, from the roots towards the leaves, in
reverse topological order. Each node's VJP rule turns the cotangents of its outputs into
cotangents of its inputs, which are summed where a value is used several times. With
``create_graph`` the rules run with recording on, so the gradients are themselves
differentiable; otherwise they run under ``no_grad``, and each node's saved values are
dropped as soon as its rule has run (unless ``retain_graph``), so memory falls during
the sweep. A saved value whose version counter moved since the forward pass (it was
updated in place) is an error, never a silently wrong gradient.

Two callers:

* ``Tensor.backward`` (``targets=None``): every leaf requiring grad accumulates its
  gradient into ``.grad``;
* the transforms (``grad``, ``vjp``, ...) and ``autograd.grad``: the sweep stops at the
  given target tensors and returns their cotangents (``None`` where a target was not
  reached: a symbolic zero); ``.grad`` is not touched.
"""

from __future__ import annotations

from .. import backend as B
from .modes import get_state, reset, set_grad
from .primitive import _FREED, Meta, describe
from .structural import cast, ones_like, unbroadcast
from .tensor import Tensor, from_array

FREED_MESSAGE = (
    "backward: trying to backward through the graph a second time (or through tensors "
    "whose saved values were already released); pass retain_graph=True to the first "
    "backward() if you need to backward twice")


# ----------------------------------------------------------------------------- graph walks
def target_keys(targets):
    """Split target tensors into leaf ids and ``(node id, output index)`` keys."""
    leaves, outputs = set(), set()
    for t in targets:
        if t._node is None:
            leaves.add(id(t))
        else:
            outputs.add((id(t._node), t._index))
    return leaves, outputs


def toposort(roots, stop=None, within=None):
    """Nodes reachable from ``roots`` (tensors), inputs before the nodes using them.

    The walk does not go past a node whose id is in ``stop``, nor into a node whose id is
    not in ``within`` (when given).
    """
    order = []
    seen = set()
    for root in roots:
        node = root._node
        if node is None or not root.requires_grad or id(node) in seen:
            continue
        stack = [(node, False)]
        while stack:
            n, expanded = stack.pop()
            if expanded:
                order.append(n)
                continue
            nid = id(n)
            if nid in seen:
                continue
            seen.add(nid)
            stack.append((n, True))
            if stop is not None and nid in stop:
                continue
            for e in n.edges:
                if type(e) is tuple and id(e[0]) not in seen and (
                        within is None or id(e[0]) in within):
                    stack.append((e[0], False))
    return order


def walk(roots, targets):
    """``(order, leaf_keys, output_keys)`` for a sweep from ``roots`` to ``targets``; the
    walk stops at nodes whose every output is a target."""
    leaves, outputs = target_keys(targets)
    stop = None
    if outputs:
        counts = {}
        for nid, _ in outputs:
            counts[nid] = counts.get(nid, 0) + 1
        nodes = {id(t._node): t._node for t in targets if t._node is not None}
        stop = {nid for nid, k in counts.items() if nodes[nid].n_out <= k}
    return toposort(roots, stop), leaves, outputs


def dependents(order, leaves, outputs):
    """Ids of the nodes in ``order`` whose outputs depend on a target."""
    dep = set()
    for node in order:
        for e in node.edges:
            if e is None:
                continue
            if type(e) is tuple:
                if id(e[0]) in dep or (id(e[0]), e[1]) in outputs:
                    dep.add(id(node))
                    break
            elif id(e) in leaves:
                dep.add(id(node))
                break
    return dep


def reaches_outside(order, leaves, outputs, roots=()) -> bool:
    """Whether the graph depends on variables other than the targets: a leaf requiring
    grad that is not a target, or a target that is itself computed from other tensors
    (then the cotangents depend on tensors an enclosing differentiation may follow)."""
    if outputs:
        return True
    for root in roots:
        if root.requires_grad and root._node is None and id(root) not in leaves:
            return True
    for node in order:
        for e in node.edges:
            if e is not None and type(e) is not tuple and id(e) not in leaves:
                return True
    return False


# ----------------------------------------------------------------------------- the sweep
BACKWARD_DEPTH = [0]        # backward sweeps running now (the profiler tells phases apart)


def run_backward(roots, cotangents, targets=None, create_graph=False, retain_graph=False):
    """Propagate ``cotangents`` of ``roots`` back through the recorded graph.

    Returns the cotangents of ``targets`` (``None`` where a target was not reached) or,
    with ``targets=None``, accumulates into ``.grad`` of every leaf requiring grad.
    """
    if targets is None:
        trace = get_state().trace
        if trace is not None:
            trace.refuse_side_effect(".backward() (it fills .grad as a side effect; return the "
                                     "gradients of wl.grad or wl.value_and_grad instead)")
        order, leaves, outputs = toposort(roots), None, set()
        dep = None
    else:
        order, leaves, outputs = walk(roots, targets)
        dep = dependents(order, leaves, outputs)
    grads = {}              # id(node) -> cotangent, or a list of them for several outputs
    leaf_grads = {}         # id(leaf) -> [leaf, cotangent]
    results = {}            # target key -> cotangent
    for root, ct in zip(roots, cotangents):
        if ct is not None and root.requires_grad:
            _route(root._node, root._index, root, ct, grads, leaf_grads)
    anomaly = get_state().anomaly
    token = set_grad(create_graph)
    BACKWARD_DEPTH[0] += 1
    try:
        for node in reversed(order):
            gs = grads.pop(id(node), None)
            if gs is None:
                continue
            single = node.n_out == 0
            if outputs:
                gs = _take_targets(node, gs, single, outputs, results)
                if gs is None:
                    continue
            if dep is not None and id(node) not in dep:
                continue
            needs = _needs(node.edges, dep, leaves, outputs)
            cts = _run_rule(node, gs, single, needs, create_graph, anomaly)
            _send(node, cts, needs, grads, leaf_grads, create_graph, anomaly)
            if not retain_graph:
                node.release()
        if targets is None:
            for leaf, g in leaf_grads.values():
                leaf.grad = g if leaf.grad is None else leaf.grad + g
            return None
    finally:
        BACKWARD_DEPTH[0] -= 1
        if token is not None:
            reset(token)
    return [_result(t, leaf_grads, results) for t in targets]


def _needs(edges, dep, leaves, outputs):
    """Which inputs of a node need a cotangent: every input requiring grad, or with
    ``targets`` only those on a path to one."""
    if dep is None:
        return [e is not None for e in edges]
    return [e is not None and ((id(e[0]) in dep or (id(e[0]), e[1]) in outputs)
                               if type(e) is tuple else id(e) in leaves) for e in edges]


def _send(node, cts, needs, grads, leaf_grads, create_graph, anomaly):
    """Pass a node's input cotangents on to the nodes (or leaves) that produced them,
    summed back to each input's shape and cast to its dtype."""
    shapes, dtypes = node.shapes, node.dtypes
    for i, e in enumerate(node.edges):
        c = cts[i]
        if c is None or not needs[i]:
            continue
        data = c.data
        if data.shape != shapes[i]:
            c = unbroadcast(c, shapes[i])
        if data.dtype != dtypes[i]:
            c = cast(c, dtypes[i])
        if c.requires_grad and not create_graph:
            c = without_graph(c)
        if anomaly:
            _check_backward(node, i, c)
        if type(e) is tuple:
            p = e[0]
            if p.n_out == 0:
                pid = id(p)
                prev = grads.get(pid)
                grads[pid] = c if prev is None else prev + c
            else:
                _route(p, e[1], None, c, grads, leaf_grads)
        else:
            entry = leaf_grads.get(id(e))
            if entry is None:
                leaf_grads[id(e)] = [e, c]
            else:
                entry[1] = entry[1] + c


def _result(t, leaf_grads, results):
    """The cotangent that reached target ``t`` (``None`` if none did)."""
    if t._node is None:
        entry = leaf_grads.get(id(t))
        return entry[1] if entry is not None else None
    return results.get((id(t._node), t._index))


def _route(node, index, leaf, c, grads, leaf_grads):
    """Add cotangent ``c`` to output ``index`` of ``node`` (or to a leaf)."""
    if node is None:
        entry = leaf_grads.get(id(leaf))
        if entry is None:
            leaf_grads[id(leaf)] = [leaf, c]
        else:
            entry[1] = entry[1] + c
        return
    nid = id(node)
    if node.n_out == 0:                        # a single result
        prev = grads.get(nid)
        grads[nid] = c if prev is None else prev + c
        return
    gs = grads.get(nid)
    if gs is None:
        gs = grads[nid] = [None] * node.n_out
    gs[index] = c if gs[index] is None else gs[index] + c


def _take_targets(node, gs, single, outputs, results):
    """Move cotangents of target outputs to ``results``; ``None`` if nothing is left."""
    nid = id(node)
    if single:
        if (nid, 0) in outputs:
            results[(nid, 0)] = gs
            return None
        return gs
    left = False
    for i, g in enumerate(gs):
        if g is None:
            continue
        if (nid, i) in outputs:
            results[(nid, i)] = g
            gs[i] = None
        else:
            left = True
    return gs if left else None


def _run_rule(node, gs, single, needs, create_graph, anomaly):
    saved = node.saved
    if saved is _FREED:
        raise RuntimeError(FREED_MESSAGE)
    prim = node.prim
    inputs = _unpack_inputs(node)
    params = node.params
    if node.res is not None:
        params = {**params, "res": tuple(from_array(r) for r in node.res)}
    kernel = prim.vjp_kernel
    if kernel is not None and (create_graph or get_state().levels):
        kernel = None                 # higher orders: the composite rules, which differentiate
    try:
        if single:
            out = _unpack_out(node, node.out, 0, gs, create_graph)
            if kernel is not None:
                cts = kernel(gs, out, inputs, needs, **params)
                if cts is not NotImplemented:
                    return cts
            if prim.vjp_all is not None:
                return prim.vjp_all(gs, out, inputs, needs, **params)
            return [rule(gs, out, *inputs, **params) if need and rule is not None else None
                    for rule, need in zip(prim.vjp, needs)]
        outs = tuple(_unpack_out(node, node.out[i] if node.out is not None else None, i,
                                 gs[i], create_graph) for i in range(node.n_out))
        if kernel is not None:
            cts = kernel(gs, outs, inputs, needs, **params)
            if cts is not NotImplemented:
                return cts
        return prim.vjp_all(gs, outs, inputs, needs, **params)
    except FloatingPointError as exc:
        # a step inside this rule produced nan/inf: report the rule's owner
        if anomaly and "the backward of" not in str(exc):
            bad = "nan" if "produced nan" in str(exc) else "inf"
            raise FloatingPointError(_backward_message(node, bad, None)) from exc
        raise


def _unpack_inputs(node):
    """The saved inputs (checked against their version counters), and :class:`Meta`
    stand-ins for the inputs that were not saved."""
    saved = node.saved
    inputs = []
    for i, shape in enumerate(node.shapes):
        s = saved[i] if saved is not None else None
        if s is None:
            inputs.append(Meta(shape, node.dtypes[i], node.prim.name, i))
            continue
        t, array, version = s
        vc = t._vc
        if t.data is not array or (vc[0] if vc is not None else 0) != version:
            _modified(node, i, t, array, version)
        inputs.append(t)
    return inputs


def _modified(node, i, t, array, version):
    now = t._vc[0] if t._vc is not None else 0
    raise RuntimeError(
        f"backward: input {i} of '{node.prim.name}' ({describe([t])}) was modified in place "
        f"after the forward pass (version {now}, saved at version {version}"
        f"{'; its array was replaced' if t.data is not array else ''}): the gradient "
        f"would use the new values. Run the forward again after the update (or update "
        f"after the backward pass)")


def _unpack_out(node, saved, index, g, create_graph):
    if saved is None:
        like = g if g is not None else None
        return Meta(like.shape if like is not None else None,
                    like.dtype if like is not None else None, node.prim.name)
    if isinstance(saved, Tensor):
        return saved
    out = from_array(saved)
    if create_graph:                         # connect it, so higher orders see through it
        out.requires_grad = True
        out._node = node
        out._index = index
    return out


def without_graph(t: Tensor) -> Tensor:
    """``t``'s values (and tangents, and batching) cut off from the reverse graph."""
    if not t.requires_grad:
        return t
    out = from_array(t.data)
    out._tangents = t._tangents
    out._vc = t._vc
    if t._batch is not None:
        level, inner, axis = t._batch
        out._batch = (level, without_graph(inner), axis)
    return out


def _check_backward(node, index, c):
    data = c.data
    if c._batch is not None or data.dtype.kind != "f":
        return
    xp = B.ns(data)
    if not xp.isfinite(data).all():
        bad = "nan" if xp.isnan(data).any() else "inf"
        raise FloatingPointError(_backward_message(node, bad, index))


def _backward_message(node, bad, index):
    import traceback

    where = ""
    if node.origin:
        where = "\nthe failing operation was created at:\n" + "".join(
            traceback.format_list(node.origin[-6:]))
    which = "its gradient" if index is None else f"the gradient of its input {index}"
    inputs = ", ".join(f"{d}[{', '.join(map(str, s))}]" for s, d in zip(node.shapes, node.dtypes))
    return (f"detect_anomaly: the backward of '{node.prim.name}' produced {bad} in "
            f"{which} (inputs: {inputs}){where}")


# ----------------------------------------------------------------------------- Tensor.backward
def backward(root: Tensor, grad=None, retain_graph=None, create_graph=False) -> None:
    """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf requiring grad.

    ``grad`` is the cotangent of ``self`` (required unless ``self`` has one element).
    The graph's saved values are released during the sweep unless ``retain_graph``
    (default: ``create_graph``). With ``create_graph=True`` the gradients are
    themselves recorded, so they can be differentiated again.
    """
    if root._batch is not None:
        raise RuntimeError("backward: .backward() is not supported on a batched tensor "
                           "inside vmap; use wl.grad or wl.vjp there")
    if not root.requires_grad:
        raise RuntimeError(
            f"backward: the tensor (shape {root.shape}) does not require grad: no leaf "
            f"it was computed from has requires_grad=True (or it was computed under no_grad)")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be created implicitly only for a one-element output; "
                f"got shape {root.shape}; pass grad= with the cotangent of that shape")
        grad = ones_like(root)
    else:
        if not isinstance(grad, Tensor):
            grad = Tensor(grad, dtype=root.dtype)
        if grad.data.shape != root.data.shape:
            raise RuntimeError(f"backward: grad has shape {grad.shape} but the output has "
                               f"shape {root.shape}")
        if grad.data.dtype != root.data.dtype:
            grad = cast(grad, root.dtype)
    if retain_graph is None:
        retain_graph = create_graph
    run_backward([root], [grad], None, create_graph, retain_graph)


Tensor.backward = backward
