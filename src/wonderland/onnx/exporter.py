"""``export``: the program ``wl.jit`` records, written out as an ONNX graph.

The steps, from the call to the file:

1. **Trace.** The function (or module) runs once under ``wl.jit(fuse=False)`` with
   gradients off, in the mode its modules are in (a module in training mode whose dropout
   or batch norm would act differently there is refused before anything runs), and the
   recorded program is replayed here keeping every value, so the exporter knows the shape
   and dtype of each one (the trace itself keeps nothing). An argument whose values
   library code read on the host while tracing (a graph's ``edge_index``) holds for those
   values only: it becomes a constant of the graph, not an input.
2. **Dynamic axes.** For each named dynamic axis the function is traced again with that
   axis one longer (or shorter). The programs must have the same steps; every size that
   differs between them is fitted as ``coef × product of axis sizes`` and becomes a
   :class:`~wonderland.onnx.graph.Dim` (in shapes and in parameters such as reshape's
   target); a constant that differs is refused by name.
3. **Translate.** The steps the outputs depend on are translated one by one by the ONNX
   rule their primitive declares (``Primitive(..., onnx=rule)``; a ``record_call`` step's
   function may carry ``fn.onnx``). Steps that only check values (index ranges) compute
   nothing the outputs read and are left out. A step without a rule whose inputs are all
   constants is computed now and stored as a constant; any other step without a rule is an
   :class:`ExportError` naming it.
4. **Assemble.** Constants and parameters become initializers (parameters under their
   module names), arguments become graph inputs and the results graph outputs; nodes and
   initializers no output reads are dropped, and the model is checked with
   ``onnx.checker.check_model(full_check=True)`` and written atomically.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .. import backend as B
from .._version import __version__
from ..core.guards import Guards
from ..core.modes import no_grad
from ..core.primitive import ALL_PRIMITIVES
from ..core.pytree import flatten, unflatten
from ..core.tensor import Tensor
from ..core.tracing import jit
from ..io import atomic_write
from ..nn.layers import Dropout
from ..nn.module import Module
from ..nn.normalization import BatchNorm, ChannelDropout
from .graph import Dim, ExportError, ExportGraph, _onnx

DEFAULT_OPSET = 18
MIN_OPSET = 13


def export(module_or_function, example_args, path, opset=None, dynamic_axes=None, *,
           input_names=None, output_names=None):
    """Write the ONNX graph of ``module_or_function`` applied to ``example_args`` to
    ``path`` (``None``: only return it) and return the ``onnx.ModelProto``.

    ``example_args``: a tuple of arguments (a single tensor or array is taken as the only
    argument); their tensors are the graph's inputs, named ``input_0``, ``input_1``... or
    by ``input_names``, and the tensors of the result its outputs (``output_0``... or
    ``output_names``), both in pytree order. ``dynamic_axes``, as in ``torch.onnx``:
    ``{"input_0": {0: "batch"}}`` (or a list of axes) makes those axes free in the graph;
    an output's entry names its axes. ``opset``: the ONNX operator set (default 18, at
    least 13). Modules are traced in their current mode: one in training mode whose
    dropout or batch norm would act differently in training is refused (call ``.eval()``).
    """
    if not callable(module_or_function):
        raise TypeError(f"onnx.export: expected a module or a function, got "
                        f"{type(module_or_function).__name__}")
    onnx = _onnx()
    opset = _check_opset(onnx, opset)
    args = tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)
    _refuse_training(module_or_function, _watched_before(module_or_function))
    base = _Trace(module_or_function, args)
    _refuse_training(module_or_function, base.program.guards.watched.values())
    in_names = _names(input_names, len(base.arrays), "input", "input_names")
    out_names = _names(output_names, len(base.out_slots), "output", "output_names")
    if set(in_names) & set(out_names):
        raise ValueError(f"onnx.export: {sorted(set(in_names) & set(out_names))} name both "
                         f"an input and an output; ONNX values need distinct names")
    ins_axes, outs_axes = _parse_dynamic_axes(dynamic_axes, in_names, out_names, base)
    symbols = _symbols(ins_axes, in_names, base)
    probes = {s: _probe(module_or_function, args, base, s, places)
              for s, places in symbols.items()}
    sizes = {s: (places[0][2], probes[s].sizes[s]) for s, places in symbols.items()}
    facts = _Facts(base, probes, sizes)
    graph = ExportGraph(opset, {s: (in_names[symbols[s][0][0]], symbols[s][0][1])
                                for s in symbols})
    names = _translate(graph, base, facts, in_names, out_names, module_or_function)
    model = _assemble(onnx, graph, base, facts, names, in_names, out_names, outs_axes, opset)
    if path is not None:
        _save(model, os.fspath(path))
    return model


def _check_opset(onnx, opset):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or \
            not MIN_OPSET <= opset <= newest:
        raise ValueError(f"onnx.export: opset must be an int from {MIN_OPSET} to {newest} "
                         f"(the installed onnx package's newest), got {opset!r}")
    return int(opset)


def _names(given, n, prefix, what):
    if given is None:
        return [f"{prefix}_{i}" for i in range(n)]
    names = list(given)
    if len(names) != n or not all(isinstance(s, str) and s for s in names) or \
            len(set(names)) != n:
        raise ValueError(f"onnx.export: {what} must be {n} distinct non-empty strings (one "
                         f"per tensor {prefix}), got {given!r}")
    return names


# ----------------------------------------------------------------------------- modes
def _training_behaviour(m) -> str | None:
    """How module ``m`` would act differently in training mode, or ``None``."""
    if isinstance(m, BatchNorm):
        return "batch statistics and running-statistics updates"
    if isinstance(m, (Dropout, ChannelDropout)):
        return f"dropout p={m.p}" if m.p else None
    p = vars(m).get("dropout")
    if isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0:
        return f"dropout {p}"
    return None


def _watched_before(fn):
    """The modules ``fn`` reaches before it runs (itself, its closure and globals)."""
    if isinstance(fn, Module):
        return list(fn.modules())
    guards = Guards()
    guards.bind_environment(fn)
    return list(guards.watched.values())


def _refuse_training(fn, modules):
    found = []
    for m in modules:
        if isinstance(m, Module) and m.training:
            what = _training_behaviour(m)
            if what:
                found.append(f"{type(m).__name__} ({what})")
    if found:
        raise ExportError(
            f"onnx.export: {type(fn).__name__ if isinstance(fn, Module) else 'the function'} "
            f"runs layers in training mode that act differently there: "
            f"{', '.join(sorted(set(found)))}. Export traces the model as it is set; call "
            f"model.eval() first for an inference graph")


# ----------------------------------------------------------------------------- tracing
def _flat_layout(layout):
    if isinstance(layout, tuple):
        return [s for sub in layout for s in _flat_layout(sub)]
    return [layout]


def _assign(layout, value, env):
    if layout is None:
        return
    if isinstance(layout, int):
        env[layout] = value if B.is_array(value) else B.asarray(value)
        return
    for sub, v in zip(layout, value):
        _assign(sub, v, env)


class _Trace:
    """One traced program of ``fn`` on ``args`` and every value it computes."""

    def __init__(self, fn, args):
        self.args = args
        leaves, self.tree = flatten(args)
        self.leaves = [Tensor(a) if B.is_array(a) else a for a in leaves]
        self.arrays = [t.data for t in self.leaves if isinstance(t, Tensor)]
        traced = jit(fn, check=False, fuse=False)
        with no_grad():
            traced(*unflatten(self.tree, self.leaves))
        self.program = p = traced.last_program
        # arguments whose values library code read on the host (a graph's edge_index):
        # the program holds for those values only, so they are exported as constants
        self.read_positions = {position for position, _, _ in p.guards.values}
        self.out_slots = [s for s, static in zip(p.out_slots, p.out_static) if s is not None]
        if not self.out_slots:
            raise ExportError("onnx.export: the function returned no tensor")
        self.env = self._replay()

    def _replay(self):
        p = self.program
        env = {slot: (owner.data if isinstance(owner, Tensor) else owner)
               for slot, owner in p.consts.items()}
        env.update(zip(p.arg_slots, self.arrays))
        with no_grad():
            for fn, params, ins, layout in p.steps:
                _assign(layout, fn(*[env[s] for s in ins], **params), env)
        return env


def _probe(fn, args, base, symbol, places):
    """A trace with the dynamic axis ``symbol`` one longer (else one shorter)."""
    size = places[0][2]
    failure = None
    for new in (size + 1, size - 1):
        if new < 1:
            continue
        leaves, tree = flatten(args)
        tensors = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Tensor) or
                   B.is_array(leaf)]
        for index, axis, _ in places:
            at = tensors[index]
            leaves[at] = _resized(leaves[at], axis, new)
        try:
            probe = _Trace(fn, unflatten(tree, leaves))
        except Exception as exc:  # noqa: BLE001 - the other size may work
            failure = failure or exc
            continue
        probe.sizes = {symbol: new}
        return probe
    raise ExportError(f"onnx.export: the function fails when the dynamic axis {symbol!r} "
                      f"(size {size}) has size {size + 1} or {size - 1}: {failure}") from failure


def _resized(leaf, axis, n):
    a = leaf.data if isinstance(leaf, Tensor) else leaf
    xp = B.ns(a)
    if n <= a.shape[axis]:
        out = xp.take(a, xp.arange(n), axis=axis)
    else:
        extra = xp.take(a, xp.full(n - a.shape[axis], a.shape[axis] - 1), axis=axis)
        out = xp.concatenate([a, extra], axis=axis)
    return Tensor(out) if isinstance(leaf, Tensor) else out


# ----------------------------------------------------------------------------- dynamic axes
def _parse_dynamic_axes(dynamic_axes, in_names, out_names, base):
    """``({input index: {axis: symbol}}, {output index: {axis: symbol}})``."""
    ins, outs = {}, {}
    for name, axes in (dynamic_axes or {}).items():
        if name in in_names:
            index = in_names.index(name)
            ndim, table = base.arrays[index].ndim, ins
        elif name in out_names:
            index = out_names.index(name)
            ndim, table = base.env[base.out_slots[index]].ndim, outs
        else:
            raise ValueError(f"onnx.export: dynamic_axes names {name!r}, which is neither an "
                             f"input ({', '.join(in_names)}) nor an output "
                             f"({', '.join(out_names)})")
        if isinstance(axes, (list, tuple)):
            axes = {a: f"{name}_dynamic_axes_{k + 1}" for k, a in enumerate(axes)}
        if not isinstance(axes, dict):
            raise TypeError(f"onnx.export: dynamic_axes[{name!r}] must be a dict "
                            f"{{axis: name}} or a list of axes, got {type(axes).__name__}")
        table[index] = {}
        for axis, symbol in axes.items():
            if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
                raise ValueError(f"onnx.export: dynamic_axes[{name!r}] names axis {axis!r}; "
                                 f"{name} has {ndim} axes")
            if not isinstance(symbol, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", symbol):
                raise ValueError(f"onnx.export: the dynamic axis {axis} of {name!r} needs a "
                                 f"name made of letters, digits and _, got {symbol!r}")
            table[index][int(axis) % ndim] = symbol
    return ins, outs


def _symbols(ins_axes, in_names, base):
    """``{symbol: [(input index, axis, size)]}``; one size per symbol, at least 1."""
    found = {}
    for index, axes in ins_axes.items():
        if index in base.read_positions:
            raise ExportError(f"onnx.export: {in_names[index]} cannot have dynamic axes: the "
                              f"library read its values while tracing (a graph's "
                              f"edge_index, say), so the graph is exported for those values")
        for axis, symbol in axes.items():
            found.setdefault(symbol, []).append((index, axis, base.arrays[index].shape[axis]))
    for symbol, places in found.items():
        sizes = {n for _, _, n in places}
        if len(sizes) > 1:
            raise ValueError(f"onnx.export: the dynamic axis {symbol!r} has sizes "
                             f"{sorted(sizes)} in the example inputs; they must agree")
        if sizes == {0}:
            raise ValueError(f"onnx.export: the dynamic axis {symbol!r} has size 0 in the "
                             f"example; give an example with at least one element there")
    return found


# ----------------------------------------------------------------------------- symbolic sizes
def _same(a, b) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if B.is_array(a):
        return a.shape == b.shape and a.dtype == b.dtype and \
            bool(np.array_equal(B.to_numpy(a), B.to_numpy(b), equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, slice):
        return _same(a.start, b.start) and _same(a.stop, b.stop) and _same(a.step, b.step)
    if isinstance(a, float) and a != a:
        return b != b
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values differ
        return False


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class _Facts:
    """What the traces say about each value (its shape, with :class:`Dim` s) and each
    step's parameters (with ``Dim`` s where they follow a dynamic axis)."""

    def __init__(self, base, probes, sizes):
        self.sizes = sizes                      # symbol -> (example size, probe size)
        self.steps, self.live = _live(base.program, base.out_slots)
        for symbol, probe in probes.items():
            _check_structure(base, probe, symbol, sizes[symbol], self.live)
        self.dims = {}
        for slot in self.live | set(base.program.arg_slots):
            shape = base.env[slot].shape
            others = {s: probe.env[slot].shape for s, probe in probes.items()}
            for s, other in others.items():
                if len(other) != len(shape):
                    raise ExportError(f"onnx.export: a value of the program has {len(shape)} "
                                      f"axes, and {len(other)} when the dynamic axis {s!r} "
                                      f"changes size; export with that axis static")
            self.dims[slot] = tuple(self.fit(n, {s: shp[k] for s, shp in others.items()})
                                    for k, n in enumerate(shape))
        self.params = {}
        for i in self.steps:                    # the steps the outputs depend on
            params = base.program.steps[i][1]
            where = f"step {i} ({base.program.names[i]})"
            self.params[i] = {k: self.symbolic(v, {s: probe.program.steps[i][1][k]
                                                   for s, probe in probes.items()}, where, k)
                              for k, v in params.items()}

    def fit(self, v0, values):
        """``v0`` (an int of the example's trace) as ``coef × product of the axes it
        follows``, given its value in each probe trace."""
        varying = sorted(s for s, v in values.items() if v != v0)
        if not varying:
            return int(v0)
        base = int(np.prod([self.sizes[s][0] for s in varying]))
        if v0 % base == 0:
            k = int(v0) // base
            if all(values[s] == k * base // self.sizes[s][0] * self.sizes[s][1]
                   for s in varying):
                return Dim(k, varying)
        return Dim(None, varying)

    def symbolic(self, v0, values, where, key):
        if all(_same(v0, v) for v in values.values()):
            return v0
        if _is_int(v0) and all(_is_int(v) for v in values.values()):
            return self.fit(int(v0), {s: int(v) for s, v in values.items()})
        if isinstance(v0, (tuple, list)) and all(type(v) is type(v0) and len(v) == len(v0)
                                                 for v in values.values()):
            return type(v0)(self.symbolic(x, {s: v[i] for s, v in values.items()}, where, key)
                            for i, x in enumerate(v0))
        if isinstance(v0, slice) and all(isinstance(v, slice) for v in values.values()):
            return slice(*(self.symbolic(getattr(v0, f), {s: getattr(v, f) for s, v in
                                                          values.items()}, where, key)
                           for f in ("start", "stop", "step")))
        raise ExportError(f"onnx.export: the parameter {key!r} of {where} changes with the "
                          f"dynamic axes ({v0!r} in the example, "
                          f"{', '.join(f'{v!r} with {s} changed' for s, v in values.items())}) "
                          f"in a way the export cannot follow; export with those axes static")


