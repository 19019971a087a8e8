"""Primitives, graph nodes and ``apply``: the single place where every operation runs.

A :class:`Primitive` is the unit of differentiation: a ``forward`` function on backend
arrays and rules written with Tensor operations (so the rules differentiate again):

* ``vjp``: one rule per input, ``rule(g, out, *inputs, **params) -> cotangent``; or
  ``vjp_all(g, out, inputs, needs, **params) -> [cotangent or None, ...]`` when the
  inputs' cotangents share work. Rules may return a cotangent of the broadcast shape;
  the engine sums it back to the input's shape. With ``multiple_results`` the rule is
  ``vjp_all(gs, outs, inputs, needs, **params)`` with ``None`` for a zero cotangent.
* ``jvp``: one contribution per input, ``rule(t, out, *inputs, **params)``, summed;
  or ``jvp_all(tangents, out, inputs, **params)`` with ``None`` for zero tangents; or
  ``linear=True``, in which case the tangent is the primitive applied to the tangents.
* ``vjp_kernel``: a fast first-order VJP, ``kernel(g, out, inputs, needs, **params)``
  (``gs``/``outs`` with ``multiple_results``) returning the inputs' cotangents, or
  ``NotImplemented`` to leave it to the rules. It may use residuals as they are and call
  compiled kernels on arrays (through ``record_call``): the engine chooses it when the
  backward pass is not itself recorded and no ``jvp``/``vmap`` level is active, and the
  composite rules above (which must hold at every order) otherwise.
* ``save``: what the VJP rules read, declared so the graph keeps nothing else — input
  positions and/or ``"out"`` (``("out",)`` for ``exp``, ``()`` for a sum, ``"inputs"``
  for all of them), or per input, ``{0: (1,), 1: (0,)}`` for a product: the rule for
  input 0 reads input 1 and vice versa, and a node keeps only what the rules of the
  inputs that require grad read (``x * 2.0`` keeps nothing of ``x``). Inputs not saved reach the rules as
  :class:`Meta` stand-ins with
  only ``shape``, ``dtype``, ``ndim`` and ``size``. ``residuals=fn(out, *inputs,
  **params)`` computes extra arrays at record time (ReLU's boolean mask) that reach the
  VJP rules as the keyword ``res``; with ``residuals=True`` the forward itself returns
  ``(out, residuals)`` (statistics it computes anyway). Residuals are constants: a rule
  that must also hold at higher orders recomputes them from saved inputs when recording
  is on. The default, ``save=None``, keeps every input and the output.
* ``view``: the forward returns a view of its first input's memory (reshape,
  transpose...), so the result shares that input's version counter.
* ``batch``: the ``vmap`` rule (see ``vmap.py``).
* ``scalar``: how one element is computed, for ``jit``'s fusion of elementwise chains
  (``"{0} + {1}"``, or ``(template, cast)``; see ``fusion.scalar_form``).
* ``onnx``: its ONNX export rule, ``rule(graph, inputs, outputs, **params)`` adding the
  nodes that compute ``outputs`` from ``inputs`` (names) to an export graph
  (``wonderland.onnx``); a primitive without one cannot be exported.

``apply(prim, inputs, params)`` runs the forward, records a :class:`Node` when an input
requires grad, and, under active transformation levels (``jvp``, ``vmap``), peels off
the innermost level, recurses on what is below it and applies that level's rule.
"""

from __future__ import annotations

import traceback
import weakref

from .. import backend as B
from .fusion import scalar_form
from .modes import get_state
from .tensor import Meta, Tensor, from_array, share, version_counter

NO_PARAMS: dict = {}  # shared empty parameter dict; never mutated
ALL_PRIMITIVES: "weakref.WeakSet[Primitive]" = weakref.WeakSet()  # for the profiler


