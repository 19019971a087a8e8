"""Global switches of the autodiff machinery.

One mutable object, ``state``, holds what the hot path of every primitive needs to
read: whether reverse-mode recording is on, which forward-mode levels are active, and
whether anomaly detection is on. It is a plain object (not thread-local) so that the
check costs one attribute read.
"""

from __future__ import annotations

import contextlib
import functools


class _State:
    __slots__ = ("grad_enabled", "fwd_levels", "next_level", "anomaly")

    def __init__(self):
        self.grad_enabled = True   # record primitive applications for reverse mode
        self.fwd_levels = ()       # active forward-mode levels, innermost last
        self.next_level = 1        # levels are never reused, so stale tangents are inert
        self.anomaly = False       # check every forward and backward for nan/inf


state = _State()


class _GradMode(contextlib.ContextDecorator):
    """Context manager (and decorator) that sets reverse-mode recording on or off."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._saved = []

    def __enter__(self):
        self._saved.append(state.grad_enabled)
        state.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        state.grad_enabled = self._saved.pop()
        return False

    def __call__(self, fn):  # fresh instance per call keeps decorators re-entrant
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
    """Set recording on or off. Called as a function it takes effect at once; used as a
    context manager the previous setting comes back at the end of the block."""

    def __init__(self, enabled: bool):
        super().__init__(bool(enabled))
        self._previous = state.grad_enabled
        state.grad_enabled = self.enabled

    def __enter__(self):
        self._saved.append(self._previous)
        return self


def is_grad_enabled() -> bool:
    return state.grad_enabled


@contextlib.contextmanager
def forward_level():
    """Open a new forward-mode level (used by ``jvp``); yields its number."""
    level = state.next_level
    state.next_level += 1
    saved = state.fwd_levels
    state.fwd_levels = saved + (level,)
    try:
        yield level
    finally:
        state.fwd_levels = saved


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
        self._saved = []

    def __enter__(self):
        self._saved.append(state.anomaly)
        state.anomaly = self.enabled
        return self

    def __exit__(self, *exc):
        state.anomaly = self._saved.pop()
        return False
