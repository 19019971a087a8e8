"""Compiled CPU kernels for what vectorised NumPy does badly.

Some computations run one step after another (a recurrence ``h_t = f(h_{t-1}, x_t)``),
or gather and scatter per element (max pooling), or make a dozen passes over memory
where one would do (an optimiser update); in NumPy their call overhead or memory traffic
dominates. Their kernels are plain Python loops over arrays, compiled by numba the first
time they run (``cache=True`` keeps the machine code on disk, so later processes skip
the compilation; ``nogil=True`` lets the library's threads run one kernel on different
parts of a batch; ``error_model="numpy"`` makes a division by zero give inf or nan, as
in NumPy, instead of raising, which also lets the compiler vectorise loops that
divide). Every kernel keeps its plain-Python form as ``kernel.py_func``, and
every primitive that uses one has a NumPy reference the tests compare it with.

Without numba, or with ``WONDERLAND_KERNELS=numpy``, ``ENABLED`` is false: primitives
then take their NumPy reference paths, and kernels called directly run as plain Python
(correct, slow).
"""

from __future__ import annotations

import os
import threading
import types

_lock = threading.RLock()          # a kernel compiles the kernels it calls first


def available() -> bool:
    """Whether numba can compile the kernels here (and is not switched off)."""
    if os.environ.get("WONDERLAND_KERNELS", "") == "numpy":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


ENABLED = available()


class kernel:
    """A loop compiled on first use (``@kernel`` on a plain Python function)."""

    def __init__(self, fn, **options):
        self.py_func = fn
        self.options = options
        self._compiled = None
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def compiled(self):
        if self._compiled is None:
            with _lock:
                if self._compiled is None:
                    if ENABLED:
                        import numba

                        self._compiled = numba.njit(cache=True, nogil=True, error_model="numpy",
                                                    **self.options)(_linked(self.py_func))
                    else:
                        self._compiled = self.py_func
        return self._compiled

    def __call__(self, *args):
        return self.compiled()(*args)


jit = kernel


def _linked(fn):
    """``fn`` with the kernels it calls (globals that are :class:`kernel` objects)
    replaced by their compiled forms, so that one kernel can call another."""
    names = [n for n in fn.__code__.co_names if isinstance(fn.__globals__.get(n), kernel)]
    if not names:
        return fn
    scope = dict(fn.__globals__)
    for n in names:
        scope[n] = scope[n].compiled()
    linked = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    linked.__qualname__, linked.__module__ = fn.__qualname__, fn.__module__
    return linked


def jit_fma(fn):
    """``@jit`` that lets ``a * b + c`` compile to one fused multiply-add (LLVM's
    ``contract`` flag and nothing else of fast-math: NaN, infinities and the order of
    sums are kept). Rounded once instead of twice, results differ from NumPy's in the
    last bits; about twice as fast in the multiply-add loops of small convolutions."""
    return kernel(fn, fastmath={"contract"})


def warm_up() -> None:
    """Compile (or load from the disk cache) the recurrent kernels now, so that the
    first training step does not pay for it. Benchmarks call this before timing."""
    from .. import recurrence, scan_ops, wkv

    scan_ops._warm()
    recurrence._warm()
    wkv._warm()
