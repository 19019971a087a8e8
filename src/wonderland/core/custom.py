"""User-defined primitives with JAX's protocol: ``custom_vjp`` and ``custom_jvp``.

``custom_vjp``::

    @wl.custom_vjp
    def f(x, y): ...
    def f_fwd(x, y): return f(x, y), residuals          # (output, residuals)
    def f_bwd(residuals, g): return (gx, gy)              # one cotangent per argument
    f.defvjp(f_fwd, f_bwd)

```custom_jvp``::

    @wl.custom_jvp
    def f(x): ...
    @f.defjvp
    def f_jvp(primals, tangents):                         # -> (output, output tangent)
        ...

Arguments may be pytrees (their float tensor leaves are the differentiable inputs); with
``nondiff_argnums`` those arguments are passed first to ``bwd`` (or the JVP rule) and get
no cotangent, as in JAX.

Both become one node of the graph. ``bwd`` and the JVP rule are written with tensor
operations, so they are differentiated again for higher orders (``bwd`` then sees
residuals recomputed from the inputs, so their dependence on the inputs is followed).
Reverse mode through a ``custom_jvp`` function transposes the JVP rule by reverse-mode
differentiation of the (linear) tangent map. Forward mode through a ``custom_vjp``
function is not defined, as in JAX.
"""

from __future__ import annotations

import functools

from .. import backend as B
from .modes import get_state, no_grad
from .primitive import Primitive, apply
from .pytree import flatten, unflatten
from .structural import zeros_like
from .tensor import Tensor, from_array
from .transforms import vjp


def _active(inputs) -> bool:
    return (get_state().grad_enabled and any(x.requires_grad for x in inputs)) or any(
        x._tangents or x._batch is not None for x in inputs)


def _dense(gs, like):
    """Output cotangents with the symbolic zeros (``None``) made into zero tensors."""
    return [g if g is not None else _wrap_zeros(s, d) for g, (s, d) in zip(gs, like)]


def _wrap_zeros(shape, dtype):
    return from_array(B.default().xp.zeros(shape, dtype=dtype))


def _output_leaves(out, what):
    leaves, tree = flatten(out)
    for o in leaves:
        if not isinstance(o, Tensor):
            raise TypeError(f"{what}: the function must return tensors, got {type(o).__name__}")
    return leaves, tree


class _Args:
    """The positional arguments of a call, split into the differentiable tensors (float
    tensor leaves of the pytrees of the differentiable arguments) and the rest."""

    def __init__(self, args, nondiff_argnums):
        self.args = args
        self.nondiff = tuple(sorted(a % len(args) for a in nondiff_argnums)) if args else ()
        self.diff_pos = [i for i in range(len(args)) if i not in self.nondiff]
        self.per_arg = []               # (tree, leaves, [leaf index of each input])
        self.inputs = []
        for i in self.diff_pos:
            leaves, tree = flatten(args[i])
            picks = []
            for j, leaf in enumerate(leaves):
                if isinstance(leaf, Tensor) and leaf.data.dtype.kind == "f":
                    picks.append(j)
                    self.inputs.append(leaf)
            self.per_arg.append((tree, leaves, picks))

    def rebuild(self, tensors, with_nondiff=True):
        """The positional arguments with the inputs replaced by ``tensors``."""
        it = iter(tensors)
        diff = []
        for tree, leaves, picks in self.per_arg:
            new = list(leaves)
            for j in picks:
                new[j] = next(it)
            diff.append(unflatten(tree, new))
        if not with_nondiff:
            return diff
        full = list(self.args)
        for i, v in zip(self.diff_pos, diff):
            full[i] = v
        return full

    def nondiff_args(self):
        return [self.args[i] for i in self.nondiff]

    def cotangents(self, result, name):
        """Input cotangents from a ``bwd`` result: one entry per differentiable argument,
        each ``None`` or a pytree shaped like that argument."""
        if not isinstance(result, (tuple, list)) or len(result) != len(self.per_arg):
            got = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
            raise TypeError(f"custom_vjp {name}: bwd must return a tuple with one cotangent per "
                            f"differentiable argument ({len(self.per_arg)}), got {got}")
        out = []
        k = 0
        for pos, ((tree, leaves, picks), ct) in enumerate(zip(self.per_arg, result)):
            if ct is None:
                out.extend([None] * len(picks))
                k += len(picks)
                continue
            ct_leaves, ct_tree = flatten(ct)
            if ct_tree != tree:
                raise TypeError(f"custom_vjp {name}: the cotangent for argument "
                                f"{self.diff_pos[pos]} has structure {ct_tree}, the argument {tree}")
            for j in picks:
                c = ct_leaves[j]
                x = self.inputs[k]
                if c is not None and not isinstance(c, Tensor):
                    c = Tensor(c, dtype=x.dtype)
                if c is not None and c.shape != x.shape:
                    raise ValueError(f"custom_vjp {name}: bwd returned a cotangent of shape "
                                     f"{c.shape} for an input of shape {x.shape}")
                out.append(c)
                k += 1
        return out


