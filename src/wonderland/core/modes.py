"""The switches of the autodiff machinery, per thread (and per asyncio task).

One immutable :class:`State` lives in a ``contextvars.ContextVar``; the hot path of
every primitive reads it once. Changing a switch builds a new state and sets it, so a
thread (or task) never sees another's ``no_grad`` or transformation levels:

* ``grad_enabled`` — record primitive applications for reverse mode;
* ``levels``       — the active transformation levels (``jvp`` and ``vmap``), innermost
                     last; levels are numbered from one counter and never reused, so a
                     tangent or batch axis left over from a finished transform is inert;
* ``anomaly``      — check every forward and backward for nan/inf;
* ``rev_depth``    — how many reverse-mode transforms (``grad``, ``vjp``) are running
                     their function: a nested ``grad`` records its backward pass only
                     when an enclosing one may differentiate it;
* ``capture``      — while ``checkpoint``, ``scan`` or a top-level ``grad`` run their
                     function once with recording, a :class:`Capture` that notes which
                     tensors requiring grad the function read from outside;
* ``trace``        — while ``jit`` traces a function, the recorder that notes every
                     array computation (``tracing.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools


class State:
    """A snapshot of the switches (never mutated: see :func:`replace`)."""

    __slots__ = ("grad_enabled", "levels", "anomaly", "rev_depth", "capture", "trace")

    def __init__(self, grad_enabled=True, levels=(), anomaly=False, rev_depth=0, capture=None,
                 trace=None):
        self.grad_enabled = grad_enabled
        self.levels = levels
        self.anomaly = anomaly
        self.rev_depth = rev_depth
        self.capture = capture
        self.trace = trace


_STATE = contextvars.ContextVar("wonderland_state", default=State())
get_state = _STATE.get
_level_counter = itertools.count(1)


def replace(**changes) -> contextvars.Token:
    """Set a new state with ``changes`` applied; returns the token that undoes it."""
    s = _STATE.get()
    new = State(changes.get("grad_enabled", s.grad_enabled), changes.get("levels", s.levels),
                changes.get("anomaly", s.anomaly), changes.get("rev_depth", s.rev_depth),
                changes.get("capture", s.capture), changes.get("trace", s.trace))
    return _STATE.set(new)


def set_grad(enabled: bool):
    """Set recording on or off; returns the token that undoes it (``None`` when it was
    already so). The engine calls this once per backward pass."""
    s = _STATE.get()
    if s.grad_enabled == enabled:
        return None
    return _STATE.set(State(enabled, s.levels, s.anomaly, s.rev_depth, s.capture, s.trace))


def reset(token: contextvars.Token) -> None:
    _STATE.reset(token)


@contextlib.contextmanager
def switched(**changes):
    """Run a block with some switches changed (restored afterwards)."""
    token = replace(**changes)
    try:
        yield
    finally:
        _STATE.reset(token)


def is_grad_enabled() -> bool:
    """Whether reverse-mode recording is on in this thread."""
    return _STATE.get().grad_enabled


class Capture:
    """The graph nodes a function's run made (their ids): whatever their edges reach
    outside that set is what the function read from outside — the closure's parameters,
    say (see ``transforms.outside``)."""

    __slots__ = ("created",)

    def __init__(self):
        self.created = set()

    def note(self, node, inputs) -> None:
        self.created.add(id(node))


@contextlib.contextmanager
def capturing():
    """Note what the block reads from outside (see :class:`Capture`); an enclosing
    capture sees it too."""
    outer = _STATE.get().capture
    cap = Capture()
    token = replace(capture=cap)
    try:
        yield cap
    finally:
        _STATE.reset(token)
        if outer is not None:
            outer.created |= cap.created


class _GradMode(contextlib.ContextDecorator):
    """Context manager (and decorator) that sets reverse-mode recording on or off."""

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)
        self._tokens = []

    def __enter__(self):
        self._tokens.append(replace(grad_enabled=self.enabled))
        return self

    def __exit__(self, *exc):
        _STATE.reset(self._tokens.pop())
        return False

    def __call__(self, fn):  # a fresh instance per call keeps decorators re-entrant
        enabled = self.enabled

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _GradMode(enabled):
                return fn(*args, **kwargs)

        return wrapper


def no_grad(fn=None):
    """Disable recording for reverse mode (forward-mode tangents still flow).

    Usable as ``with wl.no_grad(): ...`` or as a decorator, ``@wl.no_grad()`` or
    ``@wl.no_grad``.
    """
    if callable(fn):
        return _GradMode(False)(fn)
    return _GradMode(False)


def enable_grad(fn=None):
    """Enable recording for reverse mode, also inside an enclosing ``no_grad``."""
    if callable(fn):
        return _GradMode(True)(fn)
    return _GradMode(True)


class set_grad_enabled(_GradMode):
    """Set recording on or off. Called as a function it takes effect at once (in this
    thread); used as a context manager the previous setting comes back at the end."""

    def __init__(self, enabled: bool):
        super().__init__(enabled)
        self._previous = _STATE.get().grad_enabled
        replace(grad_enabled=self.enabled)

    def __enter__(self):
        self._tokens.append(replace(grad_enabled=self.enabled))
        return self

    def __exit__(self, *exc):
        _STATE.reset(self._tokens.pop())
        replace(grad_enabled=self._previous)
        return False


@contextlib.contextmanager
def new_level():
    """Open a new transformation level (``jvp``, ``vmap``); yields its number."""
    level = next(_level_counter)
    token = replace(levels=_STATE.get().levels + (level,))
    try:
        yield level
    finally:
        _STATE.reset(token)


class detect_anomaly(contextlib.ContextDecorator):
    """Raise on the first primitive whose forward or backward produces nan or inf.

    The error names the primitive, the shapes and dtypes of its inputs and, for a
    backward failure, where the failing forward operation was created::

        with wl.detect_anomaly():
            loss.backward()

    Checking every result costs a pass over each array; use it to find a bug, not to
    train.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._tokens = []

    def __enter__(self):
        self._tokens.append(replace(anomaly=bool(self.enabled)))
        return self

    def __exit__(self, *exc):
        _STATE.reset(self._tokens.pop())
        return False
