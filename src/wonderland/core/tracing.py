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
through the array they had when traced, so in-place updates are seen but a tensor given
a new array is not: pass tensors that change as arguments (the parameters, when an
optimiser updates them: it moves them into one flat buffer on its first step).

**Replay.** A later call with the same signature runs the recorded steps in order on
the new arguments' arrays: no tensors, no graph nodes, no checks or dispatch, and each
intermediate array dropped right after its last use. Results are those of eager
execution on the same inputs, step for step the same operations (the tests compare
the MLP, CNN and transformer-block gradients). The results are plain tensors without a
graph: differentiate *inside* the jitted function (``wl.grad``, ``value_and_grad``).

The first replay of each signature is also run eagerly and compared
(``check=True``), which catches a value computed outside the recorded steps.

Random draws (dropout's masks, ``wl.random.*``) are recorded steps too: every replay
draws new numbers from the same generator, as running the function again would.

**What cannot be traced raises** :class:`JitError` during tracing, instead of being
baked into the program silently: reading a traced value in Python (``.item()``,
``bool``, ``.numpy()``, ``float()``...: data-dependent control flow) and in-place
updates (``copy_``, ``.backward()`` filling ``.grad``). Batch norm's running statistics
are updated by a recorded step, at every replay, as in eager training. Integer index
arrays computed from a traced tensor's values by graph operations (sparse and segment
indices) are recorded as constants: jit targets dense models (the checked first replay
catches such a constant when the indices change).

