"""Function transformations, JAX-style: grad, value_and_grad, vjp, jvp, jacrev, jacfwd,
hessian and checkpoint.

Each transformation works on functions of tensors or of pytrees (dicts, lists, tuples)
of tensors, and they compose to any depth:

* reverse mode makes a fresh *variable* for every input (a leaf, or an identity node
  when the input is itself being differentiated by an enclosing transformation), runs
  the function with recording on, and sweeps back to exactly those variables;
* forward mode opens a new level and attaches tangents at that level to the inputs.

Whether the gradients must themselves be recorded is decided from the graph: they are
when the function depends on anything an enclosing differentiation follows (an outer
variable, or a parameter requiring grad), and recording is on at the call.
"""

from __future__ import annotations

import functools

from .. import backend as B
from .engine import dependents, reaches_outside, run_backward, toposort
from .modes import enable_grad, forward_level, no_grad, state
from .primitive import Primitive, apply, identity, strip
from .pytree import flatten, tree_map, unflatten
from .tensor import Tensor, _wrap


# ----------------------------------------------------------------------------- helpers
def _to_tensor(x, what: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    try:
        return Tensor(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected a tensor, a number or an array, got "
                        f"{type(x).__name__}") from exc


def _variable(x, what: str) -> Tensor:
    """A fresh tensor to differentiate with respect to, connected to ``x`` if needed."""
    x = _to_tensor(x, what)
    if x.data.dtype.kind != "f":
        raise TypeError(f"{what}: can only differentiate with respect to floating-point "
                        f"inputs, got {x.data.dtype} of shape {x.shape}")
    if (x.requires_grad and state.grad_enabled) or x._tangents:
        with enable_grad():
            v = apply(identity, (x,))
        if not v.requires_grad:     # x only carried tangents
            v.requires_grad = True
        return v
    v = _wrap(x.data)
    v.requires_grad = True
    return v


def _without_graph(t):
    if not isinstance(t, Tensor) or not t.requires_grad:
        return t
    out = _wrap(t.data)
    out._tangents = t._tangents
    return out


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


# ----------------------------------------------------------------------------- reverse
def _vjp(fun, primals, has_aux, what):
    flat, tree = flatten(tuple(primals))
    recording_outside = state.grad_enabled
    variables = [_variable(x, what) for x in flat]
    with enable_grad():
        result = fun(*unflatten(tree, variables))
    out, aux = _split_aux(result, has_aux, what)
    out_flat, out_tree = flatten(out)
    _check_outputs(out_flat, what)
    ids = {id(v) for v in variables}
    order = toposort(out_flat, ids)
    create = recording_outside and reaches_outside(order, ids)
    return out_flat, out_tree, aux, variables, tree, create


def vjp(fun, *primals, has_aux=False):
    """Evaluate ``fun(*primals)`` and return ``(out, vjp_fn)`` (and ``aux``).

    ``vjp_fn(cotangent)`` maps a cotangent of ``out`` (same structure, shapes and
    dtypes) to the tuple of cotangents of ``primals``. It can be called many times.
    """
    out_flat, out_tree, aux, variables, tree, create = _vjp(fun, primals, has_aux, "vjp")

    def vjp_fn(cotangent):
        ct_flat, ct_tree = flatten(cotangent)
        if ct_tree != out_tree:
            raise ValueError(f"vjp: cotangent structure {ct_tree} does not match the "
                             f"output structure {out_tree}")
        cts = []
        for o, c in zip(out_flat, ct_flat):
            c = _to_tensor(c, "vjp")
            if c.shape != o.shape:
                raise ValueError(f"vjp: cotangent of shape {c.shape} for an output of "
                                 f"shape {o.shape}")
            cts.append(c.astype(o.dtype) if c.dtype != o.dtype else c)
        grads = run_backward(out_flat, cts, variables, create_graph=create,
                             retain_graph=True)
        return unflatten(tree, grads)

    out = unflatten(out_tree, out_flat if create else [_without_graph(o) for o in out_flat])
    if has_aux:
        return out, vjp_fn, (aux if create else tree_map(_without_graph, aux))
    return out, vjp_fn


def value_and_grad(fun, argnums=0, has_aux=False):
    """Like :func:`grad`, but the new function returns ``(value, gradient)``.

    With ``has_aux=True`` it returns ``((value, aux), gradient)``.
    """

    @functools.wraps(fun)
    def value_and_grad_fn(*args, **kwargs):
        single, nums = _normalize_argnums(argnums, len(args), "grad")
        f_dyn, dyn = _partial(fun, args, nums, kwargs)
        out_flat, out_tree, aux, variables, tree, create = _vjp(f_dyn, dyn, has_aux, "grad")
        if out_tree.kind != "leaf":
            raise TypeError(f"grad: the function must return a single scalar tensor, got "
                            f"a {out_tree.kind}")
        out = out_flat[0]
        if out.ndim != 0:
            raise TypeError(f"grad: the function must return a scalar (shape ()), got "
                            f"shape {out.shape}; use vjp or jacrev for non-scalar outputs")
        if out.dtype.kind != "f":
            raise TypeError(f"grad: the function must return a floating-point scalar, got "
                            f"{out.dtype}")
        seed = _wrap(B.xp.ones_like(out.data))
        grads = run_backward([out], [seed], variables, create_graph=create,
                             retain_graph=create)
        g = unflatten(tree, grads)
        g = g[0] if single else tuple(g)
        value = out if create else _without_graph(out)
        if has_aux:
            aux_out = aux if create else tree_map(_without_graph, aux)
            return (value, aux_out), g
        return value, g

    return value_and_grad_fn


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
    with forward_level() as level:
        xs = []
        for p, t in zip(p_flat, t_flat):
            p = _to_tensor(p, "jvp")
            t = _to_tensor(t, "jvp")
            if p.data.dtype.kind != "f":
                raise TypeError(f"jvp: primal of dtype {p.dtype} cannot carry a tangent; "
                                f"only floating-point inputs can")
            if t.shape != p.shape:
                raise ValueError(f"jvp: tangent of shape {t.shape} for a primal of shape "
                                 f"{p.shape}")
            if t.dtype != p.dtype:
                t = t.astype(p.dtype)
            if (p.requires_grad and state.grad_enabled) or p._tangents:
                x = apply(identity, (p,))
            else:
                x = _wrap(p.data)
            x._tangents = dict(x._tangents) if x._tangents else {}
            x._tangents[level] = t
            xs.append(x)
        result = fun(*unflatten(tree, xs))
    out, aux = _split_aux(result, has_aux, "jvp")
    out_flat, out_tree = flatten(out)
    _check_outputs(out_flat, "jvp")
    primal_out, tangent_out = [], []
    for o in out_flat:
        t = o._tangents.get(level) if o._tangents else None
        tangent_out.append(t if t is not None else _wrap(B.xp.zeros_like(o.data)))
        primal_out.append(strip(o, level) if o._tangents else o)
    res = (unflatten(out_tree, primal_out), unflatten(out_tree, tangent_out))
    return res + (aux,) if has_aux else res


# ----------------------------------------------------------------------------- jacobians
def _stack(rows):
    from .. import ops

    return ops.stack(rows)


def jacrev(fun, argnums=0, has_aux=False):
    """The Jacobian of ``fun`` by reverse mode (one VJP per output element).

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
        _, in_tree = flatten(dyn)
        zeros = [_wrap(B.xp.zeros_like(o.data)) for o in out_flat]
        per_output = []
        for k, o in enumerate(out_flat):
            rows = []          # rows[j] = flat input cotangents for basis vector j
            for j in range(o.size):
                e = B.xp.zeros(o.size, dtype=o.dtype)
                e[j] = 1
                cts = list(zeros)
                cts[k] = _wrap(e.reshape(o.shape))
                rows.append(flatten(vjp_fn(unflatten(out_tree, cts)))[0])
            leaves = []
            for i, x in enumerate(flatten(dyn)[0]):
                x = _to_tensor(x, "jacrev")
                col = [r[i] for r in rows]
                j_ = _stack(col) if col else _wrap(B.xp.zeros((0,) + x.shape, x.dtype))
                leaves.append(j_.reshape(o.shape + x.shape))
            tree_in = unflatten(in_tree, leaves)
            per_output.append(tree_in[0] if single else tuple(tree_in))
        jac = unflatten(out_tree, per_output)
        return (jac, res[2]) if has_aux else jac

    return jacfn


def jacfwd(fun, argnums=0, has_aux=False):
    """The Jacobian of ``fun`` by forward mode (one JVP per input element).

    Same layout as :func:`jacrev`; prefer it when inputs are fewer than outputs.
    """

    @functools.wraps(fun)
    def jacfn(*args, **kwargs):
        single, nums = _normalize_argnums(argnums, len(args), "jacfwd")
        f_dyn, dyn = _partial(fun, args, nums, kwargs)
        in_flat, in_tree = flatten(dyn)
        in_flat = [_to_tensor(x, "jacfwd") for x in in_flat]
        zeros = [_wrap(B.xp.zeros_like(x.data)) for x in in_flat]
        columns = []       # columns[i][j] = flat output tangents for input leaf i, element j
        out_flat = out_tree = aux = None
        for i, x in enumerate(in_flat):
            cols = []
            for j in range(x.size):
                e = B.xp.zeros(x.size, dtype=x.dtype)
                e[j] = 1
                ts = list(zeros)
                ts[i] = _wrap(e.reshape(x.shape))
                res = jvp(f_dyn, unflatten(in_tree, in_flat), unflatten(in_tree, ts),
                          has_aux=has_aux)
                out_flat, out_tree = flatten(res[0])
                cols.append(flatten(res[1])[0])
                if has_aux:
                    aux = res[2]
            columns.append(cols)
        if out_flat is None:       # every input is empty: evaluate once for the shapes
            res = f_dyn(*unflatten(in_tree, in_flat))
            out, aux = _split_aux(res, has_aux, "jacfwd")
            out_flat, out_tree = flatten(out)
        per_output = []
        for k, o in enumerate(out_flat):
            leaves = []
            for i, x in enumerate(in_flat):
                col = [c[k] for c in columns[i]]
                if col:
                    j_ = _stack(col).reshape(x.shape + o.shape)
                    j_ = j_.transpose(tuple(range(x.ndim, x.ndim + o.ndim)) + tuple(range(x.ndim)))
                else:
                    j_ = _wrap(B.xp.zeros(o.shape + x.shape, o.dtype))
                leaves.append(j_)
            tree_in = unflatten(in_tree, leaves)
            per_output.append(tree_in[0] if single else tuple(tree_in))
        jac = unflatten(out_tree, per_output)
        return (jac, aux) if has_aux else jac

    return jacfn


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
    parameters, say). During the backward sweep the node runs ``fun`` again (with the
    random generator restored to its state at the first call, so dropout masks agree)
    and differentiates the recomputation. Memory held between forward and backward falls
    to those inputs and the outputs; compute grows by one forward of ``fun``. Under
    forward mode (inside ``jvp``) ``fun`` simply runs: there is nothing to save.
    Keyword arguments, and positional arguments in ``static_argnums``, are passed through
    and not differentiated. ``prevent_cse`` is accepted for JAX compatibility (there is
    no compiler here to eliminate anything); ``policy`` (which intermediates to keep) is
    not supported: everything inside is recomputed.
    """
    from .. import random as _random

    if policy is not None:
        raise NotImplementedError("checkpoint: saving policies are not supported; every "
                                  "intermediate of the function is recomputed")
    static = set(static_argnums if not isinstance(static_argnums, int) else (static_argnums,))

    @functools.wraps(fun)
    def checkpointed(*args, **kwargs):
        if not state.grad_enabled or state.fwd_levels:
            return fun(*args, **kwargs)
        dynamic = tuple(a for i, a in enumerate(args) if i not in static)
        flat, tree = flatten(dynamic)
        positions = [i for i, a in enumerate(flat)
                     if isinstance(a, Tensor) and a.data.dtype.kind == "f"]
        rng_state = _random.get_state()

        def call(tensors):
            full = list(flat)
            for i, t in zip(positions, tensors):
                full[i] = t
            it = iter(unflatten(tree, full))
            return fun(*[a if i in static else next(it) for i, a in enumerate(args)], **kwargs)

        # Run once with recording to see which outside tensors the function reads; the
        # recorded graph is dropped right after.
        variables = [_variable(flat[i], "checkpoint") for i in positions]
        with enable_grad():
            out = call(variables)
        out_flat, out_tree = flatten(out)
        _check_outputs(out_flat, "checkpoint")
        ids = {id(v) for v in variables}
        order = toposort(out_flat, ids)
        dep = dependents(order, ids)
        outside, seen = [], set()
        for node in order:
            if id(node) in dep and id(node) not in ids and node._inputs:
                for p in node._inputs:
                    if p.requires_grad and id(p) not in dep and id(p) not in seen:
                        seen.add(id(p))
                        outside.append(p)
        if not outside and not any(flat[i].requires_grad for i in positions):
            return unflatten(out_tree, [_without_graph(o) for o in out_flat])
        datas = [o.data for o in out_flat]
        like = [(o.shape, o.dtype) for o in out_flat]
        del out, out_flat, order, variables
        n_args = len(positions)

        def forward(*arrays):
            return tuple(datas)

        def vjp_all(g, out_, ins, needs, index):
            cts = [_wrap(B.xp.zeros(s_, d_)) for s_, d_ in like]
            cts[index] = g
            saved = _random.get_state()
            _random.set_state(rng_state)
            try:
                fresh = [_variable(x, "checkpoint") for x in ins[:n_args]]
                with enable_grad():
                    res = call(fresh)
                res_flat, _ = flatten(res)
                targets = fresh + list(ins[n_args:])
                create = state.grad_enabled
                return run_backward(res_flat, cts, targets, create_graph=create,
                                    retain_graph=create)
            finally:
                _random.set_state(saved)

        def no_jvp(*_a, **_k):  # pragma: no cover - forward mode never records this node
            raise RuntimeError("checkpoint: unexpected forward-mode use")

        name = getattr(fun, "__name__", "function")
        prim = Primitive(f"checkpoint({name})", forward, vjp_all=vjp_all, jvp_all=no_jvp,
                         multiple_results=True)
        inputs = tuple(flat[i] for i in positions) + tuple(outside)
        outs = apply(prim, inputs)
        return unflatten(out_tree, list(outs))

    return checkpointed


remat = checkpoint
