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
``cupy``     CuPy arrays on an NVIDIA GPU (``cupy_backend.py``), loaded on first use by
             ``set_backend("cupy")`` or ``tensor.to("cuda")``;
``fake-cuda`` a stand-in device over NumPy for machines without a GPU
             (``fake_device.py``): arrays that refuse to meet CPU arrays.

Kernels marked ``numpy_kernel`` run on NumPy arrays; each declares its whole-array
version for a device backend (``device_kernels.py``) or that it runs on the host there.

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

    # whether NumPy-only kernels (``numpy_kernel``) run here in their whole-array device
    # versions (an accelerator backend; see ``backend/cupy_backend.py``)
    runs_device_kernels = False

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
        return _expit(x)

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

    def from_other(self, array):
        """An array of any backend as an array of this one: no copy when it already is
        one, a copy (a transfer between devices) otherwise."""
        if type(array) is self.array_type:
            return array
        return self.from_numpy(to_numpy(array))

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


class DeviceMismatchError(TypeError):
    """Arrays of two devices (or two backends) met in one operation."""


def check_same_device(what, arrays) -> None:
    """Raise :class:`DeviceMismatchError` naming ``what`` and the devices when the arrays
    (or tensors' data) do not all belong to one backend; scalars are fine."""
    homes = []
    for a in arrays:
        a = getattr(a, "data", a)
        if type(a) in _BY_TYPE:
            b = _BY_TYPE[type(a)]
            if b not in homes:
                homes.append(b)
    if len(homes) > 1:
        names = " and ".join(f"{b.device} ({b.name})" for b in homes)
        raise DeviceMismatchError(f"{what}: inputs on different devices: {names}; move them "
                                  f"to one device first with .to(device)")


# backends that load on first use (their library may not be installed): name -> loader
_LAZY = {"cupy": "wonderland.backend.cupy_backend",
         "fake-cuda": "wonderland.backend.fake_device"}
# which backend holds each device kind other than "cpu" ("cuda" -> the CuPy backend)
_DEVICES: dict = {}


def register(backend: Backend, device_kind: str | None = None) -> Backend:
    """Make ``backend`` known: by its name (``set_backend``), by its array type
    (``backend_of``) and, with ``device_kind`` (``"cuda"``), as the backend of that kind
    of device (``for_device``). Returns it."""
    _BACKENDS[backend.name] = backend
    _BY_TYPE[backend.array_type] = backend
    if device_kind is not None:
        _DEVICES[device_kind] = backend
    return backend


def unregister(backend: Backend) -> None:
    """Forget ``backend`` (the inverse of :func:`register`)."""
    global _default
    _BACKENDS.pop(backend.name, None)
    _BY_TYPE.pop(backend.array_type, None)
    for kind in [k for k, b in _DEVICES.items() if b is backend]:
        del _DEVICES[kind]
    if _default is backend:
        _default = NUMPY


def get(backend_name: str) -> Backend:
    """The backend called ``backend_name``, loading it on first use (``"cupy"``)."""
    if backend_name not in _BACKENDS and backend_name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[backend_name]).load()
    if backend_name not in _BACKENDS:
        raise ValueError(f"unknown backend {backend_name!r}; available: "
                         f"{', '.join(repr(n) for n in list(_BACKENDS) + [n for n in _LAZY if n not in _BACKENDS])}")
    return _BACKENDS[backend_name]


def parse_device(device) -> tuple:
    """``(kind, index)`` of a device name: ``"cpu"``, ``"cuda"``, ``"cuda:1"``."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected a device name such as 'cpu' or 'cuda', got "
                        f"{type(device).__name__}")
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return kind, (int(index) if index else None)


def for_device(device) -> Backend:
    """The backend whose arrays live on ``device`` (``"cpu"``: the default backend when
    it is a CPU one, else NumPy; ``"cuda"``: CuPy, loaded on first use)."""
    kind, _ = parse_device(device)
    if kind == "cpu":
        return _default if _default.device == "cpu" else NUMPY
    if kind not in _DEVICES:
        get("cupy")
    return _DEVICES[kind]


def default() -> Backend:
    """The backend that new arrays made from nothing go to."""
    return _default


def set_backend(backend_name: str) -> None:
    """Choose the default backend for new tensors: ``"numpy"``, ``"checked"`` or
    ``"cupy"`` (loaded on first use; needs CuPy and a GPU)."""
    global _default
    if backend_name not in _BACKENDS and backend_name not in _LAZY:
        raise ValueError(f"set_backend: unknown backend {backend_name!r}; available: "
                         f"{', '.join(repr(n) for n in list(_BACKENDS) + list(_LAZY))}")
    _default = get(backend_name)


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
    """Write ``src`` into ``dst`` (broadcasting, same-kind casting), in place; an array
    of another backend (another device) is transferred first, as an explicit copy."""
    b = backend_of(dst)
    if type(src) is not b.array_type and type(src) in _BY_TYPE \
            and backend_of(src).device != b.device:
        src = b.from_other(src)
    b.xp.copyto(dst, src, casting="same_kind")


class HostOnly:
    """``numpy_kernel(fn, device=HostOnly("why"))``: ``fn`` has no device version; on an
    accelerator it runs on the host (inputs copied over and back, a one-time warning)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self):
        return f"HostOnly({self.reason!r})"


