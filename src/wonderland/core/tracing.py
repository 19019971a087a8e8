"""``wl.jit``: run a function once to record its array computations, then replay them.

::

    @wl.jit
    def loss_and_grads(params, x, y):
        return wl.value_and_grad(lambda p: loss_fn(wl.nn.functional_call(model, p, x), y))(params)

    params = dict(model.named_parameters())
    loss, grads = loss_and_grads(params, x, y)      # first call: traced (and computed)
    loss, grads = loss_and_grads(params, x2, y2)    # same shapes and dtypes: replayed
    for name, p in params.items():                  # then any optimiser, as usual
        p.grad = grads[name]
    opt.step()

**Tracing.** The first call with a given *signature* (the structure of the arguments,
each tensor's shape and dtype, the values of non-tensor arguments) runs the function
eagerly with a recorder switched on. Every array computation of the library goes
through one place — a primitive's ``forward`` (the backward pass too, whose rules are
made of primitives), or :func:`record_call` for the few fused kernels that backward
rules call directly — and the recorder notes each one: the function, its parameters,
which earlier values it read and which it produced. Values are told apart by the
identity of their arrays. An array read that no recorded step produced and that is not
an argument is a *constant*: a tensor the function closes over, or an array made from
shapes alone (a mask of ones, an index range). Constants are read at every replay
through the tensor that held them, so in-place updates (an optimiser step, ``copy_``,
``load_state_dict``) are seen without tracing again.

**Guards.** A program holds only while what the trace assumed besides its arguments'
shapes still holds (:mod:`wonderland.core.guards`): what the closure cells and the
globals the code names hold (a rebound ``w = new_tensor`` or ``scale = 5.0``), the
mode, parameters, buffers and plain attributes of every module that ran, the device,
dtype and shape of each constant tensor, the default backend, whether gradients are
recorded, and the values of argument tensors that library code read on the host
outside the recorded steps (a graph's ``edge_index`` made into a sparse structure,
segment ids counted to size a result, lengths). Before each replay the guards are
checked (a few microseconds: one counter for all the modules, one comparison per
binding and constant); when one fails the function is traced again
(``WONDERLAND_JIT_VERBOSE=1`` prints why, ``retrace_reasons`` keeps it) and up to
eight programs per signature are kept. An integer or boolean argument that no recorded
step reads is guarded by its values too.

**Replay.** A later call with the same signature runs the recorded steps in order on
the new arguments' arrays: no tensors, no graph nodes, no checks or dispatch, and each
intermediate array dropped right after its last use. Results are those of eager
execution on the same inputs, step for step the same operations (the tests compare
the MLP, CNN and transformer-block gradients). The results are plain tensors without a
graph: differentiate *inside* the jitted function (``wl.grad``, ``value_and_grad``).

The first replay of each program is also run eagerly and compared (``check=True``),
which catches a value user code computed outside the recorded steps (from ``.data``
or NumPy directly).

Random draws (dropout's masks, ``wl.random.*``) are recorded steps too: every replay
draws new numbers from the same generator, as running the function again would.

**What cannot be traced raises** :class:`JitError` during tracing, instead of being
baked into the program silently: reading a traced value in Python (``.item()``,
``bool``, ``.numpy()``, ``float()``...: data-dependent control flow), library code that
needs the values of a tensor computed *inside* the function on the host (to size a
result: pass such a tensor as an argument, or pass the size), and side effects
(``copy_``, ``.backward()`` filling ``.grad``, a ``KVCache`` update). Library code
reads values on the host only through :func:`read_values`, and checks of values
(indices in range, probabilities in [0, 1]) and in-place updates of state (batch norm's
running statistics and batch count) are recorded steps, made again at every replay.

**Fusion.** Chains of elementwise steps (layer norm's backward, dropout's scaling
and the residual sum after it, attention's masking) run as one compiled loop each,
computed in the traced dtypes operation by operation (:mod:`wonderland.core.fusion`;
``fuse=False`` turns it off). Buffers are not planned by the program: the allocator
keeps freed memory in the process (``backend/memory.py``), so a step's new array reuses
the block an earlier one freed, and writing into a preallocated buffer measured no faster.
"""