class Primitive:
    """A differentiable operation: forward on arrays, VJP and JVP rules on tensors."""

    __slots__ = ("name", "forward", "vjp", "vjp_all", "vjp_kernel", "jvp", "jvp_all", "linear",
                 "differentiable", "multiple_results", "save", "residuals", "view", "batch",
                 "scalar", "onnx", "_saves", "__weakref__")

    def __init__(self, name, forward, *, vjp=None, vjp_all=None, vjp_kernel=None, jvp=None,
                 jvp_all=None, linear=False, differentiable=True, multiple_results=False,
                 save=None, residuals=None, view=False, batch=None, scalar=None, onnx=None):
        self.name = name
        self.forward = forward
        self.vjp = (vjp,) if callable(vjp) else vjp
        self.vjp_all = vjp_all
        self.vjp_kernel = vjp_kernel
        self.jvp = (jvp,) if callable(jvp) else jvp
        self.jvp_all = jvp_all
        self.linear = linear
        self.differentiable = differentiable
        self.multiple_results = multiple_results
        self.residuals = residuals
        self.view = view
        self.batch = batch
        self.scalar = None if scalar is None else \
            scalar_form(*(scalar if isinstance(scalar, tuple) else (scalar,)))
        self.onnx = onnx
        self.save = _parse_save(name, save)
        self._saves = {}                # per pattern of inputs requiring grad
        ALL_PRIMITIVES.add(self)
        if differentiable and vjp is None and vjp_all is None:
            raise ValueError(f"primitive {name}: a differentiable primitive needs a vjp rule")
        if differentiable and not (linear or jvp is not None or jvp_all is not None):
            raise ValueError(f"primitive {name}: a differentiable primitive needs a jvp rule")

    def __call__(self, *inputs, **params):
        return apply(self, inputs, params)

    def saves(self, flags: tuple):
        """``(mask, out)``: which inputs a node keeps (a tuple of bools, or ``None``) and
        whether it keeps the output, given which inputs require grad (``flags``)."""
        found = self._saves.get(flags)
        if found is None:
            found = self._saves[flags] = _resolve_save(self.save, flags)
        return found

    def __repr__(self):
        return f"<primitive {self.name}>"


def _parse_save(name, save):
    """Normalise a ``save`` declaration to ``{input position or "*": (entries)}``: what the
    rule for each input reads ("*": the rules of every input). Entries are input
    positions, ``slice(k, None)`` (input k and after) or ``"out"``."""
    if save is None:
        return {"*": (slice(0, None), "out")}
    if save == "inputs":
        return {"*": (slice(0, None),)}
    if isinstance(save, dict):
        spec = {k: tuple(v) for k, v in save.items()}
    else:
        spec = {"*": tuple(save)}
    for entries in spec.values():
        bad = [e for e in entries if e != "out" and not isinstance(e, (int, slice))]
        if bad:
            raise ValueError(f"primitive {name}: save entries are input positions, "
                             f"slice(k, None) for 'inputs k and after', or 'out'; got {bad}")
    return spec


def _resolve_save(spec, flags):
    n = len(flags)
    wanted = list(spec.get("*", ()))
    for i, needs_grad in enumerate(flags):
        if needs_grad:
            wanted += spec.get(i, ())
    mask = [False] * n
    for e in wanted:
        if isinstance(e, slice):
            for i in range(e.start or 0, n):
                mask[i] = True
        elif e != "out" and e < n:
            mask[e] = True
    return (tuple(mask) if any(mask) else None), "out" in wanted


_FREED = ("freed",)


class Node:
    """One recorded application: the primitive, its parameters, where each input's
    cotangent goes (``edges``), and only the values its VJP rules need.

    ``edges[i]`` is ``None`` (input ``i`` needs no gradient), a leaf tensor requiring
    grad, or ``(node, index)`` for an input produced by another recorded application.
    """

    __slots__ = ("prim", "params", "edges", "shapes", "dtypes", "saved", "out", "res",
                 "n_out", "origin", "__weakref__")

    @property
    def name(self) -> str:
        return self.prim.name

    @property
    def freed(self) -> bool:
        return self.saved is _FREED

    def release(self) -> None:
        """Drop the saved values (after the backward pass has used them). A node that
        saved nothing stays usable, as in PyTorch."""
        if self.saved or self.out is not None or self.res:
            self.saved = _FREED
            self.out = None
            self.res = None

    def saved_arrays(self, leaves=True):
        """The arrays this node keeps alive (for memory accounting); with
        ``leaves=False``, not those of leaf tensors (inputs and parameters, which the
        caller holds anyway)."""
        if self.saved is _FREED:
            return []
        arrays = [s[1] for s in self.saved
                  if s is not None and (leaves or s[0]._node is not None)] if self.saved else []
        outs = self.out if isinstance(self.out, tuple) else (self.out,)
        arrays += [o.data if isinstance(o, Tensor) else o for o in outs if o is not None]
        arrays += list(self.res or ())
        return arrays

    def __repr__(self):
        return f"<node {self.prim.name}{' (freed)' if self.saved is _FREED else ''}>"