def numpy_kernel(fn=None, *, device):
    """Mark ``fn`` (a forward on arrays) as a NumPy-only kernel: its array arguments are
    handed over as NumPy arrays and its result goes back to the first argument's backend.
    ``device`` is the kernel's whole-array version for accelerator backends (a function
    with ``fn``'s signature, ``device_kernels.py``), or :class:`HostOnly` saying why there
    is none. Usable as ``numpy_kernel(fn, device=...)`` or ``@numpy_kernel(device=...)``."""
    if fn is None:
        return lambda f: numpy_kernel(f, device=device)
    if not (callable(device) or isinstance(device, HostOnly)):
        raise TypeError(f"numpy_kernel({fn.__qualname__}): device must be a function or "
                        f"HostOnly(reason), got {device!r}")
    import functools

    key = f"{fn.__module__}.{fn.__qualname__}"
    native = device if callable(device) else None

    @functools.wraps(fn)
    def kernel(*arrays, **params):
        home = _BY_TYPE.get(type(arrays[0])) or backend_of(arrays[0])
        if home is NUMPY:
            return fn(*arrays, **params)
        if home is CHECKED:
            return _checked(fn(*[to_numpy(a) for a in arrays], **params))
        if native is not None and home.runs_device_kernels:
            return native(*arrays, **params)
        return _on_host(home, key, fn, arrays, params)

    kernel.device = device
    NUMPY_KERNELS[key] = kernel
    return kernel


# every NumPy-only kernel of the library (the wrapped function, ``.device`` its device
# version or HostOnly), by qualified name for messages (see ``numpy_kernel``)
NUMPY_KERNELS: dict = {}
HOST_FALLBACKS: dict = {}     # (backend name, kernel name) -> times run on the host


def _on_host(home, key, fn, arrays, params):
    """The documented fallback for a backend without its own version of a NumPy kernel:
    copy the inputs to the host, run the NumPy kernel, copy the result back."""
    count = HOST_FALLBACKS.get((home.name, key), 0)
    if count == 0:
        import warnings

        warnings.warn(f"{key}: no {home.name} kernel; running it on the host (the arrays are "
                      f"copied to the CPU and back)", RuntimeWarning, stacklevel=3)
    HOST_FALLBACKS[(home.name, key)] = count + 1
    args = [to_numpy(a) if type(a) in _BY_TYPE else a for a in arrays]
    return _map_arrays(fn(*args, **params), home.from_numpy)


def _map_arrays(result, convert):
    if isinstance(result, tuple):
        return tuple(_map_arrays(r, convert) for r in result)
    if isinstance(result, list):
        return [_map_arrays(r, convert) for r in result]
    if isinstance(result, (_np.ndarray, _np.generic)):
        return convert(_np.asarray(result))
    return result


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


def _expit(x):
    """The logistic sigmoid. Large float32 arrays take ``e / (1 + e)`` with ``e = exp(-|x|)``
    (the numerator 1 where x ≥ 0): NumPy's vectorised exp makes it faster than SciPy's
    ``expit`` (``benchmarks/README.md``), and it never overflows (tiny results keep their relative accuracy);
    the rest is SciPy's."""
    if type(x) is not _np.ndarray or x.dtype != _np.float32 or x.size < _EXPIT_MIN:
        return _special.expit(x)
    e = _np.abs(x)
    _np.negative(e, out=e)
    _np.exp(e, out=e)
    out = _np.add(e, 1.0, dtype=_np.float32)
    _np.divide(_np.where(x >= 0, _np.float32(1.0), e), out, out=out)
    return out


_EXPIT_MIN = 4096      # below this SciPy's single call beats the five passes


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
