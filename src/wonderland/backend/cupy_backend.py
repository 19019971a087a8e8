"""The GPU backend: CuPy arrays on an NVIDIA device.

``wl.backend.set_backend("cupy")`` (or ``WONDERLAND_BACKEND=cupy``) makes new tensors on
the GPU; ``tensor.to("cuda")`` and ``module.to("cuda")`` move existing ones. CuPy is an
optional dependency (``pip install "wonderland[gpu]"``, the ``cupy-cuda12x`` wheel); this
module is imported only when a GPU is asked for, and says what is missing when CuPy or a
device is not there.

Everything above the primitives already runs on it: the primitives call ``B.ns(x)`` for
the array namespace (CuPy has NumPy's names), NumPy ufuncs dispatch to CuPy through
``__array_ufunc__``, and the extras are CuPy's own (``cupyx.scipy.special`` for ``erf``
and ``expit``, ``cupyx.scatter_add`` for unbuffered scatter-add, CuPy's ``as_strided``).
The NumPy-only kernels (convolution, pooling, triangular solves) are replaced by the
whole-array versions of ``device_kernels.py``. Random numbers are drawn on the host by
NumPy's generator and copied to the device, so one seed gives the same numbers on the
CPU and on the GPU (the parity suite relies on it).

:class:`DeviceBackend` is written against the namespace it is given, not against CuPy:
``fake_device.py`` builds one over NumPy whose arrays play a device that refuses to mix
with CPU arrays, which is how the tests exercise this code without a GPU.
"""

from __future__ import annotations

import numpy as _np

from . import Backend, register


class DeviceBackend(Backend):
    """A backend for an accelerator array library with NumPy's names.

    ``special`` gives ``erf`` and ``expit``; ``scatter_add(target, index, values)`` is
    unbuffered; ``host(array)`` and ``device(array)`` copy to and from NumPy;
    ``solve_triangular`` is SciPy's signature on device arrays.
    """

    runs_device_kernels = True

    def __init__(self, name, xp, array_type, device, *, special, scatter_add, as_strided,
                 host, to_device, solve_triangular, device_index=lambda: 0):
        super().__init__(name, xp, array_type, device)
        self._special = special
        self._scatter_add = scatter_add
        self._as_strided = as_strided
        self._host = host
        self._to_device = to_device
        self._solve_triangular = solve_triangular
        self.device_index = device_index          # the device new arrays go to (``cuda:N``)

    def asarray(self, data, dtype=None):
        if type(data) is not self.array_type and hasattr(data, "__array__") \
                and not isinstance(data, _np.ndarray):
            data = _np.asarray(data)
        if isinstance(data, _np.ndarray) and type(data) is not self.array_type:
            data = self._to_device(data.view(_np.ndarray))
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array):
        return self._host(array)

    def from_numpy(self, array):
        return self._to_device(_np.asarray(array))

    def erf(self, x):
        return self._special.erf(x)

    def expit(self, x):
        return self._special.expit(x)

    def add_at(self, target, index, values):
        self._scatter_add(target, index, values)

    def as_strided(self, x, shape, strides, writeable=False):
        return self._as_strided(x, shape=shape, strides=strides)

    def broadcast_to(self, array, shape):
        return self.xp.broadcast_to(array, shape)

    def solve_triangular(self, a, b, *, lower, trans):
        return self._solve_triangular(a, b, lower=lower, trans=trans)


_CUPY = None


def device_count() -> int:
    """How many CUDA devices CuPy sees (0 without CuPy, a driver or a device)."""
    try:
        import cupy
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:                              # no CuPy, no driver, no device
        return 0


def unavailable_reason() -> str | None:
    """Why the CuPy backend cannot run here (``None`` when it can)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install \"wonderland[gpu]\")"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:                       # cupy's CUDARuntimeError and friends
        return f"CuPy cannot reach a CUDA device ({type(exc).__name__}: {exc})"
    if n < 1:
        return "CuPy sees no CUDA device"
    return None


def load() -> DeviceBackend:
    """Make the ``cupy`` backend (once) and register it as the ``cuda`` device."""
    global _CUPY
    if _CUPY is not None:
        return _CUPY
    why = unavailable_reason()
    if why is not None:
        raise RuntimeError(f"the cupy backend needs CuPy and an NVIDIA GPU: {why}")
    import cupy
    import cupyx
    import cupyx.scipy.linalg
    import cupyx.scipy.special
    from cupy.lib.stride_tricks import as_strided

    def solve_triangular(a, b, *, lower, trans):
        return cupyx.scipy.linalg.solve_triangular(a, b, lower=lower, trans=trans)

    _CUPY = register(DeviceBackend(
        "cupy", cupy, cupy.ndarray, "cuda",
        special=cupyx.scipy.special, scatter_add=cupyx.scatter_add, as_strided=as_strided,
        host=cupy.asnumpy, to_device=cupy.asarray, solve_triangular=solve_triangular,
        device_index=cupy.cuda.runtime.getDevice),
        device_kind="cuda")
    return _CUPY


def synchronize() -> None:
    """Wait for the GPU to finish its queued work (before stopping a clock)."""
    if _CUPY is not None:
        import cupy
        cupy.cuda.get_current_stream().synchronize()