def _check_structure(base, probe, symbol, sizes, live):
    a, b = base.program, probe.program
    why = None
    if len(a.steps) != len(b.steps) or a.arg_slots != b.arg_slots or \
            a.out_slots != b.out_slots or set(a.consts) != set(b.consts):
        why = f"{len(a.steps)} steps against {len(b.steps)}"
    else:
        for i, (sa, sb) in enumerate(zip(a.steps, b.steps)):
            if a.names[i] != b.names[i] or sa[2] != sb[2] or sa[3] != sb[3]:
                why = f"step {i} is {a.names[i]!r} in one and {b.names[i]!r} in the other"
                break
    if why:
        raise ExportError(f"onnx.export: the traced program changes when the dynamic axis "
                          f"{symbol!r} goes from {sizes[0]} to {sizes[1]} ({why}): the "
                          f"computation depends on that size, so it cannot be exported with "
                          f"that axis dynamic")
    for slot in a.consts:
        if slot not in live:
            continue
        x, y = base.env[slot], probe.env[slot]
        if not _same(x, y):
            readers = [f"step {i} ({a.names[i]})" for i, st in enumerate(a.steps) if slot in st[2]]
            raise ExportError(
                f"onnx.export: a constant of the program ({x.dtype}{list(x.shape)}, read by "
                f"{', '.join(readers[:3]) or 'the outputs'}) changes when the dynamic axis "
                f"{symbol!r} goes from {sizes[0]} to {sizes[1]} (shape {list(y.shape)} then): "
                f"it was made from that size outside the recorded operations (a mean's 1/n "
                f"over that axis, positions from arange), so the graph cannot follow it; "
                f"export with that axis static")


