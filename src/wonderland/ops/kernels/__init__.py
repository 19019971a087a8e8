"""Compiled CPU kernels for what vectorised NumPy does badly.

Each kernel is plain Python over arrays, compiled by ``numba`` the first time it runs
(and cached on disk, so later processes load it). Each has a NumPy reference that the
tests compare it with, and which runs instead when numba is not importable or when
``WONDERLAND_KERNELS=numpy`` is set.
"""

from __future__ import annotations

import os

try:                                                    # pragma: no cover - depends on install
    import numba as _numba
except ImportError:                                     # pragma: no cover
    _numba = None

ENABLED = _numba is not None and os.environ.get("WONDERLAND_KERNELS", "") != "numpy"


def jit(fn):
    """Compile ``fn`` with numba (no Python objects, cached on disk); ``fn`` itself when
    compiled kernels are off."""
    if not ENABLED:
        return fn
    return _numba.njit(cache=True, nogil=True, fastmath=False)(fn)
