"""Function transformations, JAX-style: grad, value_and_grad, vjp, jvp, jacrev, jacfwd,
hessian and checkpoint.

Each transformation works on functions of tensors or of pytrees (dicts, lists, tuples)
of tensors, and they compose to any depth:

* reverse mode makes a fresh *variable* for every input (a leaf, or an identity node
  when the input is itself being differentiated by an enclosing transformation), runs
  the function with recording on, and sweeps back to exactly those variables;
* forward mode opens a new level and attaches tangents at that level to the inputs;
* ``jacrev``/``jacfwd`` map ``vjp``/``jvp`` over a basis with ``vmap``.

Gradients are recorded (so they can be differentiated again) only when something may
differentiate them: inside an enclosing ``grad``/``vjp``, eagerly; at the top level,
when the function reads tensors that require grad (a model's parameters, say), lazily:
the results come out of one node that recomputes the gradient with recording only if a
later backward pass reaches it. A plain ``grad`` thus costs what ``.backward()`` costs.
"""

from __future__ import annotations

import functools

from .. import backend as B
from . import rng
from .engine import reaches_outside, run_backward, toposort, walk, without_graph
from .modes import capturing, enable_grad, get_state, new_level, replace, reset
from .forward import attach_tangent, strip
from .primitive import Primitive, alias, apply
from .pytree import flatten, tree_map, unflatten
from .structural import cast, identity, ones_like, zeros_like
from .tensor import AbstractArray, Tensor, from_array, to_tensor
from .tracing import note_constant
from .vmap import (batch_levels, batched_backward, batched_everywhere, batched_variable,
                   check_reverse_under_vmap, physical_tensors, vmap)


# ----------------------------------------------------------------------------- helpers
def _variable(x, what: str, eager: bool = True, batch_levels=()) -> Tensor:
    """A fresh tensor to differentiate with respect to.

    With ``eager`` it stays connected to ``x`` when ``x`` is followed by an enclosing
    transformation (it requires grad, carries tangents or is batched), so derivatives
    of the result reach ``x``; otherwise it is a new leaf over ``x``'s values. Inside
    ``vmap``, ``batch_levels`` names vmap levels at which to batch ``x`` first (when the
    function's output is batched there and ``x`` is not, the gradient is per example).
    """
    x = to_tensor(x, what)
    if x.dtype.kind != "f":
        raise TypeError(f"{what}: can only differentiate with respect to floating-point "
                        f"inputs, got {x.dtype} of shape {x.shape}")
    if batch_levels:
        x = batched_everywhere(x, batch_levels)
    if x._batch is not None:
        check_reverse_under_vmap(x, what)
        return batched_variable(x, lambda inner: _variable(inner, what, eager))
    if eager and ((x.requires_grad and get_state().grad_enabled) or x._tangents):
        with enable_grad():
            v = identity(x)
        if not v.requires_grad:     # x only carried tangents
            v.requires_grad = True
        return v
    v = from_array(x.data)
    v._vc = x._vc
    v.requires_grad = True
    return v


def _split_aux(result, has_aux: bool, what: str):
    if not has_aux:
        return result, None
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError(f"{what}: with has_aux=True the function must return a pair "
                        f"(output, aux), got {type(result).__name__}")
    return result[0], result[1]


def _check_outputs(leaves, what: str):
    for o in leaves:
        if not isinstance(o, Tensor):
            raise TypeError(f"{what}: the function must return tensors (or pytrees of "
                            f"tensors), got {type(o).__name__}")


def _normalize_argnums(argnums, nargs: int, what: str):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for a in nums:
        if not isinstance(a, int) or not -nargs <= a < nargs:
            raise ValueError(f"{what}: argnums {argnums!r} out of range for a function "
                             f"called with {nargs} positional arguments")
    return single, tuple(a % nargs for a in nums)


def _partial(fun, args, nums, kwargs=None):
    """``fun`` as a function of the arguments at positions ``nums`` only (keyword
    arguments are passed through, not differentiated)."""
    kwargs = kwargs or {}

    def f_dyn(*dyn):
        full = list(args)
        for i, v in zip(nums, dyn):
            full[i] = v
        return fun(*full, **kwargs)

    return f_dyn, tuple(args[i] for i in nums)


def _zeros_for(targets, results):
    """Materialise the symbolic zeros (``None``) of unreached targets (constants of a
    program ``jit`` is tracing)."""
    out = []
    for r, t in zip(results, targets):
        if r is None:
            r = zeros_like(t)
            note_constant(r.data)
        out.append(r)
    return out