# ----------------------------------------------------------------------------- translation
def _live(program, out_slots):
    """The steps the outputs depend on (in order) and every slot they read or give."""
    live, steps = set(out_slots), []
    for i in range(len(program.steps) - 1, -1, -1):
        _, _, ins, layout = program.steps[i]
        if any(s is not None and s in live for s in _flat_layout(layout)):
            steps.append(i)
            live.update(ins)
    return steps[::-1], live


def _fixed(program, baked):
    """Slots computed from constants only (known at export time)."""
    fixed = set(program.consts) | set(baked)
    for _, _, ins, layout in program.steps:
        if ins and all(s in fixed for s in ins):
            fixed.update(s for s in _flat_layout(layout) if s is not None)
    return fixed


def _labels(fn, program):
    """Module names of the parameters and buffers among the constants."""
    modules = [fn] if isinstance(fn, Module) else \
        [m for m in program.guards.watched.values() if isinstance(m, Module)]
    by_id = {}
    for m in modules:
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            by_id.setdefault(id(t), name)
    return {slot: by_id[id(owner)] for slot, owner in program.consts.items()
            if id(owner) in by_id}


def _numpy(a):
    return np.asarray(B.to_numpy(a))


def _translate(graph, base, facts, in_names, out_names, fn):
    """Graph inputs, initializers and the nodes of every live step; returns the name of
    each slot."""
    p = base.program
    steps, live = facts.steps, facts.live
    baked = [slot for k, slot in enumerate(p.arg_slots) if k in base.read_positions]
    fixed = _fixed(p, baked)
    names = {}
    for name in out_names:
        graph.reserve(name)
    for k, (slot, name) in enumerate(zip(p.arg_slots, in_names)):
        if k in base.read_positions:
            if slot in live:
                names[slot] = graph.constant(_numpy(base.env[slot]), name=name)
        else:
            names[slot] = graph.reserve(name)
            graph.declare(name, facts.dims[slot], base.env[slot].dtype)
            graph.produced.add(name)
    labels = _labels(fn, p)
    for slot in sorted(p.consts):
        if slot in live and slot not in names:
            names[slot] = graph.constant(_numpy(base.env[slot]), name=labels.get(slot, "const"))
    made = {s for i in steps for s in _flat_layout(p.steps[i][3]) if s is not None}
    for slot, name in zip(base.out_slots, out_names):
        if slot in made and slot not in names:
            names[slot] = name
    for i in steps:
        _emit(graph, base, facts, i, names, live, fixed)
    return names