from __future__ import annotations

import functools

import os
import sys

from .. import backend as B
from . import fusion, rng
from .guards import Guards
from .modes import get_state, switched
from .pytree import flatten, unflatten
from .tensor import Tensor, from_array

__all__ = ["jit", "JitError", "Program", "note_constant", "note_module", "read_values",
           "record_call", "refuse_if_traced", "refuse_while_tracing"]


PROFILE = [None]      # the active wl.profile(), which also times replayed steps


class JitError(RuntimeError):
    """A function that ``jit`` cannot record faithfully."""


# ----------------------------------------------------------------------------- recording
class _Recorder:
    """Notes every array computation while a function runs once."""

    def __init__(self):
        self.slot_of = {}          # id(array) -> slot number
        self.keep = []             # every array seen (so that ids stay unique meanwhile)
        self.consts = {}           # slot -> tensor (or array) read at each replay
        self.produced = set()      # slots computed by steps or given as arguments
        self.steps = []            # (function, params, input slots, output layout)
        self.names = []            # what each step computes (the primitive's name)
        self.origins = []          # each step's primitive (None for a record_call step)
        self.depth = 0             # > 0 inside a recorded function (not recorded again)
        self.positions = {}        # argument slot -> its position among the arguments
        self.guards = Guards()     # what the program assumes besides its arguments
        self.read_copies = {}      # argument slot -> copy of the values library code read

    def _new(self, array):
        slot = len(self.keep)
        self.keep.append(array)
        self.slot_of[id(array)] = slot
        return slot

    def argument(self, array):
        slot = self._new(array)
        self.produced.add(slot)
        self.positions[slot] = len(self.positions)
        return slot

    def _input(self, array, tensor):
        slot = self.slot_of.get(id(array))
        if slot is None:
            if self._views_traced(array):
                raise JitError(
                    f"jit: an operation read a NumPy view of a traced value (shape "
                    f"{getattr(array, 'shape', '?')}), made outside the library's operations "
                    f"(t.data.reshape(...), t.data[...], np.asarray(t).T): it would be "
                    f"replayed as a constant. Use tensor operations (t.reshape, t[...])")
            slot = self._new(array)
            self.consts[slot] = tensor if tensor is not None else array
            if tensor is not None and tensor.data is array:
                self.guards.constant(tensor)
        return slot

    def _outputs(self, value, like):
        """Give every array of a result (nested tuples allowed) a slot; numbers become
        arrays so that the same objects flow on."""
        if isinstance(value, (tuple, list)):
            pairs = [self._outputs(v, like) for v in value]
            return type(value)(p[0] for p in pairs), tuple(p[1] for p in pairs)
        if value is None:                            # an output not computed
            return None, None
        if id(value) in self.slot_of:                # handed through, not computed:
            return value, None                       # it keeps the slot it has
        if not B.is_array(value):
            value = B.asarray(value, like=like)
        slot = self._new(value)
        self.produced.add(slot)
        return value, slot

    def record(self, fn, arrays, params, tensors=None, name=None, origin=None):
        """Call ``fn(*arrays, **params)`` and note it as one step (``name``: what
        ``wl.profile`` calls it, the function's name by default; ``origin``: the primitive
        whose forward ``fn`` is, which fusion and export read their rules from)."""
        if self.depth:
            return fn(*arrays, **params)
        ins = tuple(self._input(a, None if tensors is None else tensors[i])
                    for i, a in enumerate(arrays))
        self.depth += 1
        try:
            value = fn(*arrays, **params)
        finally:
            self.depth -= 1
        handed_through = value is not None
        value, layout = self._outputs(value, arrays[0] if arrays else None)
        # a step that only hands values through computes nothing (one that returns None
        # is kept: it updates something in place, batch norm's running statistics)
        if not (handed_through and _all_none(layout)):
            self.steps.append((getattr(fn, "__wrapped__", fn), params, ins, layout))
            self.names.append(name or getattr(fn, "__name__", "step"))
            self.origins.append(origin)
        return value

    def _views_traced(self, array) -> bool:
        base = getattr(array, "base", None)
        while base is not None:
            if self.is_traced(base):
                return True
            base = getattr(base, "base", None)
        return False

    def is_traced(self, array) -> bool:
        slot = self.slot_of.get(id(array))
        return slot is not None and slot in self.produced

    def refuse(self, tensor, what: str) -> None:
        """Raise :class:`JitError` if ``tensor`` holds a traced value (``what`` reads it)."""
        if self.is_traced(tensor.data):
            raise JitError(
                f"jit: {what} reads the value of a traced tensor (shape "
                f"{tuple(tensor.shape)}, {tensor.dtype}); the function runs once to record "
                f"its operations, so Python code that depends on values (an if, a loop "
                f"bound, a printed number) cannot be replayed. Use tensor operations "
                f"(wl.where, masks) or move it out of the jitted function")

    @staticmethod
    def refuse_side_effect(what: str) -> None:
        raise JitError(f"jit: {what} cannot be recorded by a traced function")

    def read_values(self, tensor, what: str):
        """The values of ``tensor`` for library code that reads them outside the recorded
        steps: an argument's values (or a closed-over tensor's version) become a guard of
        the program, and a copy is returned so that nothing derived from it is mistaken
        for a traced value; a value computed inside the function cannot be guarded."""
        array = tensor.data
        slot = self.slot_of.get(id(array))
        if slot is not None and slot in self.positions:
            copy = self.read_copies.get(slot)
            if copy is None:
                copy = self.read_copies[slot] = array.copy()
                self.guards.value(self.positions[slot], copy, what)
            return copy
        if (slot is not None and slot in self.produced) or self._views_traced(array):
            raise JitError(
                f"jit: {what} reads the values of a tensor computed inside the jitted "
                f"function ({tensor.dtype}{list(tensor.shape)}) outside the recorded steps, "
                f"so its result could not follow new values at a replay. Pass that tensor "
                f"as an argument of the jitted function (its values are then checked "
                f"before each replay), or compute it outside")
        self.guards.version(tensor, what)
        return array


