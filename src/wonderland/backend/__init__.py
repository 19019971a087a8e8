"""The array library that holds the numbers, looked up at call time.

A :class:`Backend` bundles an array namespace (NumPy's functions, or a library with the
same names) with the few extras the primitives need beyond it: special functions,
unbuffered scatter-add, strided window views, random generators, conversion to NumPy.
Every array belongs to exactly one backend, found from its type (:func:`backend_of`),
so a tensor carries its device with its data and an operation runs on the backend of
its inputs. New arrays made from nothing (``wl.zeros``) go to the *default* backend,
chosen with :func:`set_backend` or the ``WONDERLAND_BACKEND`` environment variable.

Backends shipped here:

``numpy``    NumPy and SciPy on the CPU (the default);
``checked``  NumPy arrays of a subclass that refuses to meet any *foreign* array (a plain
             NumPy array made by code that bypassed the backend): running the test
             suites on it proves that nothing above the primitives calls NumPy directly
             to make arrays, which is what a second real backend (CuPy) needs.

The primitives use ``ns(array)`` for the namespace of their inputs and ``of(array)`` for
the extras; code above ``ops`` never imports NumPy to make arrays.
"""

from __future__ import annotations

import os

import numpy as _np
import scipy.special as _special
from numpy.lib.stride_tricks import as_strided as _as_strided


class Backend:
    """An array namespace plus the extras the primitives need."""

    def __init__(self, name, xp, array_type, device="cpu"):
        self.name = name
        self.xp = xp
        self.array_type = array_type
        self.device = device

    # -- conversion
    def asarray(self, data, dtype=None):
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array):
        return _np.asarray(array).view(_np.ndarray)

    # -- extras beyond the array namespace
    def erf(self, x):
        return _special.erf(x)

    def expit(self, x):
        return _special.expit(x)

    def add_at(self, target, index, values):
        """Add ``values`` into ``target[index]`` in place; repeated indices accumulate."""
        _np.add.at(target, index, values)

    def as_strided(self, x, shape, strides, writeable=False):
        return _as_strided(x, shape, strides, writeable=writeable)

    def broadcast_to(self, array, shape):
        """A read-only broadcast view of ``array`` with ``shape`` (shapes already checked).

        Builds the strided view directly, which costs a fraction of
        ``numpy.broadcast_to`` for the small arrays where that overhead shows.
        """
        if not array.flags.c_contiguous:
            return _np.broadcast_to(array, shape)
        lead = len(shape) - array.ndim
        strides = [0] * lead + [0 if n == 1 and m != 1 else st for n, m, st in
                                zip(array.shape, shape[lead:], array.strides)]
        view = _np.ndarray(shape, array.dtype, array, 0, tuple(strides))
        view.flags.writeable = False
        return view

    def default_rng(self, seed=None):
        return _np.random.default_rng(seed)

    def from_numpy(self, array):
        """A NumPy array (e.g. random samples) as an array of this backend."""
        return array

    def __repr__(self):
        return f"<backend {self.name} on {self.device}>"


# ----------------------------------------------------------------------------- checked
class _Foreign(TypeError):
    pass


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HERE = os.path.abspath(__file__)


_STRICT = []


def strict_checking():
    """A context manager under which the checked backend refuses foreign arrays whoever
    brings them in (by default only wonderland's own code is held to it)."""
    import contextlib

    @contextlib.contextmanager
    def strict():
        _STRICT.append(True)
        try:
            yield
        finally:
            _STRICT.pop()

    return strict()


def _called_from_library() -> bool:
    """Whether the first caller outside NumPy, SciPy and this module is wonderland's own
    code (tests and user code may mix in NumPy arrays freely)."""
    import sys

    if _STRICT:
        return True
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name != _HERE and "numpy" not in name and "scipy" not in name \
                and not name.startswith("<"):
            return name.startswith(_PACKAGE)
        frame = frame.f_back
    return False


def _plain(x):
    """``x`` as a plain ndarray view when it is a checked array; refuse foreign arrays
    that wonderland's own code brought in."""
    if type(x) is CheckedArray:
        return x.view(_np.ndarray)
    if type(x) is _np.ndarray and x.ndim > 0 and _called_from_library():
        raise _Foreign(
            f"checked backend: a plain NumPy array of shape {x.shape} met a backend array; "
            f"some code made it with NumPy directly instead of through the backend")
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _plain_any(x):
    """``x`` with checked arrays viewed as plain ones (foreign arrays allowed)."""
    if type(x) is CheckedArray:
        return x.view(_np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain_any(v) for v in x)
    return x


def _checked(result):
    if type(result) is _np.ndarray:
        return result.view(CheckedArray)
    if isinstance(result, _np.generic):
        return _np.asarray(result).view(CheckedArray)
    if isinstance(result, tuple):
        return tuple(_checked(r) for r in result)
    if isinstance(result, list):
        return [_checked(r) for r in result]
    return result