class _Trace:
    """One recorded run of a function under a reverse-mode transformation."""

    __slots__ = ("out_flat", "out_tree", "aux", "variables", "tree", "outside", "eager")


def _record(fun, primals, has_aux, what, eager=True, need_outside=True) -> _Trace:
    flat, tree = flatten(tuple(primals))
    st = get_state()
    tr = _Trace()
    tr.tree = tree
    with rng.tracking() as touched:
        _run(tr, fun, flat, has_aux, what, eager, st, ())
    missing = _unbatched_variables(tr) if st.levels else ()
    if missing:
        # The output is batched where a variable is not: its gradient is per example, so
        # run again with the variables batched there (same random numbers).
        with rng.replaying(touched):
            _run(tr, fun, flat, has_aux, what, eager, st, missing)
    tr.eager = eager
    tr.outside = False
    if need_outside and st.grad_enabled:
        roots = _physical_roots(tr.out_flat)
        order, leaves, outputs = walk(roots, _physical_roots(tr.variables))
        tr.outside = reaches_outside(order, leaves, outputs, roots)
    return tr


def _run(tr, fun, flat, has_aux, what, eager, st, batch_levels):
    tr.variables = [_variable(x, what, eager, batch_levels) for x in flat]
    token = replace(grad_enabled=True, rev_depth=st.rev_depth + 1)
    try:
        result = fun(*unflatten(tr.tree, tr.variables))
    finally:
        reset(token)
    out, tr.aux = _split_aux(result, has_aux, what)
    tr.out_flat, tr.out_tree = flatten(out)
    _check_outputs(tr.out_flat, what)


def _unbatched_variables(tr):
    """The vmap levels at which an output is batched but some variable is not."""
    out_levels = set()
    for o in tr.out_flat:
        out_levels |= batch_levels(o)
    missing = set()
    for v in tr.variables:
        missing |= out_levels - batch_levels(v)
    return tuple(sorted(missing))


def _physical_roots(tensors):
    if any(t._batch is not None for t in tensors):
        return physical_tensors(tensors)
    return tensors


def _sweep(roots, cts, targets, create, retain):
    """``run_backward`` that accepts batched roots and targets (inside vmap)."""
    if any(t._batch is not None for t in list(roots) + list(targets)):
        return batched_backward(roots, cts, targets, create, retain)
    return run_backward(roots, cts, targets, create_graph=create, retain_graph=retain)


# ----------------------------------------------------------------------------- reverse
def vjp(fun, *primals, has_aux=False):
    """Evaluate ``fun(*primals)`` and return ``(out, vjp_fn)`` (and ``aux``).

    ``vjp_fn(cotangent)`` maps a cotangent of ``out`` (same structure, shapes and
    dtypes) to the tuple of cotangents of ``primals``. It can be called many times.
    """
    tr = _record(fun, primals, has_aux, "vjp")

    def vjp_fn(cotangent):
        ct_flat, ct_tree = flatten(cotangent)
        if ct_tree != tr.out_tree:
            raise ValueError(f"vjp: cotangent structure {ct_tree} does not match the "
                             f"output structure {tr.out_tree}")
        cts = []
        for o, c in zip(tr.out_flat, ct_flat):
            c = to_tensor(c, "vjp")
            if c.shape != o.shape:
                raise ValueError(f"vjp: cotangent of shape {c.shape} for an output of "
                                 f"shape {o.shape}")
            if c.dtype != o.dtype:
                raise TypeError(f"vjp: cotangent of dtype {c.dtype} for an output of dtype "
                                f"{o.dtype}; cast it first")
            cts.append(c)
        st = get_state()
        create = st.grad_enabled and (tr.outside or any(c.requires_grad for c in cts))
        grads = _sweep(tr.out_flat, cts, tr.variables, create, True)
        return unflatten(tr.tree, _zeros_for(tr.variables, grads))

    keep = tr.outside
    out = unflatten(tr.out_tree, tr.out_flat if keep else [without_graph(o) for o in tr.out_flat])
    if has_aux:
        return out, vjp_fn, (tr.aux if keep else tree_map(_plain, tr.aux))
    return out, vjp_fn


def _plain(x):
    return without_graph(x) if isinstance(x, Tensor) else x


