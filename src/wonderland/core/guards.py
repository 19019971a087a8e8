"""What a ``wl.jit`` program assumed besides its arguments' shapes, checked before a replay.

A trace runs the function once; the program it leaves behind is only valid while the
world the function saw is unchanged. Like a compiler's guards, :class:`Guards` keeps
what the trace relied on and says, before each replay, whether it still holds:

* **bindings** — what the function's closure cells and the globals its code names held
  (and, one level into lists, tuples and dicts, their items): a tensor, a module or a
  function by identity, a number or string by value. ``w = new_tensor``, ``scale =
  5.0`` or rebinding a global helper all fail the guard.
* **state of objects that ran** — every module the function called (noted by the
  module itself) and every module reachable from the bindings: its ``training`` flag,
  the identity of its parameters, buffers and sub-modules, its plain attributes
  (``p``, ``eps``...). Such objects share an *epoch* counter that every change to any
  of them bumps, so a replay compares one integer and looks closer only after a change.
* **constants' arrays** — each tensor read from outside the arguments keeps the array
  type (the device), shape and dtype it had: in-place updates are fine (the replay reads
  the current array), a tensor moved to another device or dtype is not.
* **values read on the host** — where library code read an argument's values outside
  the recorded steps (a graph's ``edge_index`` made into a sparse structure, segment
  ids counted), the program is valid only for those values: the guard keeps a copy and
  compares. A tensor closed over whose values were read is guarded by its version.
* the default backend and whether gradients are being recorded.

:meth:`Guards.failure` returns ``None`` when every guard holds, or a sentence saying
which one failed (``WONDERLAND_JIT_VERBOSE=1`` prints it when ``jit`` traces again).

Objects take part in the state guard through methods: ``_jit_state()`` returns a tuple
of what the object's behaviour depends on (compared item by item: identity, or equality
for numbers and strings); ``_jit_epoch()`` returns a counter that changes whenever any
such state of any object of that kind may have changed; ``_jit_watch()`` yields the
objects to watch when one is found among the bindings (a module and its sub-modules);
``_jit_explain(snapshot)``, optional, says in words what changed.
"""

from __future__ import annotations

import functools
import types

from .. import backend as B
from .tensor import Tensor

_PLAIN = (bool, int, float, complex, str, bytes, type(None))
_MAX_ITEMS = 64              # containers larger than this are guarded by identity only
_MAX_DEPTH = 3
_EMPTY = object()            # an empty closure cell or a missing global


def _is_plain(value) -> bool:
    """Numbers, strings and None (and NumPy scalars): compared by value."""
    if isinstance(value, _PLAIN):
        return True
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.shape == ()


def same(now, then) -> bool:
    """Whether a guarded value still holds: the same object, or an equal plain value."""
    if now is then:
        return True
    if type(now) is not type(then) or not _is_plain(then):
        return False
    try:
        return bool(now == then)
    except Exception:  # noqa: BLE001 - an incomparable value is a changed one
        return False


def same_items(now: tuple, then: tuple) -> bool:
    return len(now) == len(then) and all(same(a, b) for a, b in zip(now, then))


class _Binding:
    """One place the function reads from: a closure cell, a global, a container item."""

    __slots__ = ("holder", "key", "expected", "where")

    def __init__(self, holder, key, expected, where):
        self.holder, self.key, self.expected, self.where = holder, key, expected, where

    def now(self):
        holder, key = self.holder, self.key
        if isinstance(holder, types.CellType):
            try:
                return holder.cell_contents
            except ValueError:
                return _EMPTY
        try:
            return holder[key]
        except (KeyError, IndexError, TypeError):
            return _EMPTY

    def holds(self) -> bool:
        return same(self.now(), self.expected)


def _describe(value) -> str:
    if value is _EMPTY:
        return "nothing"
    if isinstance(value, Tensor):
        return f"a tensor {value.dtype}{list(value.shape)} (id {id(value):#x})"
    if _is_plain(value):
        return repr(value)
    return f"a {type(value).__name__} (id {id(value):#x})"


