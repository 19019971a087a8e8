"""``scan``: a loop with a carried state as one node of the graph, as JAX's ``lax.scan``.

``scan(f, init, xs)`` runs ``carry, y = f(carry, x)`` for each ``x`` along the leading
axis of ``xs`` and returns ``(final carry, ys stacked)``. Under reverse mode it records
*one* node for the whole loop, whatever the number of steps and of operations per step:

* forward: the loop runs without recording; the node keeps the carry at the start of
  every step (and nothing of the steps' insides);
* backward: a reverse loop; step ``t`` is run again from its saved carry with recording,
  and its cotangents (carry, ``x_t``, and every tensor requiring grad that ``f`` reads
  from its closure) are swept back through that one step — backpropagation through time
  with the memory of the carries only. With ``checkpoint_every=k`` only every k-th carry
  is kept and each chunk of k steps is recomputed from it before its backward pass.
* when the backward pass is itself recorded (higher orders), the node runs the whole
  loop again with recording and differentiates through it.

Under forward mode or ``vmap`` the loop simply runs (tangents and batch axes flow through
``f``'s operations); with nothing requiring grad it runs without recording.
"""

from __future__ import annotations

import warnings

from .. import backend as B
from .engine import run_backward, without_graph
from .modes import capturing, enable_grad, get_state, is_grad_enabled, no_grad, switched
from .primitive import Primitive, apply
from .pytree import flatten, unflatten
from .structural import BROADCAST_TO, RESHAPE, zeros_like
from .tensor import Tensor, from_array, to_tensor
from .transforms import _outside, _variable
from .vmap import _index_axis, _stack


def scan(f, init, xs=None, length=None, reverse=False, checkpoint_every=None):
    """Loop ``carry, y = f(carry, x)`` over the leading axis of ``xs``.

    ``init`` and the carries ``f`` returns are pytrees of tensors with one structure,
    shapes and dtypes; ``xs`` is a pytree of tensors sharing a leading length (or
    ``None`` with ``length`` given, and ``f`` receives ``None``); ``y`` is a pytree of
    tensors (or ``None``), stacked along a new leading axis. With ``reverse=True`` the
    loop runs from the last element to the first (``ys`` stays aligned with ``xs``).
    Returns ``(carry, ys)``.

    With zero steps the carry comes back unchanged and each leaf of ``ys`` is an empty
    stack ``(0, ...)`` shaped like one step's output, as in ``lax.scan``: ``f`` runs once,
    unrecorded, on the carry and a placeholder step of zeros, and its values are
    discarded.

    >>> def step(h, x):
    ...     h = wl.tanh(h @ w + x)
    ...     return h, h
    >>> h_last, hs = wl.scan(step, h0, xs)      # one graph node for the whole sequence
    """
    init_leaves, carry_tree = flatten(init)
    init_leaves = [to_tensor(c, "scan") for c in init_leaves]
    xs_leaves, xs_tree = flatten(xs)
    xs_leaves = [to_tensor(x, "scan") for x in xs_leaves]
    n = _length(xs_leaves, length)
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise ValueError(f"scan: checkpoint_every must be a positive int, got {checkpoint_every!r}")
    loop = _Loop(f, carry_tree, xs_tree, [(c.shape, c.dtype) for c in init_leaves], n, reverse)
    if n == 0:
        return loop.no_steps(init_leaves, xs_leaves)
    st = get_state()
    if st.levels or not st.grad_enabled:
        return loop.unrolled(init_leaves, xs_leaves)
    return loop.recorded(init_leaves, xs_leaves, checkpoint_every)


def _length(xs_leaves, length):
    lengths = {x.shape[0] for x in xs_leaves if x.ndim > 0}
    if any(x.ndim == 0 for x in xs_leaves):
        raise ValueError("scan: every leaf of xs needs a leading axis to scan over, got a 0-d tensor")
    if len(lengths) > 1:
        raise ValueError(f"scan: the leaves of xs have different leading lengths {sorted(lengths)}")
    if lengths:
        n = lengths.pop()
        if length is not None and length != n:
            raise ValueError(f"scan: length={length} but xs has leading length {n}")
        return n
    if length is None:
        raise ValueError("scan: pass xs with a leading axis, or length= when xs is None")
    if not isinstance(length, int) or length < 0:
        raise ValueError(f"scan: length must be a non-negative int, got {length!r}")
    return length