def describe(tensors) -> str:
    """``float32[3, 4], int64[5]``: how error messages show a list of inputs."""
    return ", ".join(f"{t.dtype}[{', '.join(map(str, t.shape))}]" for t in tensors)


_PLAIN_ERRORS = (ValueError, TypeError, IndexError)
_get_state = get_state
_ndarray = B.ndarray
_new_tensor = object.__new__


def apply(prim: Primitive, inputs: tuple, params: dict = NO_PARAMS):
    """Evaluate ``prim`` on ``inputs`` (a tuple of Tensors) under the active transforms."""
    st = _get_state()
    if st.levels:
        level = _top_level(inputs, st.levels)
        if level:
            return _apply_at_level(prim, inputs, params, level)
    try:
        n = len(inputs)
        if st.trace is not None:                   # jit is recording this function
            data = st.trace.record(prim.forward, [x.data for x in inputs], params, inputs,
                                   prim.name, prim)
        elif n == 2:
            data = prim.forward(inputs[0].data, inputs[1].data, **params)
        elif n == 1:
            data = prim.forward(inputs[0].data, **params)
        else:
            data = prim.forward(*[x.data for x in inputs], **params)
    except _PLAIN_ERRORS as exc:
        # inputs on two devices: say so (CuPy's own message names neither device)
        B.check_same_device(prim.name, inputs)
        if type(exc) not in _PLAIN_ERRORS or str(exc).startswith(prim.name + ":"):
            raise
        raise type(exc)(f"{prim.name}: {exc} (inputs: {describe(inputs)})") from exc
    residuals = None
    if prim.residuals is True:
        data, residuals = data
    if prim.multiple_results:
        outs = tuple(from_array(_as_array(d, inputs)) for d in data)
        record = st.grad_enabled and prim.differentiable and any(x.requires_grad for x in inputs)
        if record:
            _record(prim, inputs, params, outs, st, residuals)
        if st.anomaly:
            for o in outs:
                _check_forward(prim, inputs, o)
        return outs
    if type(data) is not _ndarray:
        data = _as_array(data, inputs)
    out = _new_tensor(Tensor)
    out.data = data
    out.grad = out._node = out._tangents = out._batch = out._vc = None
    out._index = 0
    out.requires_grad = False
    if prim.view:
        out._vc = version_counter(inputs[0])
    if st.grad_enabled and prim.differentiable:
        for x in inputs:
            if x.requires_grad:
                if data.dtype.kind == "f":
                    _record(prim, inputs, params, (out,), st, residuals)
                break
    if st.anomaly:
        _check_forward(prim, inputs, out)
    return out


def _as_array(data, inputs):
    """A forward's result as an array of its inputs' backend (NumPy scalars included)."""
    if B.is_array(data):
        return data
    like = inputs[0].data if inputs else None
    return B.asarray(data, like=like)


def _record(prim, inputs, params, outs, st, residuals=None):
    """Make the graph node for one application and point the outputs to it."""
    node = _new_node(Node)
    node.prim = prim
    node.params = params
    n = len(inputs)
    if n == 2:                                             # the common cases, unrolled
        x, y = inputs
        xd, yd = x.data, y.data
        xg, yg = x.requires_grad, y.requires_grad
        mask, keep_out = prim.saves((xg, yg))
        node.edges = ((None if not xg else x if x._node is None else (x._node, x._index)),
                      (None if not yg else y if y._node is None else (y._node, y._index)))
        node.shapes = (xd.shape, yd.shape)
        node.dtypes = (xd.dtype, yd.dtype)
        if mask is None:
            node.saved = None
        else:
            xv, yv = x._vc, y._vc
            node.saved = ((x, xd, 0 if xv is None else xv[0]) if mask[0] else None,
                          (y, yd, 0 if yv is None else yv[0]) if mask[1] else None)
    else:
        mask, keep_out = prim.saves(tuple([x.requires_grad for x in inputs]))
        node.edges = tuple([_edge(x) for x in inputs])
        node.shapes = tuple([x.data.shape for x in inputs])
        node.dtypes = tuple([x.data.dtype for x in inputs])
        node.saved = None if mask is None else \
            tuple([_save(x) if m else None for x, m in zip(inputs, mask)])
    if prim.multiple_results:
        node.n_out = len(outs)
        node.out = tuple(o if st.levels else o.data for o in outs) if keep_out else None
    else:
        node.n_out = 0                                      # a single result
        # Under active jvp/vmap levels the output object itself is kept: its tangents
        # (attached right after) are needed when the backward runs inside those levels.
        node.out = (outs[0] if st.levels else outs[0].data) if keep_out else None
    node.res = residuals
    if prim.residuals is not None and residuals is None:
        args = [outs[0].data] + [x.data for x in inputs]
        node.res = tuple(prim.residuals(*args, **params) if st.trace is None
                         else st.trace.record(prim.residuals, args, params,
                                              name=prim.name + " residuals"))
    node.origin = traceback.extract_stack(limit=14)[:-3] if st.anomaly else None
    if st.capture is not None:
        st.capture.note(node, inputs)
    i = 0
    for o in outs:
        if o.data.dtype.kind == "f":
            o.requires_grad = True
            o._node = node
            o._index = i
        i += 1
    return node