class Guards:
    """What a trace assumed; see the module's docstring."""

    def __init__(self):
        self.bindings: list[_Binding] = []
        self.watched = {}            # id -> object with _jit_state/_jit_epoch
        self.states = []             # (object, snapshot) taken when the trace ends
        self.epochs = {}             # epoch function -> value when last checked
        self.constants = []          # (tensor, array type, shape, dtype)
        self.values = []             # (argument position, reference copy, what)
        self.versions = []           # (tensor, version, what)
        self.backend = None
        self.grad_enabled = None
        self._seen = set()

    # ------------------------------------------------------------------ while tracing
    def watch(self, obj) -> None:
        """Guard ``obj``'s state (``_jit_state``) from the end of the trace on."""
        self.watched.setdefault(id(obj), obj)

    def bind_environment(self, fn) -> None:
        """Guard what ``fn`` reads from outside its arguments: closure cells, globals
        named by its code, bound ``self``, ``functools.partial`` arguments."""
        self._walk_callable(fn, 0)

    def _walk_callable(self, fn, depth):
        if id(fn) in self._seen or depth > _MAX_DEPTH:
            return
        self._seen.add(id(fn))
        if isinstance(fn, functools.partial):
            self._walk_value(fn.func, depth + 1)
            for v in fn.args:
                self._walk_value(v, depth + 1)
            for v in (fn.keywords or {}).values():
                self._walk_value(v, depth + 1)
            return
        if isinstance(fn, types.MethodType):
            self._walk_value(fn.__self__, depth + 1)
            fn = fn.__func__
        if hasattr(fn, "_jit_watch"):                 # a module called as the function
            self._walk_value(fn, depth + 1)
            fn = getattr(type(fn), "forward", None)
        if not isinstance(fn, types.FunctionType):
            return
        library = (fn.__module__ or "").startswith("wonderland.")
        if library and not fn.__closure__:            # the library's own module-level code
            return
        code = fn.__code__
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self._bind(cell, None, value, f"the closed-over variable {name!r}", depth)
        if not library:
            g = fn.__globals__
            for name in _global_names(code):
                if name in g:
                    self._bind(g, name, g[name], f"the global {name!r}", depth)

    def _bind(self, holder, key, value, where, depth):
        if isinstance(value, (types.ModuleType, type)) or callable(value) and _is_builtin(value):
            return
        self.bindings.append(_Binding(holder, key, value, where))
        self._walk_value(value, depth + 1, where)

    def _walk_value(self, value, depth, where=""):
        if depth > _MAX_DEPTH or _is_plain(value) or isinstance(value, Tensor):
            return
        if hasattr(value, "_jit_watch"):
            for obj in value._jit_watch():
                self.watch(obj)
            return
        if callable(value) and not isinstance(value, type):
            self._walk_callable(value, depth)
            return
        if id(value) in self._seen:
            return
        if isinstance(value, (list, tuple)) and len(value) <= _MAX_ITEMS:
            self._seen.add(id(value))
            for i, item in enumerate(value):
                self._bind(value, i, item, f"item {i} of {where or 'a list'}", depth)
        elif isinstance(value, dict) and len(value) <= _MAX_ITEMS:
            self._seen.add(id(value))
            for k, item in list(value.items()):
                if _is_plain(k):
                    self._bind(value, k, item, f"item {k!r} of {where or 'a dict'}", depth)

    def constant(self, tensor) -> None:
        """Guard the array type, shape and dtype of a tensor read as a constant."""
        a = tensor.data
        self.constants.append((tensor, type(a), a.shape, a.dtype))

    def value(self, position, reference, what) -> None:
        self.values.append((position, reference, what))

    def version(self, tensor, what) -> None:
        self.versions.append((tensor, tensor.version, what))

    def seal(self, backend_name, grad_enabled) -> None:
        """The trace has ended: snapshot the watched objects' state."""
        self.states = [(obj, obj._jit_state()) for obj in self.watched.values()]
        self.epochs = {}
        for obj in self.watched.values():
            self.epochs.setdefault(type(obj)._jit_epoch, type(obj)._jit_epoch())
        self.backend = backend_name
        self.grad_enabled = grad_enabled
        self._seen = set()

    # ------------------------------------------------------------------ before a replay
    def failure(self, arrays, grad_enabled) -> str | None:
        """``None`` if the program may replay on ``arrays``; else what changed."""
        if grad_enabled != self.grad_enabled:
            return f"gradient recording is now {'on' if grad_enabled else 'off'}"
        if B.get_backend() != self.backend:
            return f"the default backend is now {B.get_backend()!r}, not {self.backend!r}"
        for b in self.bindings:
            if not b.holds():
                return (f"{b.where} now holds {_describe(b.now())}, not "
                        f"{_describe(b.expected)}")
        reason = self._state_failure()
        if reason:
            return reason
        for t, kind, shape, dtype in self.constants:
            a = t.data
            if type(a) is not kind or a.shape != shape or a.dtype != dtype:
                return (f"a tensor read from outside the arguments changed from {dtype}"
                        f"{list(shape)} ({kind.__name__}) to {a.dtype}{list(a.shape)} "
                        f"({type(a).__name__})")
        for t, version, what in self.versions:
            if t.version != version:
                return (f"{what} read the values of a tensor from outside the arguments, "
                        f"which has been updated in place since")
        for position, reference, what in self.values:
            if not _equal(arrays[position], reference):
                return f"{what} read the values of argument tensor {position}, which differ now"
        return None

    def _state_failure(self) -> str | None:
        changed = [fn for fn, seen in self.epochs.items() if fn() != seen]
        if not changed:
            return None
        for obj, snapshot in self.states:
            if not same_items(obj._jit_state(), snapshot):
                explain = getattr(obj, "_jit_explain", None)
                return explain(snapshot) if explain else \
                    f"the state of {type(obj).__name__} (id {id(obj):#x}) changed"
        for fn in changed:                 # nothing this program depends on: remember that
            self.epochs[fn] = fn()
        return None

    def __len__(self):
        return (len(self.bindings) + len(self.states) + len(self.constants) + len(self.values)
                + len(self.versions))


def _equal(a, reference) -> bool:
    if a is reference:
        return True
    if type(a) is not type(reference) or a.shape != reference.shape:
        return False
    return bool(B.ns(a).array_equal(a, reference))


def _global_names(code):
    """Names a code object (and the functions and comprehensions defined in it) may
    read as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _is_builtin(value) -> bool:
    return isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)) or (
        type(value).__module__ in ("numpy", "builtins") and not hasattr(value, "__code__"))