class custom_vjp:
    """Wrap ``fun`` so that reverse mode uses a hand-written backward (see module doc)."""

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd = None
        self.bwd = None

    def defvjp(self, fwd, bwd):
        """Set ``fwd(*args) -> (out, residuals)`` and ``bwd(residuals, g) -> cotangents``."""
        self.fwd = fwd
        self.bwd = bwd
        return self

    def __call__(self, *args):
        if self.fwd is None:
            raise TypeError(f"custom_vjp {self.__name__}: call defvjp(fwd, bwd) before "
                            f"calling the function")
        spec = _Args(args, self.nondiff_argnums)
        inputs = tuple(spec.inputs)
        if not _active(inputs):
            return self.fun(*args)
        record = {}
        name = self.__name__

        def forward(*arrays):
            with no_grad():
                result = self.fwd(*spec.rebuild([from_array(a) for a in arrays]))
            if not (isinstance(result, tuple) and len(result) == 2):
                raise TypeError(f"custom_vjp {name}: fwd must return (output, residuals)")
            leaves, tree = _output_leaves(result[0], f"custom_vjp {name}")
            record.update(residuals=result[1], tree=tree,
                          like=[(o.shape, o.dtype) for o in leaves])
            return tuple(o.data for o in leaves)

        def vjp_all(gs, outs, ins, needs):
            cts = _dense(gs, record["like"])
            if get_state().grad_enabled:   # higher order: residuals must follow the inputs
                residuals = self.fwd(*spec.rebuild(ins))[1]
            else:
                residuals = record["residuals"]
            result = self.bwd(*spec.nondiff_args(), residuals, unflatten(record["tree"], cts))
            return spec.cotangents(result, name)

        def no_jvp(*_a, **_k):
            raise TypeError(f"custom_vjp {name}: forward-mode differentiation (jvp, jacfwd, "
                            f"hessian) is not defined for a custom_vjp function; use "
                            f"custom_jvp to give it a JVP rule")

        prim = Primitive(f"custom_vjp({name})", forward, vjp_all=vjp_all, jvp_all=no_jvp,
                         multiple_results=True)
        outs = apply(prim, inputs)
        return unflatten(record["tree"], list(outs))


class custom_jvp:
    """Wrap ``fun`` so that differentiation uses a hand-written JVP rule (see module doc)."""

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.jvp = None

    def defjvp(self, jvp):
        """Set ``jvp(primals, tangents) -> (out, tangent_out)``; usable as a decorator."""
        self.jvp = jvp
        return jvp

    def __call__(self, *args):
        if self.jvp is None:
            raise TypeError(f"custom_jvp {self.__name__}: call defjvp(rule) before calling "
                            f"the function")
        spec = _Args(args, self.nondiff_argnums)
        inputs = tuple(spec.inputs)
        if not _active(inputs):
            return self.fun(*args)
        record = {}
        name = self.__name__
        rule = self.jvp

        def forward(*arrays):
            with no_grad():
                out = self.fun(*spec.rebuild([from_array(a) for a in arrays]))
            leaves, tree = _output_leaves(out, f"custom_jvp {name}")
            record.update(tree=tree, like=[(o.shape, o.dtype) for o in leaves])
            return tuple(o.data for o in leaves)

        def tangent_map(ins, ts):
            primals = tuple(spec.rebuild(ins, with_nondiff=False))
            zero_like = [zeros_like(x) for x in ins]
            tangents = tuple(spec.rebuild(ts if ts is not None else zero_like, with_nondiff=False))
            result = rule(*spec.nondiff_args(), primals, tangents)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise TypeError(f"custom_jvp {name}: the rule must return (output, tangent)")
            return flatten(result[1])[0]

        def jvp_all(tangents, outs, ins):
            ts = [t if t is not None else zeros_like(x) for t, x in zip(tangents, ins)]
            return tangent_map(ins, ts)

        def vjp_all(gs, outs, ins, needs):
            zeros = [zeros_like(x) for x in ins]
            _, pullback = vjp(lambda *ts: tangent_map(ins, ts), *zeros)
            return list(pullback(_dense(gs, record["like"])))

        prim = Primitive(f"custom_jvp({name})", forward, vjp_all=vjp_all, jvp_all=jvp_all,
                         multiple_results=True)
        outs = apply(prim, inputs)
        return unflatten(record["tree"], list(outs))