def read_values(x, what: str):
    """The array of values behind ``x`` (a tensor, or anything array-like, returned as
    it is) for library code that reads them on the host outside a primitive: to build a
    sparse structure, count segments, check indices. Under a tracing ``jit`` the
    program then holds only for these values (a guard compares them before each replay,
    and a change traces again); ``what`` names the operation in messages."""
    if not isinstance(x, Tensor):
        return x
    trace = get_state().trace
    if trace is None:
        return x.data
    return trace.read_values(x, what)


def note_module(obj) -> None:
    """Called by an object whose state a traced function depends on when it runs (a
    module): its state is guarded (see :mod:`wonderland.core.guards`)."""
    trace = get_state().trace
    if trace is not None:
        trace.guards.watch(obj)


def note_constant(array) -> None:
    """Tell a tracing ``jit`` that ``array`` is a constant of the program (a zero
    gradient made for an input the function does not reach), so that outputs handed on
    from it are known as constants (``Program.constant_outputs``)."""
    trace = get_state().trace
    if trace is not None:
        trace._input(array, None)


def record_call(fn, *arrays, **params):
    """``fn(*arrays, **params)``, recorded as one step when ``jit`` is tracing: code that
    computes arrays outside a primitive (a fused kernel of a backward rule, a check of
    index values, an in-place update of running statistics) calls it through this, so
    that every replay does it again. An argument may be a tensor, which ``fn`` receives
    as its array: the program then reads that tensor's current array at each replay."""
    trace = get_state().trace
    if trace is None:
        return fn(*[a.data if isinstance(a, Tensor) else a for a in arrays], **params)
    tensors = [a if isinstance(a, Tensor) else None for a in arrays]
    return trace.record(fn, [a.data if isinstance(a, Tensor) else a for a in arrays], params,
                        tensors)


def refuse_if_traced(tensor, what: str) -> None:
    """Raise :class:`JitError` if ``tensor`` holds a traced value (``what`` reads it)."""
    trace = get_state().trace
    if trace is not None:
        trace.refuse(tensor, what)


