"""User-defined primitives with JAX's protocol: ``custom_vjp`` and ``custom_jvp``.

``custom_vjp``::

    @wl.custom_vjp
    def f(x, y): ...
    def f_fwd(x, y): return f(x, y), residuals          # (output, residuals)
    def f_bwd(residuals, g): return (gx, gy)              # one cotangent per argument
    f.defvjp(f_fwd, f_bwd)

``custom_jvp``::

    @wl.custom_jvp
    def f(x): ...
    @f.defjvp
    def f_jvp(primals, tangents):                         # -> (output, output tangent)
        ...

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
from .modes import no_grad, state
from .primitive import Primitive, apply
from .pytree import flatten, unflatten
from .tensor import Tensor, _wrap


def _split_args(args):
    """Positions of the floating-point tensor arguments, which become the node's inputs."""
    return [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.data.dtype.kind == "f"]


def _with(args, positions, tensors):
    full = list(args)
    for i, t in zip(positions, tensors):
        full[i] = t
    return full


def _active(inputs) -> bool:
    return (state.grad_enabled and any(x.requires_grad for x in inputs)) or any(
        x._tangents for x in inputs)


def _output_leaves(out, what):
    leaves, tree = flatten(out)
    for o in leaves:
        if not isinstance(o, Tensor):
            raise TypeError(f"{what}: the function must return tensors, got {type(o).__name__}")
    return leaves, tree


class custom_vjp:
    """Wrap ``fun`` so that reverse mode uses a hand-written backward (see module doc)."""

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
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
        positions = _split_args(args)
        inputs = tuple(args[i] for i in positions)
        if not _active(inputs):
            return self.fun(*args)
        record = {}
        name = self.__name__

        def forward(*arrays):
            with no_grad():
                result = self.fwd(*_with(args, positions, [_wrap(a) for a in arrays]))
            if not (isinstance(result, tuple) and len(result) == 2):
                raise TypeError(f"custom_vjp {name}: fwd must return (output, residuals)")
            leaves, tree = _output_leaves(result[0], f"custom_vjp {name}")
            record.update(residuals=result[1], tree=tree,
                          like=[(o.shape, o.dtype) for o in leaves])
            return tuple(o.data for o in leaves)

        def vjp_all(g, out, ins, needs, index):
            cts = [_wrap(B.xp.zeros(s, d)) for s, d in record["like"]]
            cts[index] = g
            if state.grad_enabled:   # higher order: residuals must follow the inputs
                residuals = self.fwd(*_with(args, positions, ins))[1]
            else:
                residuals = record["residuals"]
            grads = self.bwd(residuals, unflatten(record["tree"], cts))
            if not isinstance(grads, (tuple, list)) or len(grads) != len(args):
                got = len(grads) if isinstance(grads, (tuple, list)) else type(grads).__name__
                raise TypeError(f"custom_vjp {name}: bwd must return a tuple with one "
                                f"cotangent per argument ({len(args)}), got {got}")
            result = []
            for k, i in enumerate(positions):
                c = grads[i]
                if c is not None and not isinstance(c, Tensor):
                    c = Tensor(c, dtype=ins[k].dtype)
                if c is not None and c.shape != ins[k].shape:
                    raise ValueError(f"custom_vjp {name}: bwd returned a cotangent of shape "
                                     f"{c.shape} for argument {i} of shape {ins[k].shape}")
                result.append(c)
            return result

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

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.jvp = None

    def defjvp(self, jvp):
        """Set ``jvp(primals, tangents) -> (out, tangent_out)``; usable as a decorator."""
        self.jvp = jvp
        return jvp

    def __call__(self, *args):
        if self.jvp is None:
            raise TypeError(f"custom_jvp {self.__name__}: call defjvp(rule) before calling "
                            f"the function")
        positions = _split_args(args)
        inputs = tuple(args[i] for i in positions)
        if not _active(inputs):
            return self.fun(*args)
        record = {}
        name = self.__name__
        rule = self.jvp

        def forward(*arrays):
            with no_grad():
                out = self.fun(*_with(args, positions, [_wrap(a) for a in arrays]))
            leaves, tree = _output_leaves(out, f"custom_jvp {name}")
            record.update(tree=tree, like=[(o.shape, o.dtype) for o in leaves])
            return tuple(o.data for o in leaves)

        def tangent_map(ins, ts):
            primals = tuple(_with(args, positions, ins))
            tangents = [None] * len(args)
            for i, t in zip(positions, ts):
                tangents[i] = t
            result = rule(primals, tuple(tangents))
            if not (isinstance(result, tuple) and len(result) == 2):
                raise TypeError(f"custom_jvp {name}: the rule must return (output, tangent)")
            return flatten(result[1])[0]

        def jvp_all(tangents, outs, ins, index=None):
            ts = [t if t is not None else _wrap(B.xp.zeros_like(x.data))
                  for t, x in zip(tangents, ins)]
            return tangent_map(ins, ts)

        def vjp_all(g, out, ins, needs, index):
            from .transforms import vjp

            zeros = [_wrap(B.xp.zeros_like(x.data)) for x in ins]
            _, pullback = vjp(lambda *ts: tangent_map(ins, ts), *zeros)
            cts = [_wrap(B.xp.zeros(s, d)) for s, d in record["like"]]
            cts[index] = g
            return list(pullback(cts))

        prim = Primitive(f"custom_jvp({name})", forward, vjp_all=vjp_all, jvp_all=jvp_all,
                         multiple_results=True)
        outs = apply(prim, inputs)
        return unflatten(record["tree"], list(outs))