def _emit(graph, base, facts, i, names, live, fixed):
    p = base.program
    fn, _, ins, layout = p.steps[i]
    origin, label = p.origins[i], p.names[i]
    rule = getattr(origin, "onnx", None) if origin is not None else getattr(fn, "onnx", None)
    outs = [s if s is not None and s in live else None for s in _flat_layout(layout)]
    if rule is None:
        if ins and all(s in fixed for s in ins):       # constants only: computed now
            for s in outs:
                if s is not None:
                    names[s] = graph.constant(_numpy(base.env[s]), name=names.get(s, label))
            return
        raise ExportError(_no_rule(base, i, origin))
    for s in outs:
        if s is not None:
            if s not in names:
                names[s] = graph.fresh(label)
            a = base.env[s]
            graph.declare(names[s], facts.dims[s], a.dtype, _numpy(a) if s in fixed else None)
    graph.step = f"{label} (step {i})"
    in_names = [names[s] for s in ins]
    try:
        rule(graph, in_names, [None if s is None else names[s] for s in outs], **facts.params[i])
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"onnx.export: the ONNX rule of {label!r} (step {i}) failed on "
                          f"inputs {_describe(base, ins)} with parameters "
                          f"{facts.params[i]}: {type(exc).__name__}: {exc}") from exc
    missing = [names[s] for s in outs if s is not None and names[s] not in graph.produced]
    if missing:
        raise ExportError(f"onnx.export: the ONNX rule of {label!r} (step {i}) did not "
                          f"produce {', '.join(missing)}")