def value_and_grad(fun, argnums=0, has_aux=False):
    """Like :func:`grad`, but the new function returns ``(value, gradient)``.

    With ``has_aux=True`` it returns ``((value, aux), gradient)``.
    """

    @functools.wraps(fun)
    def value_and_grad_fn(*args, **kwargs):
        single, nums = _normalize_argnums(argnums, len(args), "grad")
        f_dyn, dyn = _partial(fun, args, nums, kwargs)
        st = get_state()
        eager = st.rev_depth > 0 or bool(st.levels) or _carries_levels(dyn)
        if eager:
            value, aux, grads, tree = _value_and_grad_eager(f_dyn, dyn, has_aux)
        else:
            value, aux, grads, tree = _value_and_grad_top(f_dyn, dyn, has_aux)
        g = unflatten(tree, grads)
        g = g[0] if single else tuple(g)
        return ((value, aux), g) if has_aux else (value, g)

    return value_and_grad_fn


def _carries_levels(tree) -> bool:
    leaves, _ = flatten(tree)
    return any(isinstance(x, Tensor) and (x._tangents or x._batch is not None) for x in leaves)


def _scalar_output(tr: _Trace) -> Tensor:
    if tr.out_tree.kind != "leaf":
        raise TypeError(f"grad: the function must return a single scalar tensor, got "
                        f"a {tr.out_tree.kind}")
    out = tr.out_flat[0]
    if out.ndim != 0:
        raise TypeError(f"grad: the function must return a scalar (shape ()), got "
                        f"shape {out.shape}; use vjp or jacrev for non-scalar outputs")
    if out.dtype.kind != "f":
        raise TypeError(f"grad: the function must return a floating-point scalar, got "
                        f"{out.dtype}")
    return out


def _value_and_grad_eager(f_dyn, dyn, has_aux):
    """Inside an enclosing transformation: record the backward pass when it may be
    differentiated (the function reads what the enclosing one follows)."""
    tr = _record(f_dyn, dyn, has_aux, "grad")
    out = _scalar_output(tr)
    create = tr.outside
    grads = _sweep([out], [ones_like(out)], tr.variables, create, create)
    grads = _zeros_for(tr.variables, grads)
    value = out if create else without_graph(out)
    aux = tr.aux if create else tree_map(_plain, tr.aux)
    return value, aux, grads, tr.tree


def _value_and_grad_top(f_dyn, dyn, has_aux):
    """At the top level: one backward pass without recording; when the function reads
    tensors that require grad, the results come out of a node that recomputes them with
    recording if a later backward pass asks (see :func:`_recomputed`)."""
    with rng.tracking() as touched, capturing() as cap:
        tr = _record(f_dyn, dyn, has_aux, "grad", eager=False, need_outside=False)
    out = _scalar_output(tr)
    grads = run_backward([out], [ones_like(out)], tr.variables)
    grads = _zeros_for(tr.variables, grads)
    flat, _ = flatten(tuple(dyn))
    inputs = [to_tensor(x, "grad") for x in flat]
    outside = _outside(cap, [out] + _tensor_leaves(tr.aux), tr.variables, inputs)
    if not get_state().grad_enabled or not (outside or any(x.requires_grad for x in inputs)):
        return without_graph(out), tree_map(_plain, tr.aux), grads, tr.tree
    aux_leaves, aux_tree = flatten(tr.aux)
    aux_pos = [i for i, a in enumerate(aux_leaves) if isinstance(a, Tensor) and a.dtype.kind == "f"]

    n_grads = len(grads)

    def recompute(fresh, wanted):
        t2 = _record(f_dyn, unflatten(tr.tree, fresh), has_aux, "grad")
        o = t2.out_flat[0]
        a2, _ = flatten(t2.aux)
        aux_out = [a2[i] for i in aux_pos]
        if not any(wanted[1:1 + n_grads]):      # only the value (or aux) is asked for
            return [o] + [None] * n_grads + aux_out
        g2 = run_backward([o], [ones_like(o)], t2.variables, create_graph=True,
                          retain_graph=True)
        return [o] + _zeros_for(t2.variables, g2) + aux_out

    results = [out] + grads + [aux_leaves[i] for i in aux_pos]
    outs = _recomputed("grad", recompute, inputs, outside, results, touched)
    value, grads = outs[0], list(outs[1:1 + len(grads)])
    new_aux = [_plain(a) for a in aux_leaves]
    for k, i in enumerate(aux_pos):
        new_aux[i] = outs[1 + len(grads) + k]
    return value, unflatten(aux_tree, new_aux), grads, tr.tree


def _position(t):
    return id(t) if t._node is None else (id(t._node), t._index)