def refuse_while_tracing(what: str) -> None:
    """Raise :class:`JitError` when ``jit`` is tracing: ``what`` cannot be replayed."""
    trace = get_state().trace
    if trace is not None:
        trace.refuse_side_effect(what)


# ----------------------------------------------------------------------------- the program
class Program:
    """The recorded steps of one signature, ready to run on new arguments (``jit``'s
    ``last_program``). Read-only attributes for callers: ``steps`` and ``names`` (what each
    step computes), ``origins`` (each step's primitive, while unfused), ``guards``,
    ``constant_outputs`` (per output leaf: whether it depends on no argument, e.g. the zero
    gradient of a parameter the function does not reach); ``len(program)`` counts steps."""

    def __init__(self, rec: _Recorder, arg_slots, out_slots, out_tree, out_static,
                 fuse=False):
        self.consts = rec.consts
        keep_to_end = set(out_slots) | set(rec.consts)
        self.steps, self.names = rec.steps, rec.names
        if fuse:
            forms = [getattr(o, "scalar", None) for o in rec.origins]
            self.steps, self.names = fusion.fuse(rec.steps, rec.names, forms, rec.keep,
                                                 keep_to_end)
        # each step's primitive, while the program is unfused (export reads their rules)
        self.origins = rec.origins if len(self.steps) == len(rec.origins) else None
        self.guards = rec.guards
        self.arg_slots = arg_slots
        self.out_slots = out_slots
        self.out_tree = out_tree
        self.out_static = out_static
        # per output leaf: whether it depends on no argument (a constant, e.g. the zero
        # gradient of a parameter the function does not reach)
        self.constant_outputs = tuple(slot is None or slot in rec.consts for slot in out_slots)
        self.checked = False
        self.n_slots = len(rec.keep)
        last = {}
        for i, (_, _, ins, _) in enumerate(self.steps):
            for s in ins:
                last[s] = i
        self.frees = [[] for _ in self.steps]
        for s, i in last.items():
            if s not in keep_to_end:
                self.frees[i].append(s)

    def snapshot_constants(self):
        """``(array, copy)`` of every writeable constant array (a replay's in-place
        updates can be undone with them)."""
        out = []
        for owner in self.consts.values():
            a = owner.data if isinstance(owner, Tensor) else owner
            if B.is_array(a) and getattr(a, "flags", None) is not None and a.flags.writeable:
                out.append((a, a.copy()))
        return out

    def run(self, arrays):
        env = [None] * self.n_slots
        for slot, owner in self.consts.items():
            env[slot] = owner.data if isinstance(owner, Tensor) else owner
        for slot, a in zip(self.arg_slots, arrays):
            env[slot] = a
        profile = PROFILE[0]
        for i, ((fn, params, ins, layout), frees) in enumerate(zip(self.steps, self.frees)):
            if profile is None:
                value = fn(*[env[s] for s in ins], **params)
            else:
                value = profile.time_step(self.names[i], fn, [env[s] for s in ins], params)
            _assign(layout, value, env)
            for s in frees:
                env[s] = None
        leaves = []
        for slot, static in zip(self.out_slots, self.out_static):
            leaves.append(static if slot is None else from_array(env[slot]))
        return unflatten(self.out_tree, leaves)

    def __len__(self):
        return len(self.steps)


def _guard_unread_indices(rec: _Recorder, out_slots) -> None:
    """An integer or boolean argument that no recorded step reads was either unused or
    read outside the recorded steps (library code building a structure from it that the
    program holds as constants): guard its values, so that new values trace again."""
    read = set(out_slots)
    for _, _, ins, _ in rec.steps:
        read.update(ins)
    guarded = {position for position, _, _ in rec.guards.values}
    for slot, position in rec.positions.items():
        array = rec.keep[slot]
        if slot not in read and position not in guarded and array.dtype.kind in "iub":
            rec.guards.value(position, array.copy(), "the function (outside its recorded steps)")


def _all_none(layout):
    if layout is None:
        return True
    return type(layout) is tuple and all(_all_none(sub) for sub in layout)