**Fusion.** Chains of elementwise steps (layer norm's backward, dropout's scaling
and the residual sum after it, attention's masking) run as one compiled loop each,
computed in the traced dtypes operation by operation (:mod:`wonderland.core.fusion`;
``fuse=False`` turns it off). Buffers are not planned by the program: the allocator
keeps freed memory in the process (``backend/memory.py``), so a step's new array reuses
the block an earlier one freed, and writing into a preallocated buffer measured no faster.
"""

from __future__ import annotations

import functools

from .. import backend as B
from . import fusion, rng
from .modes import get_state, switched
from .pytree import flatten, unflatten
from .tensor import Tensor, _wrap

__all__ = ["jit", "JitError", "note_constant", "record_call", "refuse_if_traced",
           "refuse_while_tracing"]


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
        self.depth = 0             # > 0 inside a recorded function (not recorded again)

    def _new(self, array):
        slot = len(self.keep)
        self.keep.append(array)
        self.slot_of[id(array)] = slot
        return slot

    def argument(self, array):
        slot = self._new(array)
        self.produced.add(slot)
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

    def record(self, fn, arrays, params, tensors=None, name=None):
        """Call ``fn(*arrays, **params)`` and note it as one step (``name``: what
        ``wl.profile`` calls it; the function's name by default)."""
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


def note_constant(array) -> None:
    """Tell a tracing ``jit`` that ``array`` is a constant of the program (a zero
    gradient made for an input the function does not reach), so that outputs handed on
    from it are known as constants (``_Program.constant_outputs``)."""
    trace = get_state().trace
    if trace is not None:
        trace._input(array, None)


def record_call(fn, *arrays, **params):
    """``fn(*arrays, **params)``, recorded as one step when ``jit`` is tracing. Backward
    rules that compute arrays directly (a fused kernel) call them through this."""
    trace = get_state().trace
    if trace is None:
        return fn(*arrays, **params)
    return trace.record(fn, list(arrays), params)


def refuse_if_traced(tensor, what: str) -> None:
    """Raise :class:`JitError` if ``tensor`` holds a traced value (``what`` reads it)."""
    trace = get_state().trace
    if trace is not None and trace.is_traced(tensor.data):
        raise JitError(
            f"jit: {what} reads the value of a traced tensor (shape {tuple(tensor.shape)}, "
            f"{tensor.dtype}); the function runs once to record its operations, so Python "
            f"code that depends on values (an if, a loop bound, a printed number) cannot be "
            f"replayed. Use tensor operations (wl.where, masks) or move it out of the "
            f"jitted function")


def refuse_while_tracing(what: str) -> None:
    """Raise :class:`JitError` when ``jit`` is tracing: ``what`` cannot be replayed."""
    if get_state().trace is not None:
        raise JitError(f"jit: {what} cannot be recorded by a traced function")


# ----------------------------------------------------------------------------- the program
class _Program:
    """The recorded steps of one signature, ready to run on new arguments."""

    def __init__(self, rec: _Recorder, arg_slots, out_slots, out_tree, out_static,
                 fuse=False):
        self.consts = rec.consts
        keep_to_end = set(out_slots) | set(rec.consts)
        self.steps, self.names = rec.steps, rec.names
        if fuse:
            self.steps, self.names = fusion.fuse(rec.steps, rec.names, rec.keep, keep_to_end)
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
            leaves.append(static if slot is None else _wrap(env[slot]))
        return unflatten(self.out_tree, leaves)

    def __len__(self):
        return len(self.steps)


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


class jit:
    """Trace ``fn`` once per signature and replay the recorded program (see the module).

    ``fn`` takes and returns pytrees (tuples, lists, dicts) of tensors; NumPy arrays among
    the arguments are taken as tensors. ``traces`` counts the signatures traced so far;
    ``clear()`` forgets them (after replacing a closed-over tensor's array, say). With
    ``check=True`` (the default) the first replay of each signature also runs ``fn``
    eagerly and raises :class:`JitError` if the results differ. With ``fuse=True`` (the
    default where numba is installed) chains of elementwise steps run as one compiled loop
    each (:mod:`wonderland.core.fusion`). Use it as ``@wl.jit`` or
    ``wl.jit(fn, check=False, fuse=False)``."""

    def __init__(self, fn, check=True, fuse=True):
        if not callable(fn):
            raise TypeError(f"jit: expected a function, got {type(fn).__name__}")
        self.fn = fn
        self.check = check
        self.fuse = bool(fuse) and fusion.enabled()
        self.last_program = None          # the program the latest call ran (or traced)
        self.programs = {}
        self.traces = 0
        functools.update_wrapper(self, fn, updated=())   # name and docstring, not __dict__

    def clear(self) -> None:
        self.programs.clear()

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError("jit: pass arguments by position (keyword arguments are not "
                            "part of the traced signature)")
        leaves, tree = flatten(args)
        leaves = [Tensor(a) if B.is_array(a) else a for a in leaves]
        key = _signature(leaves, tree)
        program = self.programs.get(key)
        if program is None:
            return self._trace(key, leaves, tree)
        self.last_program = program
        arrays = [t.data for t in leaves if isinstance(t, Tensor)]
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
                raise JitError(
                    f"jit: the replayed program of {getattr(self.fn, '__name__', 'the function')} "
                    f"disagrees with running it (output {i}): some value was computed outside "
                    f"the library's operations (from .data or NumPy directly) and recorded as "
                    f"a constant. Compute it with tensor operations, or pass it as an argument")

    def _trace(self, key, leaves, tree):
        if get_state().trace is not None:
            raise JitError("jit: a jitted function called while another is being traced; "
                           "jit the outer function only")
        rec = _Recorder()
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
        program = self.programs[key] = _Program(rec, arg_slots, out_slots, out_tree, out_static,
                                                       self.fuse)
        program.generators = [g for g, _ in touched.values()]
        self.last_program = program
        self.traces += 1
        rec.keep = []                                # the program keeps only what it needs
        return unflatten(out_tree, [_wrap(leaf.data) if isinstance(leaf, Tensor) else leaf
                                    for leaf in out_leaves])

    def program_length(self, *args) -> int:
        """How many steps the program for these arguments' signature has (tracing it if
        needed)."""
        leaves, tree = flatten(args)
        leaves = [Tensor(a) if B.is_array(a) else a for a in leaves]
        key = _signature(leaves, tree)
        if key not in self.programs:
            self(*args)
        return len(self.programs[key])