def _outside(cap, roots, variables, inputs):
    """The tensors requiring grad a function read from outside (its closure), less its
    own variables and inputs: the edges of the nodes its run made that lead out of them.
    A leaf read from outside comes back as itself; a computed tensor as a stand-in at its
    place in the graph (enough to sweep to it and to connect a node to it)."""
    mine = {_position(v) for v in variables} | {_position(x) for x in inputs if x.requires_grad}
    created = cap.created
    found, seen = [], set()
    for node in toposort([r for r in roots if r._node is not None and id(r._node) in created],
                         stop=None, within=created):
        for i, e in enumerate(node.edges):
            if e is None:
                continue
            key = id(e) if type(e) is not tuple else (id(e[0]), e[1])
            if key in mine or key in seen or (type(e) is tuple and id(e[0]) in created):
                continue
            seen.add(key)
            found.append(e if type(e) is not tuple else
                         _stand_in(e[0], e[1], node.shapes[i], node.dtypes[i]))
    return found


def _stand_in(node, index, shape, dtype):
    t = from_array(AbstractArray(shape, dtype))
    t.requires_grad, t._node, t._index = True, node, index
    return t


def _tensor_leaves(tree):
    leaves, _ = flatten(tree)
    return [x for x in leaves if isinstance(x, Tensor)]


def _recomputed(name, recompute, inputs, outside, results, touched):
    """Tensors with the values ``results`` that differentiate by recomputation.

    One node with inputs ``inputs`` (the function's arguments) and ``outside`` (tensors
    requiring grad the function reads); its VJP runs ``recompute(fresh_inputs, wanted)``
    again with recording (``wanted[k]``: whether result ``k`` has a cotangent), random
    generators replayed, and sweeps back through that run.
    """
    datas = [r.data for r in results]
    n_args = len(inputs)

    def forward(*arrays):
        return tuple(datas)

    def vjp_all(gs, outs, ins, needs):
        with rng.replaying(touched):
            fresh = [_variable(x, name) for x in ins[:n_args]]
            token = replace(grad_enabled=True, rev_depth=get_state().rev_depth + 1)
            try:
                res = recompute(fresh, [g is not None for g in gs])
            finally:
                reset(token)
        pairs = [(r, g) for r, g in zip(res, gs)
                 if g is not None and r is not None and r.requires_grad]
        if not pairs:
            return [None] * len(ins)
        create = get_state().grad_enabled
        cts = run_backward([r for r, _ in pairs], [g for _, g in pairs],
                           fresh + list(ins[n_args:]), create_graph=create, retain_graph=create)
        return cts

    def no_jvp(*_a, **_k):  # pragma: no cover - forward mode never records this node
        raise RuntimeError(f"{name}: unexpected forward-mode use")

    prim = Primitive(f"{name}(recomputed)", forward, vjp_all=vjp_all, jvp_all=no_jvp,
                     multiple_results=True)
    with enable_grad():
        return list(apply(prim, tuple(inputs) + tuple(outside)))


def grad(fun, argnums=0, has_aux=False):
    """The gradient of a scalar-valued ``fun`` with respect to argument(s) ``argnums``.

    >>> wl.grad(lambda x: (x ** 3).sum())(wl.tensor([1.0, 2.0]))
    tensor([ 3., 12.])

    The gradient has the structure of the argument (a pytree for a pytree); with a
    tuple ``argnums`` it is a tuple. With ``has_aux=True`` ``fun`` returns
    ``(value, aux)`` and the new function returns ``(gradient, aux)``.
    """
    vg = value_and_grad(fun, argnums, has_aux)

    @functools.wraps(fun)
    def grad_fn(*args, **kwargs):
        value, g = vg(*args, **kwargs)
        if has_aux:
            return g, value[1]
        return g

    return grad_fn


# ----------------------------------------------------------------------------- forward
def _with_tangent(p: Tensor, level: int, t: Tensor) -> Tensor:
    """A new tensor object for ``p`` (same graph position, lower tangents, batching)
    carrying tangent ``t`` at ``level``."""
    x = alias(p)
    x._tangents = dict(p._tangents) if p._tangents else {}
    attach_tangent(x, level, t)
    return x