def _assign(layout, value, env):
    if layout is None:
        return
    if type(layout) is int:
        env[layout] = value if B.is_array(value) else B.asarray(value)
        return
    for sub, v in zip(layout, value):
        _assign(sub, v, env)


# ----------------------------------------------------------------------------- the transform
def _structure(td):
    return (td.kind, td.meta, tuple(_structure(c) for c in td.children))


def _signature(leaves, tree):
    key = []
    for leaf in leaves:
        if isinstance(leaf, Tensor):
            key.append(("tensor", leaf.shape, leaf.dtype.str, leaf.requires_grad,
                        B.backend_of(leaf.data).name))
        elif isinstance(leaf, slice):             # not hashable before Python 3.12
            key.append(("slice", leaf.start, leaf.stop, leaf.step))
        else:
            try:
                hash(leaf)
            except TypeError:
                raise TypeError(f"jit: arguments must be tensors, arrays or hashable values "
                                f"(numbers, strings, None), got {type(leaf).__name__}") from None
            key.append(("static", type(leaf), leaf))
    return (_structure(tree), tuple(key))


_PROGRAMS_PER_SIGNATURE = 8       # programs kept per signature (differing in guards)


def _verbose() -> bool:
    return os.environ.get("WONDERLAND_JIT_VERBOSE", "0") not in ("", "0")