def _describe(base, slots):
    parts = []
    for s in slots:
        a = base.env.get(s)
        parts.append(f"{a.dtype}{list(a.shape)}" if B.is_array(a) else repr(a))
    return ", ".join(parts) or "none"


def supported_primitives() -> list:
    """The names of the primitives that declare an ONNX rule."""
    return sorted({prim.name for prim in list(ALL_PRIMITIVES) if prim.onnx is not None})


def _no_rule(base, i, origin):
    p = base.program
    label = p.names[i]
    what = f"the primitive {label!r}" if origin is not None else \
        f"the step {label!r} (recorded through record_call from " \
        f"{getattr(p.steps[i][0], '__module__', '?')}, not a primitive)"
    return (f"onnx.export: {what} (step {i}, inputs {_describe(base, p.steps[i][2])}) has no "
            f"ONNX export rule, so the program cannot be exported. Export supports these "
            f"primitives: {', '.join(supported_primitives())}; other steps export when they "
            f"read constants only (they are computed at export) or compute nothing the "
            f"outputs read (checks of index ranges)")


# ----------------------------------------------------------------------------- the model
def _value_dims(dims, names=None):
    out = []
    for axis, d in enumerate(dims):
        if names and axis in names:
            out.append(names[axis])
        elif isinstance(d, Dim):
            out.append(d.symbols[0] if d.coef == 1 and len(d.symbols) == 1 else None)
        else:
            out.append(int(d))
    return out