def jvp(fun, primals, tangents, has_aux=False):
    """Evaluate ``fun(*primals)`` and its directional derivative along ``tangents``.

    Returns ``(out, tangent_out)`` (and ``aux``); ``primals`` and ``tangents`` are
    tuples (or lists) with the same structure, shapes and dtypes.
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (or lists) of arguments, "
                        f"got {type(primals).__name__} and {type(tangents).__name__}")
    p_flat, tree = flatten(tuple(primals))
    t_flat, t_tree = flatten(tuple(tangents))
    if t_tree != tree:
        raise ValueError(f"jvp: tangents structure {t_tree} does not match primals "
                         f"structure {tree}")
    with new_level() as level:
        xs = []
        for p, t in zip(p_flat, t_flat):
            p = to_tensor(p, "jvp")
            t = to_tensor(t, "jvp")
            if p.dtype.kind != "f":
                raise TypeError(f"jvp: primal of dtype {p.dtype} cannot carry a tangent; "
                                f"only floating-point inputs can")
            if t.shape != p.shape:
                raise ValueError(f"jvp: tangent of shape {t.shape} for a primal of shape "
                                 f"{p.shape}")
            if t.dtype != p.dtype:
                t = cast(t, p.dtype)
            xs.append(_with_tangent(p, level, t))
        result = fun(*unflatten(tree, xs))
        out, aux = _split_aux(result, has_aux, "jvp")
        out_flat, out_tree = flatten(out)
        _check_outputs(out_flat, "jvp")
        primal_out, tangent_out = [], []
        for o in out_flat:
            t = o._tangents.get(level) if o._tangents else None
            tangent_out.append(t if t is not None else zeros_like(o))
            primal_out.append(strip(o, level) if o._tangents else o)
    res = (unflatten(out_tree, primal_out), unflatten(out_tree, tangent_out))
    return res + (aux,) if has_aux else res


# ----------------------------------------------------------------------------- jacobians
def jacrev(fun, argnums=0, has_aux=False):
    """The Jacobian of ``fun`` by reverse mode: ``vjp_fn`` mapped with ``vmap`` over the
    basis of each output.

    Each output leaf of shape ``o`` gives, for each argument leaf of shape ``i``, an
    array of shape ``o + i``. Prefer it when outputs are fewer than inputs.
    """
    @functools.wraps(fun)
    def jacfn(*args, **kwargs):
        single, nums = _normalize_argnums(argnums, len(args), "jacrev")
        f_dyn, dyn = _partial(fun, args, nums, kwargs)
        res = vjp(f_dyn, *dyn, has_aux=has_aux)
        out, vjp_fn = res[0], res[1]
        out_flat, out_tree = flatten(out)
        in_flat, in_tree = flatten(dyn)
        in_flat = [to_tensor(x, "jacrev") for x in in_flat]
        per_output = []
        for k, o in enumerate(out_flat):
            def pull(e, k=k, o=o):
                cts = [zeros_like(q) for q in out_flat]
                cts[k] = e.reshape(o.shape)
                return flatten(vjp_fn(unflatten(out_tree, cts)))[0]

            basis = _eye(o)
            rows = vmap(pull)(basis) if o.size else [
                _empty((0,) + x.shape, x) for x in in_flat]
            leaves = [r.reshape(o.shape + x.shape) for r, x in zip(rows, in_flat)]
            tree_in = unflatten(in_tree, leaves)
            per_output.append(tree_in[0] if single else tuple(tree_in))
        jac = unflatten(out_tree, per_output)
        return (jac, res[2]) if has_aux else jac

    return jacfn


def jacfwd(fun, argnums=0, has_aux=False):
    """The Jacobian of ``fun`` by forward mode: ``jvp`` mapped with ``vmap`` over the
    basis of each input.

    Same layout as :func:`jacrev`; prefer it when inputs are fewer than outputs.
    """
    @functools.wraps(fun)
    def jacfn(*args, **kwargs):
        single, nums = _normalize_argnums(argnums, len(args), "jacfwd")
        f_dyn, dyn = _partial(fun, args, nums, kwargs)
        in_flat, in_tree = flatten(dyn)
        in_flat = [to_tensor(x, "jacfwd") for x in in_flat]
        out, aux = _split_aux(f_dyn(*unflatten(in_tree, in_flat)), has_aux, "jacfwd")
        out_flat, out_tree = flatten(out)
        _check_outputs(out_flat, "jacfwd")
        columns = []          # columns[i][k]: d out_k / d in_i, shape (in_i.size,) + out_k
        for i, x in enumerate(in_flat):
            def push(e, i=i, x=x):
                ts = [zeros_like(q) for q in in_flat]
                ts[i] = e.reshape(x.shape)
                r = jvp(f_dyn, unflatten(in_tree, in_flat), unflatten(in_tree, ts),
                        has_aux=has_aux)
                return flatten(r[1])[0]

            columns.append(vmap(push)(_eye(x)) if x.size else None)
        per_output = []
        for k, o in enumerate(out_flat):
            leaves = []
            for i, x in enumerate(in_flat):
                if columns[i] is None:
                    leaves.append(_empty(o.shape + x.shape, o))
                    continue
                col = columns[i][k].reshape(x.shape + o.shape)
                leaves.append(col.transpose(tuple(range(x.ndim, x.ndim + o.ndim))
                                            + tuple(range(x.ndim))))
            tree_in = unflatten(in_tree, leaves)
            per_output.append(tree_in[0] if single else tuple(tree_in))
        jac = unflatten(out_tree, per_output)
        return (jac, aux) if has_aux else jac

    return jacfn


def _eye(x: Tensor) -> Tensor:
    """The rows of the ``x.size``-square identity, in ``x``'s dtype and backend."""
    data = x.data if x._batch is None else None
    xp = B.ns(data) if data is not None else B.default().xp
    return from_array(xp.eye(x.size, dtype=x.dtype))


