"""Compiled loops for recurrences that vectorised NumPy does badly.

A recurrence ``h_t = f(h_{t-1}, x_t)`` has to run one step after another; in NumPy each
step is a handful of calls on small arrays, and the call overhead dominates. The kernels
of the recurrent primitives are therefore plain Python loops over arrays, compiled by
Numba the first time they are called (``cache=True`` keeps the machine code on disk, so
later processes skip the compilation). ``nogil=True`` lets several threads run one
kernel on different parts of a batch.

Every kernel keeps its plain-Python form as ``kernel.py_func``, and every primitive that
uses one has a NumPy reference that the tests compare it with. Without Numba installed
the kernels run as plain Python (correct, slow); ``WONDERLAND_NO_NUMBA=1`` forces that.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def available() -> bool:
    """Whether Numba can compile the kernels here."""
    if os.environ.get("WONDERLAND_NO_NUMBA"):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


class kernel:
    """A loop compiled on first use (``@kernel`` on a plain Python function)."""

    def __init__(self, fn):
        self.py_func = fn
        self._compiled = None
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def compiled(self):
        if self._compiled is None:
            with _lock:
                if self._compiled is None:
                    if available():
                        import numba

                        self._compiled = numba.njit(cache=True, nogil=True)(self.py_func)
                    else:
                        self._compiled = self.py_func
        return self._compiled

    def __call__(self, *args):
        return self.compiled()(*args)


def warm_up() -> None:
    """Compile (or load from the cache) every recurrent kernel now, so that the first
    training step does not pay for it. Benchmarks call this before timing."""
    from . import recurrence, scan_ops, wkv

    scan_ops._warm()
    recurrence._warm()
    wkv._warm()