def _assemble(onnx, graph, base, facts, names, in_names, out_names, outs_axes, opset):
    h = onnx.helper
    p = base.program
    inputs = [h.make_tensor_value_info(name, graph.onnx_type(base.env[slot].dtype),
                                       _value_dims(facts.dims[slot]))
              for k, (slot, name) in enumerate(zip(p.arg_slots, in_names))
              if k not in base.read_positions]
    outputs = []
    for k, (slot, name) in enumerate(zip(base.out_slots, out_names)):
        if names.get(slot) != name:
            graph.step = f"output {name}"
            graph.node("Identity", [names[slot]], name)
        named = outs_axes.get(k, {})
        for axis in named:
            if not isinstance(facts.dims[slot][axis], Dim):
                raise ValueError(f"onnx.export: dynamic_axes names axis {axis} of {name}, "
                                 f"whose size ({facts.dims[slot][axis]}) does not follow any "
                                 f"dynamic input axis")
        outputs.append(h.make_tensor_value_info(name, graph.onnx_type(base.env[slot].dtype),
                                                _value_dims(facts.dims[slot], named)))
    graph.prune(out_names)
    proto = h.make_graph(graph.nodes, "wonderland", inputs, outputs, graph.initializers)
    opsets = [h.make_opsetid("", opset)]
    model = h.make_model(proto, opset_imports=opsets, producer_name="wonderland",
                         producer_version=__version__)
    model.ir_version = max(h.find_min_ir_version_for(opsets, ignore_unknown=True), 8)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.export: the exported graph does not pass onnx.checker: "
                          f"{exc}") from exc
    return model


def _save(model, path):
    data = model.SerializeToString()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)