def _empty(shape, like: Tensor) -> Tensor:
    xp = B.ns(like.data) if like._batch is None else B.default().xp
    return from_array(xp.zeros(shape, dtype=like.dtype))


def hessian(fun, argnums=0, has_aux=False):
    """The Hessian of a scalar ``fun``: forward mode over reverse mode."""
    if has_aux:
        inner = jacrev(fun, argnums, has_aux=True)
        return jacfwd(inner, argnums, has_aux=True)
    return jacfwd(jacrev(fun, argnums), argnums)


# ----------------------------------------------------------------------------- checkpoint
def checkpoint(fun, *, prevent_cse=True, policy=None, static_argnums=()):
    """Gradient checkpointing: ``fun``'s intermediates are not kept for the backward.

    The checkpointed function records a single node whose inputs are its tensor
    arguments and every tensor requiring grad that ``fun`` reads from its closure (model
    parameters, say). During the backward sweep the node runs ``fun`` again — with every
    random generator it drew from (the global one or explicit ones) put back to its
    state at the first call, so dropout masks agree — and differentiates the
    recomputation. Memory held between forward and backward falls to those inputs and
    the outputs; compute grows by one forward of ``fun``. Under forward mode (inside
    ``jvp``) ``fun`` simply runs: there is nothing to save. Keyword arguments, and
    positional arguments in ``static_argnums``, are passed through and not
    differentiated. ``prevent_cse`` is accepted for JAX compatibility (there is no
    compiler here to eliminate anything); ``policy`` (which intermediates to keep) is
    not supported: everything inside is recomputed.
    """
    if policy is not None:
        raise NotImplementedError("checkpoint: saving policies are not supported; every "
                                  "intermediate of the function is recomputed")
    static = set(static_argnums if not isinstance(static_argnums, int) else (static_argnums,))

    @functools.wraps(fun)
    def checkpointed(*args, **kwargs):
        st = get_state()
        if not st.grad_enabled or st.levels:
            return fun(*args, **kwargs)
        dynamic = tuple(a for i, a in enumerate(args) if i not in static)
        flat, tree = flatten(dynamic)
        positions = [i for i, a in enumerate(flat)
                     if isinstance(a, Tensor) and a.dtype.kind == "f"]

        def call(tensors):
            full = list(flat)
            for i, t in zip(positions, tensors):
                full[i] = t
            it = iter(unflatten(tree, full))
            return fun(*[a if i in static else next(it) for i, a in enumerate(args)], **kwargs)

        # Run once with recording to see which outside tensors the function reads; the
        # recorded graph is dropped right after.
        inputs = [flat[i] for i in positions]
        variables = [_variable(x, "checkpoint", eager=False) for x in inputs]
        with rng.tracking() as touched, capturing() as cap, enable_grad():
            out = call(variables)
        out_flat, out_tree = flatten(out)
        _check_outputs(out_flat, "checkpoint")
        outside = _outside(cap, out_flat, variables, inputs)
        if not outside and not any(x.requires_grad for x in inputs):
            return unflatten(out_tree, [without_graph(o) for o in out_flat])
        results = [without_graph(o) for o in out_flat]
        del out, variables, cap
        name = f"checkpoint({getattr(fun, '__name__', 'function')})"
        outs = _recomputed(name, lambda fresh, wanted: flatten(call(fresh))[0], inputs,
                           outside, results, touched)
        return unflatten(out_tree, outs)

    return checkpointed


remat = checkpoint