class jit:
    """Trace ``fn`` once per signature and replay the recorded program (see the module).

    ``fn`` takes and returns pytrees (tuples, lists, dicts) of tensors; NumPy arrays among
    the arguments are taken as tensors. A program replays only while its guards hold
    (:mod:`wonderland.core.guards`: what the closure and globals hold, the modes and
    parameters of the modules that ran, the values of arguments that library code read
    on the host); otherwise ``fn`` is traced again, and up to eight programs per
    signature are kept. ``traces`` counts the traces so far and ``retrace_reasons``
    lists why each retrace happened (``WONDERLAND_JIT_VERBOSE=1`` also prints it);
    ``clear()`` forgets every program. With ``check=True`` (the default) the first
    replay of each program also runs ``fn`` eagerly and raises :class:`JitError` if the
    results differ. With ``fuse=True`` (the default where numba is installed) chains of
    elementwise steps run as one compiled loop each (:mod:`wonderland.core.fusion`). Use
    it as ``@wl.jit`` or ``wl.jit(fn, check=False, fuse=False)``."""

    def __init__(self, fn, check=True, fuse=True):
        if not callable(fn):
            raise TypeError(f"jit: expected a function, got {type(fn).__name__}")
        self.fn = fn
        self.check = check
        self.fuse = bool(fuse) and fusion.enabled()
        self.last_program = None          # the program the latest call ran (or traced)
        self.programs = {}                # signature -> [programs], most recent first
        self.traces = 0
        self.retrace_reasons = []
        functools.update_wrapper(self, fn, updated=())   # name and docstring, not __dict__

    def clear(self) -> None:
        self.programs.clear()

    def _name(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError("jit: pass arguments by position (keyword arguments are not "
                            "part of the traced signature)")
        leaves, tree = flatten(args)
        leaves = [Tensor(a) if B.is_array(a) else a for a in leaves]
        key = _signature(leaves, tree)
        arrays = [t.data for t in leaves if isinstance(t, Tensor)]
        program, reason = self._find(key, arrays)
        if program is None:
            if reason is not None:
                self._note_retrace(reason)
            return self._trace(key, leaves, tree)
        self.last_program = program
        if not self.check or program.checked:
            return program.run(arrays)
        program.checked = True
        # the replay and the eager run must start from the same state: the generators
        # are rewound and arrays updated in place (running statistics) restored between
        gens = program.generators
        before = [g.get_state() for g in gens]
        saved = program.snapshot_constants()
        result = program.run(arrays)
        for g, state in zip(gens, before):
            g.set_state(state)
        for target, copy in saved:
            target[...] = copy
        self._compare_with_eager(args, result)
        return result

    def _find(self, key, arrays):
        """The first program of this signature whose guards hold, or ``(None, why the
        most recent one does not)``."""
        programs = self.programs.get(key)
        if not programs:
            return None, None
        grad_enabled = get_state().grad_enabled
        first_reason = None
        for program in programs:
            reason = program.guards.failure(arrays, grad_enabled)
            if reason is None:
                return program, None
            first_reason = first_reason or reason
        return None, first_reason

    def _note_retrace(self, reason):
        self.retrace_reasons.append(reason)
        if _verbose():
            print(f"wonderland.jit: tracing {self._name()} again: {reason}", file=sys.stderr)

    def _compare_with_eager(self, args, result):
        """The first replay of a program is checked against running the function: a value
        computed outside the recorded steps (baked into the program as a constant) shows
        up as a difference on new arguments."""
        got, _ = flatten(result)
        want, _ = flatten(self.fn(*args))
        for i, (a, b) in enumerate(zip(got, want)):
            if not isinstance(a, Tensor):
                continue
            x, y = B.to_numpy(a.data), B.to_numpy(b.data)
            scale = float(abs(y).max()) if y.size else 0.0
            tol = (1e-5 if x.dtype.itemsize <= 4 else 1e-10) * max(scale, 1.0)
            if x.shape != y.shape or (x.size and float(abs(x - y).max()) > tol):
                diff = "shapes differ" if x.shape != y.shape else \
                    f"largest difference {float(abs(x - y).max()):.3g}"
                raise JitError(
                    f"jit: the replayed program of {self._name()} disagrees with running it "
                    f"(output {i}, {diff}). Its guards (closure, globals, module modes and "
                    f"parameters, argument values read by the library) all held, so the "
                    f"function depends on something they do not cover: a value computed "
                    f"from .data or NumPy directly, or state read from an object that is "
                    f"neither a module nor in the function's closure. Pass such values as "
                    f"arguments, or compute them with tensor operations")

    def _trace(self, key, leaves, tree):
        if get_state().trace is not None:
            raise JitError("jit: a jitted function called while another is being traced; "
                           "jit the outer function only")
        rec = _Recorder()
        rec.guards.bind_environment(self.fn)
        arg_slots = []
        inner = []
        for leaf in leaves:
            if isinstance(leaf, Tensor):
                # a fresh tensor around the argument's array: the function may not keep
                # or change the caller's tensor through it
                t = Tensor(leaf.data)
                if leaf.requires_grad:
                    t.requires_grad_(True)
                arg_slots.append(rec.argument(t.data))
                inner.append(t)
            else:
                inner.append(leaf)
        with rng.tracking() as touched, switched(trace=rec):
            result = self.fn(*unflatten(tree, inner))
        out_leaves, out_tree = flatten(result)
        out_slots, out_static = [], []
        for leaf in out_leaves:
            if isinstance(leaf, Tensor):
                slot = rec.slot_of.get(id(leaf.data))
                if slot is None:                     # made outside any step: a constant
                    slot = rec._new(leaf.data)
                    rec.consts[slot] = leaf.data
                out_slots.append(slot)
                out_static.append(None)
            else:
                out_slots.append(None)
                out_static.append(leaf)
        _guard_unread_indices(rec, out_slots)
        rec.guards.seal(B.get_backend(), get_state().grad_enabled)
        program = Program(rec, arg_slots, out_slots, out_tree, out_static, self.fuse)
        program.generators = [g for g, _ in touched.values()]
        programs = self.programs.setdefault(key, [])
        programs.insert(0, program)
        del programs[_PROGRAMS_PER_SIGNATURE:]
        self.last_program = program
        self.traces += 1
        rec.keep = []                                # the program keeps only what it needs
        return unflatten(out_tree, [from_array(leaf.data) if isinstance(leaf, Tensor) else leaf
                                    for leaf in out_leaves])

    def program_length(self, *args) -> int:
        """How many steps the program for these arguments has (tracing it if needed)."""
        leaves, tree = flatten(args)
        leaves = [Tensor(a) if B.is_array(a) else a for a in leaves]
        key = _signature(leaves, tree)
        arrays = [t.data for t in leaves if isinstance(t, Tensor)]
        if self._find(key, arrays)[0] is None:
            self(*args)
        return len(self._find(key, arrays)[0])
