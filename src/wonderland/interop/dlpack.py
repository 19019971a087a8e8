"""Arrays across libraries through DLPack, without copies.

``wl.from_dlpack(x)`` wraps any object that speaks the array API's DLPack protocol
(``__dlpack__`` and ``__dlpack_device__``: a torch tensor, a NumPy array, a JAX or CuPy
array) as a :class:`wonderland.Tensor` over the *same memory*; ``Tensor.__dlpack__``
lets those libraries do the same with a tensor (``torch.from_dlpack(t)``,
``np.from_dlpack(t)``). What one side writes, the other sees.

Read-only memory stays read-only: a tensor whose array is read-only (a view that
NumPy marks so, an array that came from a read-only source) is exported as a *copy*,
because consumers such as torch ignore DLPack's read-only flag and would write into it;
``copy=False`` then raises ``BufferError`` instead. ``from_dlpack`` of a read-only NumPy
array gives a tensor over that read-only array.

Sharing bypasses the graph: the exchanged array holds values, not gradients, and a write
through another library's view is not an in-place update wonderland records (no version
bump), so do not write into a tensor that a recorded computation saved.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..core.tensor import Tensor

__all__ = ["from_dlpack"]

_CPU, _CUDA, _CUDA_HOST, _CUDA_MANAGED = 1, 2, 3, 13


def _name(x):
    cls = type(x)
    return f"{cls.__module__.partition('.')[0]}.{cls.__qualname__}" \
        if cls.__module__ != "builtins" else cls.__qualname__


def from_dlpack(x, *, copy=None) -> Tensor:
    """A tensor over the memory of ``x`` (an object with ``__dlpack__``): torch, NumPy,
    JAX, CuPy arrays. CPU memory becomes a NumPy-backed tensor, CUDA memory a CuPy-backed
    one (the ``cupy`` backend). ``copy=True`` copies; ``copy=False`` refuses to (the
    array API's meaning); ``None`` copies only when sharing is impossible."""
    if isinstance(x, Tensor):
        return Tensor(x.data.copy()) if copy else x
    if not (hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__")):
        raise TypeError(f"from_dlpack: expected an array with __dlpack__ and "
                        f"__dlpack_device__ (a torch tensor, NumPy, JAX or CuPy array), got "
                        f"{_name(x)}")
    try:
        kind, _ = x.__dlpack_device__()
    except Exception as exc:  # the producer's own error type
        raise TypeError(f"from_dlpack: cannot ask {_name(x)} for its device "
                        f"({type(exc).__name__}: {exc})") from None
    kind = int(kind)
    try:
        if kind in (_CPU, _CUDA_HOST):
            arr = np.from_dlpack(x, copy=copy)
        elif kind in (_CUDA, _CUDA_MANAGED):
            arr = B.get("cupy").xp.from_dlpack(x)
            if copy:
                arr = arr.copy()
        else:
            raise TypeError(f"from_dlpack: {_name(x)} lives on DLPack device type "
                            f"{kind}, which has no wonderland backend (CPU: 1, CUDA: 2)")
    except (BufferError, RuntimeError) as exc:
        hint = ""
        if "grad" in str(exc).lower():
            hint = "; pass x.detach() (the exchange carries values, not gradients)"
        raise BufferError(f"from_dlpack: {_name(x)} refused to share its memory ({exc})"
                          f"{hint}") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"from_dlpack: tensors hold float, integer or bool values, got "
                        f"{arr.dtype}")
    t = Tensor(np.zeros(0, arr.dtype))
    t.data = arr if kind in (_CUDA, _CUDA_MANAGED) else B.for_device("cpu").asarray(arr)
    return t
