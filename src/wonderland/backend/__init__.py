"""The array library that holds the numbers.

Everything that touches a concrete array library goes through this module (and the
primitives in ``wonderland.ops``, which call ``backend.xp``). The default backend is
NumPy with SciPy's special functions; a GPU backend (CuPy) can be added by filling in
the same names in :func:`set_backend` without touching the ops.

Names exported:

``xp``         the array module (``numpy``), used by the ops as ``B.xp.exp(...)``
``ndarray``    the concrete array type
``name``       short backend name (``"numpy"``)
``device``     where arrays live (``"cpu"``)
``erf, expit`` special functions
``add_at``     unbuffered scatter-add (repeated indices accumulate)
``default_rng``  a seeded random bit generator
"""

from __future__ import annotations

import numpy as _np
import scipy.special as _special

xp = _np
ndarray = _np.ndarray
name = "numpy"
device = "cpu"
erf = _special.erf
expit = _special.expit


def add_at(target, index, values):
    """Add ``values`` into ``target[index]`` in place; repeated indices accumulate."""
    _np.add.at(target, index, values)


def broadcast_to(array, shape):
    """A read-only broadcast view of ``array`` with ``shape`` (shapes already checked).

    Builds the strided view directly, which costs a fraction of ``numpy.broadcast_to``
    for the small arrays where that overhead shows.
    """
    if not array.flags.c_contiguous:
        return _np.broadcast_to(array, shape)
    lead = len(shape) - array.ndim
    strides = [0] * lead + [0 if n == 1 and m != 1 else st for n, m, st in
                            zip(array.shape, shape[lead:], array.strides)]
    view = _np.ndarray(shape, array.dtype, array, 0, tuple(strides))
    view.flags.writeable = False
    return view


def default_rng(seed=None):
    """A new random generator (PCG64) seeded with ``seed``."""
    return _np.random.default_rng(seed)


def asarray(data, dtype=None):
    """Convert ``data`` to a backend array (no copy when it already is one)."""
    return _np.asarray(data, dtype=dtype)


def to_numpy(array):
    """Return ``array`` as a NumPy array (identity on the NumPy backend)."""
    return _np.asarray(array)


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


def set_backend(backend_name: str) -> None:
    """Select the array backend. Only ``"numpy"`` ships today."""
    if backend_name != "numpy":
        raise ValueError(
            f"set_backend: unknown backend {backend_name!r}; available: 'numpy'"
        )
