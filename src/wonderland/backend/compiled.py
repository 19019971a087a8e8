"""Compiled CPU kernels: one decorator, one cache, for what vectorised NumPy does badly.

Some computations run one step after another (a recurrence ``h_t = f(h_{t-1}, x_t)``),
or gather and scatter per element (max pooling, segment reductions), or make a dozen
passes over memory where one would do (an optimiser update); in NumPy their call
overhead or memory traffic dominates. Their kernels are plain Python loops over arrays
marked ``@kernel``, compiled by numba the first time they run (``cache=True`` keeps the
machine code on disk, so later processes skip the compilation; ``nogil=True`` lets the
library's threads run one kernel on different parts of a batch, see
:func:`wonderland.backend.threads.parallel_for`; ``error_model="numpy"`` makes a
division by zero give inf or nan, as in NumPy, instead of raising, which also lets the
compiler vectorise loops that divide). Every kernel keeps its plain-Python form as
``kernel.py_func``, and every primitive that uses one has a NumPy reference the tests
compare it with.

Loops generated at run time (``wl.jit``'s fused elementwise chains) go through
:func:`load_generated`: their source is written once to a private cache directory, so
that numba's on-disk cache serves them to later processes too.

Without numba, or with ``WONDERLAND_KERNELS=numpy``, ``ENABLED`` is false: primitives
then take their NumPy reference paths, and kernels called directly run as plain Python
(correct, slow).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import types

import numpy as np

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

    def compiled_or_none(self):
        """The compiled loop, or ``None`` when compiled kernels are off (the caller then
        takes its NumPy reference path)."""
        return self.compiled() if ENABLED else None

    def __call__(self, *args):
        return self.compiled()(*args)

    def llvm_ir(self, *args) -> str:
        """The optimised LLVM IR of this kernel for the types of ``args`` (compiled afresh
        without the disk cache, whose entries numba cannot inspect): what to read to see
        whether a loop was vectorised (``<8 x float>``)."""
        import numba

        fresh = numba.njit(nogil=True, error_model="numpy", **self.options)(_linked(self.py_func))
        fresh.compile(tuple(numba.typeof(a) for a in args))
        return "".join(fresh.inspect_llvm().values())


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


def kernel_fma(fn):
    """``@kernel`` that lets ``a * b + c`` compile to one fused multiply-add (LLVM's
    ``contract`` flag and nothing else of fast-math: NaN, infinities and the order of
    sums are kept). Rounded once instead of twice, results differ from NumPy's in the
    last bits; about twice as fast in the multiply-add loops of small convolutions."""
    return kernel(fn, fastmath={"contract"})


def kernel_fast(fn=None, **options):
    """``@kernel`` for float32 loops of arithmetic that should run at SIMD width: LLVM may
    contract ``a * b + c`` into fused multiply-adds, use reciprocals, ignore the sign of
    zero and approximate library functions (``contract``, ``arcp``, ``nsz``, ``afn``), but
    keeps NaN and infinities (no ``nnan``/``ninf``) and the order of operations (no
    ``reassoc``: range reductions rely on it). ``inline=True`` marks a helper that the
    kernels calling it inline, so that the vectoriser sees one loop body."""
    def wrap(f):
        opts = dict(options)
        if opts.pop("inline", False):
            opts["inline"] = "always"
        return kernel(f, fastmath=set(FAST_MATH), **opts)
    return wrap(fn) if fn is not None else wrap


FAST_MATH = frozenset({"contract", "arcp", "nsz", "afn"})


def float32_from_bits(i):
    """The float32 whose bit pattern is the 32-bit integer ``i`` (``2ᵏ`` is
    ``float32_from_bits((k + 127) << 23)``). Compiled, it is one bitcast, which vectorises;
    plain Python, a NumPy view."""
    return np.array(i, dtype=np.int32).view(np.float32)[()]


def _register_bitcast():
    """Teach numba :func:`float32_from_bits` as an LLVM bitcast."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def _bitcast(typingctx, i):
        if not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            v, width = args[0], signature.args[0].bitwidth
            if width > 32:
                v = builder.trunc(v, ir.IntType(32))
            elif width < 32:
                v = builder.sext(v, ir.IntType(32))
            return builder.bitcast(v, ir.FloatType())
        return types.float32(i), codegen

    @overload(float32_from_bits, jit_options={"inline": "always"})
    def _float32_from_bits(i):
        if isinstance(i, types.Integer):
            return lambda i: _bitcast(i)


if ENABLED:
    _register_bitcast()


# ----------------------------------------------------------------------------- generated loops
_GENERATED = {}                    # source digest -> the loaded module


def cache_dir() -> str:
    """A directory of this user's own for generated sources and numba's cache next to
    them (code is loaded from it: one that another user owns or may write to is not
    used). ``WONDERLAND_CACHE_DIR`` chooses its root."""
    root = os.environ.get("WONDERLAND_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "wonderland")
    uid = os.getuid() if hasattr(os, "getuid") else None
    for path in (os.path.join(root, "fused"),
                 os.path.join(tempfile.gettempdir(), f"wonderland-fused-{uid}")):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.stat(path)
        except OSError:
            continue
        if uid is not None and st.st_uid == uid and st.st_mode & 0o022:
            try:                                 # ours, made under a permissive umask
                os.chmod(path, st.st_mode & ~0o022)
                st = os.stat(path)
            except OSError:
                continue
        if uid is not None and (st.st_uid != uid or st.st_mode & 0o022):
            continue
        if os.access(path, os.W_OK):
            return path
    raise OSError("no private writable directory for the fused kernels' sources "
                  "(set WONDERLAND_CACHE_DIR)")


def _written(path, source) -> bool:
    try:
        with open(path) as f:
            return f.read() == source
    except OSError:
        return False


def load_generated(source: str, prefix: str = "fused"):
    """The module of a generated kernel ``source`` (written to :func:`cache_dir` once,
    atomically, and rewritten when the file there does not hold it, so that numba's
    on-disk cache stays valid across processes)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:20]
    with _lock:
        module = _GENERATED.get(digest)
        if module is None:
            path = os.path.join(cache_dir(), f"{prefix}_{digest}.py")
            if not _written(path, source):        # absent, or not what it should hold
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    f.write(source)
                os.replace(tmp, path)
            name = f"wonderland_{prefix}_{digest}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module            # numba's cache finds the module by name
            spec.loader.exec_module(module)
            _GENERATED[digest] = module
        return module


__all__ = ["ENABLED", "available", "kernel", "kernel_fma", "kernel_fast", "FAST_MATH",
           "float32_from_bits", "cache_dir", "load_generated"]
