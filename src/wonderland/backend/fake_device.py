"""A stand-in GPU for machines without one: NumPy arrays that play a separate device.

:func:`make` builds a :class:`~wonderland.backend.cupy_backend.DeviceBackend` over NumPy
whose arrays (:class:`FakeDeviceArray`, a NumPy subclass) behave like CuPy's in the ways
that matter to the code above them:

* they refuse to meet arrays of the host (NumPy's, the ``checked`` backend's) in any
  operation — the error names both devices, as a real device mismatch does;
* moving values between the host and this device always copies (``.to("cuda")`` never
  shares memory with the CPU tensor it came from);
* the NumPy-only kernels run in their whole-array device versions
  (``device_kernels.py``), exactly as on CuPy;
* ufuncs from outside NumPy (SciPy's ``erf``) and ``ufunc.at`` are refused, as CuPy has
  neither: those go through the backend (``B.of(x).erf``, ``B.add_at``).

The test suite registers it as the ``cuda`` device (:func:`fake_cuda`) to check
``Tensor.to``, ``Module.to``, device mismatch errors, optimiser state, checkpoints and
the device kernels without a GPU. It is not a speed model of anything.
"""

from __future__ import annotations

import contextlib

import numpy as _np
import scipy.linalg as _linalg
import scipy.special as _special
from numpy.lib.stride_tricks import as_strided as _as_strided

from . import DeviceMismatchError, register, unregister
from .cupy_backend import DeviceBackend


class FakeDeviceArray(_np.ndarray):
    """An array of the stand-in device (see the module docstring)."""

    device_name = "cuda"

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if getattr(_np, ufunc.__name__, None) is not ufunc:
            raise TypeError(f"{ufunc.__name__}: a ufunc from outside NumPy (SciPy's?) met a "
                            f"device array; CuPy has no version of it: go through the backend "
                            f"(B.of(x).{ufunc.__name__})")
        if method == "at":
            raise TypeError(f"{ufunc.__name__}.at on a device array: use B.add_at (CuPy's "
                            f"scatter-add), which every backend provides")
        args = [_unwrap(x, ufunc.__name__) for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o, ufunc.__name__) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None and method != "at":
            return out[0] if len(out) == 1 else out
        return from_array(result)

    def __array_function__(self, func, types, args, kwargs):
        name = getattr(func, "__name__", "function")
        args = [_unwrap(a, name) for a in args]
        kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
        return from_array(func(*args, **kwargs))


def _unwrap(x, what):
    """``x`` as a plain ndarray when it is a device array; refuse host arrays."""
    if type(x) is FakeDeviceArray:
        return x.view(_np.ndarray)
    if isinstance(x, _np.ndarray):
        raise DeviceMismatchError(
            f"{what}: inputs on different devices: cuda (the stand-in device) and cpu "
            f"(an array of shape {x.shape}); move them to one device first with .to(device)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    return x


def from_array(result):
    if type(result) is _np.ndarray:
        return result.view(FakeDeviceArray)
    if isinstance(result, _np.generic):
        return _np.asarray(result).view(FakeDeviceArray)
    if isinstance(result, tuple):
        return tuple(from_array(r) for r in result)
    if isinstance(result, list):
        return [from_array(r) for r in result]
    return result


class _Namespace:
    """NumPy's functions on device arrays, returning device arrays."""

    def __getattr__(self, name):
        fn = getattr(_np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def wrapped(*args, **kwargs):
            args = [_unwrap(a, name) for a in args]
            kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
            return from_array(fn(*args, **kwargs))

        wrapped.__name__ = name
        return wrapped


def _host(array):
    return _np.array(array.view(_np.ndarray), copy=True)          # a transfer copies


def _to_device(array):
    return _np.array(_np.asarray(array), copy=True).view(FakeDeviceArray)


def _special_fn(fn):
    return lambda x: from_array(fn(_unwrap(x, fn.__name__)))


class _Special:
    erf = staticmethod(_special_fn(_special.erf))
    expit = staticmethod(_special_fn(_special.expit))


def _scatter_add(target, index, values):
    _np.add.at(_unwrap(target, "add_at"), _unwrap(index, "add_at"), _unwrap(values, "add_at"))


def _strided(x, shape, strides):
    return _as_strided(_unwrap(x, "as_strided"), shape, strides, writeable=False).view(
        FakeDeviceArray)


def _solve_triangular(a, b, *, lower, trans):
    return from_array(_linalg.solve_triangular(_unwrap(a, "solve_triangular"),
                                          _unwrap(b, "solve_triangular"),
                                          lower=lower, trans=trans, check_finite=False))


def make(name="fake-cuda") -> DeviceBackend:
    """A new stand-in device backend (not registered; see :func:`fake_cuda`)."""
    return DeviceBackend(name, _Namespace(), FakeDeviceArray, "cuda", special=_Special,
                         scatter_add=_scatter_add, as_strided=_strided, host=_host,
                         to_device=_to_device, solve_triangular=_solve_triangular)


@contextlib.contextmanager
def fake_cuda(default=False):
    """Register a stand-in device backend as ``cuda`` for the duration of the block
    (and, with ``default=True``, make it the default backend); yields the backend."""
    from . import _DEVICES, get_backend, set_backend

    before = _DEVICES.get("cuda")
    previous = get_backend()
    backend = register(make(), device_kind="cuda")
    try:
        if default:
            set_backend(backend.name)
        yield backend
    finally:
        if default:
            set_backend(previous)
        unregister(backend)
        if before is not None:
            _DEVICES["cuda"] = before


_LOADED = None


def load() -> DeviceBackend:
    """Register the stand-in device once under the name ``fake-cuda`` (and as the
    ``cuda`` device), so that ``WONDERLAND_BACKEND=fake-cuda`` runs a whole test suite
    with every tensor on it."""
    global _LOADED
    if _LOADED is None:
        _LOADED = register(make("fake-cuda"), device_kind="cuda")
    return _LOADED