class CheckedArray(_np.ndarray):
    """A NumPy array of the ``checked`` backend (see the module docstring)."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = [_plain(x) for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None and method != "at":
            return out[0] if len(out) == 1 else out
        return _checked(result)

    def __array_function__(self, func, types, args, kwargs):
        args = [_plain(a) for a in args]
        kwargs = {k: _plain(v) for k, v in kwargs.items()}
        return _checked(func(*args, **kwargs))


class _CheckedNamespace:
    """NumPy's functions, returning checked arrays (creation functions included)."""

    def __getattr__(self, name):
        fn = getattr(_np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def wrapped(*args, **kwargs):
            args = [_plain(a) for a in args]
            kwargs = {k: _plain(v) for k, v in kwargs.items()}
            return _checked(fn(*args, **kwargs))

        wrapped.__name__ = name
        return wrapped


class _CheckedBackend(Backend):
    def asarray(self, data, dtype=None):
        if type(data) is CheckedArray:
            return data if dtype is None or data.dtype == dtype else data.astype(dtype)
        return _np.asarray(_plain_any(data), dtype=dtype).view(CheckedArray)

    def erf(self, x):
        return _checked(_special.erf(_plain(x)))

    def expit(self, x):
        return _checked(_special.expit(_plain(x)))

    def add_at(self, target, index, values):
        _np.add.at(_plain(target), _plain(index), _plain(values))

    def as_strided(self, x, shape, strides, writeable=False):
        return _as_strided(_plain(x), shape, strides, writeable=writeable).view(CheckedArray)

    def broadcast_to(self, array, shape):
        return _np.broadcast_to(_plain(array), shape).view(CheckedArray)

    def from_numpy(self, array):
        return _np.asarray(array).view(CheckedArray)


NUMPY = Backend("numpy", _np, _np.ndarray)
CHECKED = _CheckedBackend("checked", _CheckedNamespace(), CheckedArray)
_BACKENDS = {"numpy": NUMPY, "checked": CHECKED}
_BY_TYPE = {_np.ndarray: NUMPY, CheckedArray: CHECKED}
_default = NUMPY


# ----------------------------------------------------------------------------- lookup
def backend_of(array) -> Backend:
    """The backend an array belongs to (NumPy for NumPy arrays and scalars)."""
    b = _BY_TYPE.get(type(array))
    if b is not None:
        return b
    for t, b in _BY_TYPE.items():
        if isinstance(array, t):
            return b
    return NUMPY


def ns(array):
    """The array namespace of ``array``'s backend (``numpy`` for NumPy arrays)."""
    b = _BY_TYPE.get(type(array))
    return (b or backend_of(array)).xp


of = backend_of


def is_array(x) -> bool:
    """Whether ``x`` is an array of a registered backend."""
    return type(x) in _BY_TYPE


def default() -> Backend:
    """The backend that new arrays made from nothing go to."""
    return _default


def set_backend(backend_name: str) -> None:
    """Choose the default backend for new tensors: ``"numpy"`` or ``"checked"``."""
    global _default
    if backend_name not in _BACKENDS:
        raise ValueError(f"set_backend: unknown backend {backend_name!r}; available: "
                         f"{', '.join(repr(n) for n in _BACKENDS)}")
    _default = _BACKENDS[backend_name]


def get_backend() -> str:
    """The name of the default backend."""
    return _default.name


# ----------------------------------------------------------------------------- helpers
def asarray(data, dtype=None, like=None):
    """``data`` as an array of ``like``'s backend (default: the default backend)."""
    b = _default if like is None else backend_of(like)
    if type(data) is b.array_type and (dtype is None or data.dtype == dtype):
        return data
    return b.asarray(data, dtype=dtype)


def scalar_array(value, dtype, like):
    """A 0-d array holding ``value`` with ``dtype`` on ``like``'s backend."""
    b = _BY_TYPE.get(type(like)) or backend_of(like)
    return b.xp.asarray(value, dtype=dtype)


def to_numpy(array):
    """``array`` as a plain NumPy array (no copy for NumPy arrays)."""
    if type(array) is _np.ndarray:
        return array
    return backend_of(array).to_numpy(array)


def copy_into(dst, src) -> None:
    """Write ``src`` into ``dst`` (broadcasting, same-kind casting), in place."""
    backend_of(dst).xp.copyto(dst, src, casting="same_kind")


def numpy_kernel(fn):
    """Mark ``fn`` (a forward on arrays) as a NumPy-only kernel: its array arguments are
    handed over as NumPy arrays and its result goes back to the first argument's backend.
    The explicit boundary for CPU kernels that another backend replaces with its own."""
    import functools

    @functools.wraps(fn)
    def kernel(*arrays, **params):
        home = _BY_TYPE.get(type(arrays[0])) or backend_of(arrays[0])
        if home is NUMPY:
            return fn(*arrays, **params)
        if home is not CHECKED:
            raise NotImplementedError(f"{fn.__name__}: no kernel for the {home.name} backend")
        result = fn(*[to_numpy(a) for a in arrays], **params)
        return _checked(result)

    return kernel


def blas_info() -> dict:
    """Describe the BLAS library and its thread count (empty values when unknown)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return {"library": "unknown", "threads": None}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {
                "library": f"{pool.get('internal_api')} {pool.get('version') or ''}".strip(),
                "threads": pool.get("num_threads"),
            }
    return {"library": "none found", "threads": None}


def broadcast_to(array, shape):
    """A read-only broadcast view of ``array`` (on its own backend)."""
    return backend_of(array).broadcast_to(array, shape)


def add_at(target, index, values) -> None:
    """Unbuffered scatter-add into ``target`` (on its own backend)."""
    backend_of(target).add_at(target, index, values)


def erf(x):
    return backend_of(x).erf(x)


def expit(x):
    return backend_of(x).expit(x)


def default_rng(seed=None):
    """A seeded random generator of the default backend."""
    return _default.default_rng(seed)


# Compatibility names: the NumPy backend's namespace and array type.
xp = _np
ndarray = _np.ndarray
name = "numpy"
device = "cpu"

if os.environ.get("WONDERLAND_BACKEND"):
    set_backend(os.environ["WONDERLAND_BACKEND"])