def _edge(x: Tensor):
    if not x.requires_grad:
        return None
    node = x._node
    return x if node is None else (node, x._index)


_new_node = object.__new__


def _save(x: Tensor):
    vc = x._vc
    return (x, x.data, 0 if vc is None else vc[0])


def _top_level(inputs, active) -> int:
    """The innermost active level (jvp or vmap) any input takes part in (0 when none)."""
    top = 0
    for x in inputs:
        tangents = x._tangents
        if tangents:
            for level in tangents:
                if level > top and level in active:
                    top = level
        batch = x._batch
        if batch is not None and batch[0] > top and batch[0] in active:
            top = batch[0]
    return top


# The transformations that interpret primitives at their levels (``vmap``, ``jvp``), in
# the order they are asked: each registers ``(claims, process)`` when its module loads;
# ``claims(x, level)`` says whether input ``x`` takes part in the transformation at
# ``level``, ``process(prim, inputs, params, level)`` applies ``prim`` there.
INTERPRETERS: list = []


def register_interpreter(claims, process) -> None:
    """Add a transformation to the dispatch of :func:`apply` (see ``INTERPRETERS``)."""
    INTERPRETERS.append((claims, process))


def _apply_at_level(prim, inputs, params, level):
    for claims, process in INTERPRETERS:
        for x in inputs:
            if claims(x, level):
                return process(prim, inputs, params, level)
    raise RuntimeError(f"{prim.name}: no transformation claims level {level}")


IDENTITY = Primitive("identity", lambda x: x, vjp=lambda g, out, x: g, linear=True,
                     save=(), view=True)


def alias(t: Tensor) -> Tensor:
    """A new tensor object standing for ``t``: same values, version counter and batching,
    no tangents. Gradients reaching it flow to ``t`` — through ``t``'s own node, or an
    identity node when ``t`` is a leaf (leaves are known by identity)."""
    y = from_array(t.data)
    y._vc = version_counter(t)
    y._batch = t._batch
    if t.requires_grad:
        st = get_state()
        if t._batch is not None:
            y.requires_grad = True
        elif st.grad_enabled:
            if t._node is not None:
                y.requires_grad, y._node, y._index = True, t._node, t._index
            else:
                _record(IDENTITY, (t,), NO_PARAMS, (y,), st)
    return y


# ----------------------------------------------------------------------------- backward side
def _check_forward(prim, inputs, out):
    data = out.data
    if out._batch is not None or data.dtype.kind != "f":
        return
    xp = B.ns(data)
    if not xp.isfinite(data).all():
        bad = "nan" if xp.isnan(data).any() else "inf"
        inputs_finite = all(not B.is_array(x.data) or x.data.dtype.kind != "f"
                            or xp.isfinite(x.data).all() for x in inputs)
        source = "from finite inputs" if inputs_finite else "(its inputs already held nan/inf)"
        raise FloatingPointError(
            f"detect_anomaly: the forward of '{prim.name}' produced {bad} {source}; "
            f"inputs: {describe(inputs)}\n{_where()}")


def _where() -> str:
    frames = traceback.extract_stack(limit=14)[:-4]
    return "created at:\n" + "".join(traceback.format_list(frames[-6:]))


__all__ = ["Primitive", "Node", "Meta", "apply", "alias", "describe", "register_interpreter",
           "NO_PARAMS", "share"]