class _Loop:
    """One scan: the body, the structures, and the loop in its three forms."""

    def __init__(self, f, carry_tree, xs_tree, carry_like, n, reverse):
        self.f = f
        self.carry_tree = carry_tree
        self.xs_tree = xs_tree
        self.carry_like = carry_like
        self.n = n
        self.reverse = reverse
        self.ys_tree = None

    def order(self):
        return range(self.n - 1, -1, -1) if self.reverse else range(self.n)

    def step(self, carry_leaves, x_leaves):
        """One application of ``f`` on leaves; returns (carry leaves, y leaves)."""
        x = None if x_leaves is None else unflatten(self.xs_tree, x_leaves)
        result = self.f(unflatten(self.carry_tree, carry_leaves), x)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TypeError(f"scan: f must return a pair (carry, y), got {type(result).__name__}")
        new_leaves, tree = flatten(result[0])
        if tree != self.carry_tree:
            raise TypeError(f"scan: f returned a carry of structure {tree}, but the carry "
                            f"has structure {self.carry_tree}")
        for c, (shape, dtype) in zip(new_leaves, self.carry_like):
            if not isinstance(c, Tensor) or c.shape != shape or c.dtype != dtype:
                got = f"{c.dtype}{list(c.shape)}" if isinstance(c, Tensor) else type(c).__name__
                raise TypeError(f"scan: f changed the carry: got {got}, expected "
                                f"{dtype}{list(shape)} (the carry keeps its shapes and dtypes)")
        y_leaves, y_tree = flatten(result[1])
        if self.ys_tree is None:
            self.ys_tree = y_tree
        elif y_tree != self.ys_tree:
            raise TypeError(f"scan: f returned y of structure {y_tree} at one step and "
                            f"{self.ys_tree} at another")
        for y in y_leaves:
            if not isinstance(y, Tensor):
                raise TypeError(f"scan: y must be tensors (or None), got {type(y).__name__}")
        return new_leaves, y_leaves

    def _slices(self, xs_leaves, t):
        return [_index_axis(x, 0, t) for x in xs_leaves] if xs_leaves else None

    # -- no steps at all
    def no_steps(self, init_leaves, xs_leaves):
        """The carry unchanged and empty stacks ``(0, ...)`` of the per-step outputs,
        whose shapes and dtypes come from one unrecorded run of ``f`` on a placeholder
        step of zeros (values discarded; nan/inf there are no anomaly)."""
        placeholder = [_placeholder_step(x) for x in xs_leaves] if xs_leaves else None
        with switched(grad_enabled=False, anomaly=False), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, ys = self.step(list(init_leaves), placeholder)
            ys = [_empty_stack(y) for y in ys]
        return unflatten(self.carry_tree, init_leaves), unflatten(self.ys_tree, ys)

    # -- the plain loop (forward mode, vmap, nothing to record)
    def unrolled(self, init_leaves, xs_leaves):
        carry = init_leaves
        per_step = [None] * self.n
        for t in self.order():
            carry, ys = self.step(carry, self._slices(xs_leaves, t))
            per_step[t] = ys
        return self._result(carry, per_step, stack=_stack)

    def _result(self, carry, per_step, stack):
        ys = [stack([per_step[t][k] for t in range(self.n)]) for k in range(len(per_step[0]))]
        return unflatten(self.carry_tree, carry), unflatten(self.ys_tree, ys)

    # -- one node for the whole loop
    def recorded(self, init_leaves, xs_leaves, every):
        # Run the loop without recording, keeping the carry before each step; step 0
        # also runs once with recording to see what f reads from its closure.
        carries = []
        carry = [without_graph(c) for c in init_leaves]
        plain_xs = [without_graph(x) for x in xs_leaves]
        per_step = [None] * self.n
        first = True
        for t in self.order():
            keep = every is None or len(carries) % every == 0
            carries.append([c.data for c in carry] if keep else None)
            x_t = self._slices(plain_xs, t)
            if first:
                with capturing() as cap, enable_grad():
                    probe = [_fresh(c) for c in carry]
                    px = [_fresh(x) for x in x_t] if x_t is not None else None
                    carry, ys = self.step(probe, px)

                outside = _outside(cap, list(carry) + list(ys), probe + (px or []), [])
                carry = [without_graph(c) for c in carry]
                ys = [without_graph(y) for y in ys]
                first = False
            else:
                with no_grad():
                    carry, ys = self.step(carry, x_t)
            per_step[t] = [y.data for y in ys]
        inputs = [c for c in init_leaves] + [x for x in xs_leaves]
        if not outside and not any(x.requires_grad for x in inputs):
            wrapped = [[from_array(a) for a in step] for step in per_step]
            return self._result(carry, wrapped, stack=_stack_plain)
        return self._node(inputs, outside, carry, per_step, carries, len(init_leaves),
                          every)

    def _node(self, inputs, outside, carry, per_step, carries, n_carry, every):
        n_y = len(per_step[0])
        ys = [_stack_arrays([per_step[t][k] for t in range(self.n)]) for k in range(n_y)]
        results = [c.data for c in carry] + ys
        loop = self

        def forward(*arrays):
            return tuple(results)

        def vjp_all(gs, outs, ins, needs):
            init, xs = ins[:n_carry], ins[n_carry:len(inputs)]
            closure = list(ins[len(inputs):])
            if is_grad_enabled() or any(x._tangents for x in ins):
                return loop._backward_recorded(gs, init, xs, closure, n_carry)
            return loop._backward_by_steps(gs, init, xs, closure, carries, n_carry, every)

        def no_jvp(*_a, **_k):  # pragma: no cover - forward mode never records this node
            raise RuntimeError("scan: unexpected forward-mode use")

        prim = Primitive("scan", forward, vjp_all=vjp_all, jvp_all=no_jvp,
                         multiple_results=True, save="inputs")
        with enable_grad():
            outs = apply(prim, tuple(inputs) + tuple(outside))
        carry_out = list(outs[:n_carry])
        ys_out = list(outs[n_carry:])
        return unflatten(self.carry_tree, carry_out), unflatten(self.ys_tree, ys_out)

    def _backward_recorded(self, gs, init, xs, closure, n_carry):
        """Higher orders: the whole loop again with recording, differentiated through."""
        fresh_init = [_variable(c, "scan") if c.dtype.kind == "f" else c for c in init]
        fresh_xs = [_variable(x, "scan") if x.dtype.kind == "f" else x for x in xs]
        with enable_grad():
            carry, ys = self.unrolled(fresh_init, fresh_xs)
        outs = flatten(carry)[0] + flatten(ys)[0]
        pairs = [(o, g) for o, g in zip(outs, gs) if g is not None and o.requires_grad]
        if not pairs:
            return [None] * (len(init) + len(xs) + len(closure))
        create = is_grad_enabled()
        return run_backward([o for o, _ in pairs], [g for _, g in pairs],
                            fresh_init + fresh_xs + closure, create_graph=create,
                            retain_graph=create)

    def _backward_by_steps(self, gs, init, xs, closure, carries, n_carry, every):
        """Backpropagation through time, one recomputed step at a time."""
        g_carry = [g if g is not None else zeros_like(c) for g, c in zip(gs[:n_carry], init)]
        g_ys = list(gs[n_carry:])
        g_xs = [[None] * self.n for _ in xs]
        g_closure = [None] * len(closure)
        steps = list(self.order())               # steps in the order the loop ran them
        plain_xs = [without_graph(x) for x in xs]
        size = every or len(steps)
        for start in reversed(range(0, len(steps), size)):
            chunk_end = min(start + size, len(steps))
            chunk_carries = self._chunk_carries(carries, steps, start, chunk_end, plain_xs)
            for k in range(chunk_end - 1, start - 1, -1):
                t = steps[k]
                carry_v = [_fresh(from_array(a)) for a in chunk_carries[k - start]]
                x_v = [_fresh(x) for x in self._slices(plain_xs, t)] if xs else []
                with enable_grad():
                    new_carry, ys = self.step(carry_v, x_v if xs else None)
                roots, cts = [], []
                for o, g in zip(new_carry, g_carry):
                    roots.append(o)
                    cts.append(g)
                for y, g in zip(ys, g_ys):
                    if g is not None:
                        roots.append(y)
                        cts.append(_index_axis(g, 0, t))
                pairs = [(r, c) for r, c in zip(roots, cts) if r.requires_grad]
                if not pairs:
                    g_carry = [zeros_like(c) for c in g_carry]
                    continue
                res = run_backward([r for r, _ in pairs], [c for _, c in pairs],
                                   carry_v + x_v + closure)
                g_carry = [r if r is not None else zeros_like(c)
                           for r, c in zip(res[:n_carry], carry_v)]
                for i, r in enumerate(res[n_carry:n_carry + len(x_v)]):
                    g_xs[i][t] = r
                for i, r in enumerate(res[n_carry + len(x_v):]):
                    if r is not None:
                        g_closure[i] = r if g_closure[i] is None else g_closure[i] + r
        out = list(g_carry)
        for i, x in enumerate(xs):
            parts = [g if g is not None else from_array(B.ns(x.data).zeros(x.shape[1:], x.dtype))
                     for g in g_xs[i]]
            batched = any(p._batch is not None or p.requires_grad for p in parts)
            out.append(_stack(parts) if batched else _stack_plain(parts))   # inside vmap
        return out + g_closure

    def _chunk_carries(self, carries, steps, start, end, plain_xs):
        """The carries before steps ``start..end-1``, recomputing those not kept."""
        if all(carries[k] is not None for k in range(start, end)):
            return [carries[k] for k in range(start, end)]
        carry = [from_array(a) for a in carries[start]]
        out = []
        with no_grad():
            for k in range(start, end):
                out.append([c.data for c in carry])
                carry, _ = self.step(carry, self._slices(plain_xs, steps[k]))
        return out


def _fresh(t: Tensor) -> Tensor:
    """A new leaf over ``t``'s values, to differentiate one step with respect to."""
    v = from_array(t.data)
    if t.dtype.kind == "f":
        v.requires_grad = True
    return v


def _placeholder_step(x: Tensor) -> Tensor:
    """Zeros shaped like one step of ``x`` (its per-example shape under ``vmap``)."""
    inner = x
    while inner._batch is not None:
        inner = inner._batch[1]
    return from_array(B.ns(inner.data).zeros(tuple(x.shape[1:]), dtype=x.dtype))


def _empty_stack(y: Tensor) -> Tensor:
    """``(0,) + y.shape``, through primitives so that batch axes and tangents follow."""
    one = apply(RESHAPE, (y,), {"shape": (1,) + tuple(y.shape)})
    return apply(BROADCAST_TO, (one,), {"shape": (0,) + tuple(y.shape)})


def _stack_arrays(arrays):
    return B.ns(arrays[0]).stack(arrays)


def _stack_plain(tensors):
    return from_array(_stack_arrays([t.data for t in tensors]))
