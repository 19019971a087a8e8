"""The Tensor: one backend array plus the bookkeeping of the transformations watching it.

A tensor is also a node of the reverse-mode graph (as in micrograd): a tensor produced
by a primitive remembers the primitive (``_prim``), its input tensors (``_inputs``) and
the static parameters of the call (``_params``). Leaves have ``_prim is None``.
Forward mode keeps tangents beside the value in ``_tangents``, a dict from forward
level to tangent tensor.

Arithmetic operators and the NumPy-style methods (``sum``, ``reshape``, ...) are
installed on the class by ``wonderland.ops`` (``ops/methods.py``), so that every
primitive's forward and rules live in one place with its family.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from . import dtypes
from .modes import state

_new_object = object.__new__


class Tensor:
    """An n-dimensional array that automatic differentiation can follow.

    Create one with :func:`wonderland.tensor` (or ``Tensor(data)``); tensors are
    immutable to users: operations return new tensors, and only optimisers update
    parameters in place, outside the graph.
    """

    __slots__ = ("data", "requires_grad", "grad", "_prim", "_inputs", "_params",
                 "_tangents", "_origin", "__weakref__")

    __array_ufunc__ = None  # make `ndarray op Tensor` defer to the Tensor's reflected operator

    def __init__(self, data, dtype=None, requires_grad=False):
        self.data = _to_array(data, dtype)
        self.grad = None
        self._prim = None
        self._inputs = None
        self._params = None
        self._tangents = None
        self._origin = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def device(self) -> str:
        return B.device

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded primitive."""
        return self._prim is None

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self.data.shape[0]):
            yield self[i]

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """The values as a read-only NumPy array (no copy on the NumPy backend)."""
        arr = B.to_numpy(self.data)
        if isinstance(arr, np.ndarray):
            arr = arr.view()
            arr.flags.writeable = False
        return arr

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(
                f"item: only one-element tensors can be converted to a Python scalar, "
                f"got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        arr = B.to_numpy(self.data)
        return arr if dtype is None else arr.astype(dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError(
                f"__index__: only one-element integer tensors can be used as an index, "
                f"got {self.dtype} of shape {self.shape}")
        return int(self.data.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(
                f"bool: the truth value of a tensor with {self.data.size} elements is "
                f"ambiguous; use .any() or .all()")
        return bool(self.data.item())

    __hash__ = object.__hash__  # identity hash; == is elementwise

    # ----------------------------------------------------------------- autodiff
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Mark a leaf tensor as a variable whose gradient ``backward`` accumulates."""
        if self._prim is not None and not requires_grad:
            raise RuntimeError(
                "requires_grad_: cannot turn off gradients of a non-leaf tensor; use .detach()")
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad: only floating-point tensors can require gradients, "
                f"got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        """A new tensor with the same values, cut off from every transformation."""
        return _wrap(self.data)

    def backward(self, grad=None, retain_graph=None, create_graph=False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf requiring grad.

        ``grad`` is the cotangent of ``self`` (required unless ``self`` has one element).
        The graph's saved tensors are released after the sweep unless ``retain_graph``
        (default: ``create_graph``). With ``create_graph=True`` the gradients are
        themselves recorded, so they can be differentiated again.
        """
        from .engine import backward as _backward

        _backward(self, grad, retain_graph, create_graph)

    # ----------------------------------------------------------------- printing
    def __repr__(self) -> str:
        body = np.array2string(B.to_numpy(self.data), separator=", ", prefix="tensor(",
                               threshold=200, edgeitems=3)
        dt = self.data.dtype
        extras = []
        if self.data.size == 0:
            extras.append(f"shape={self.shape}")
        if self.data.size == 0 or dt not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_):
            extras.append(f"dtype={dt}")
        if self._prim is not None and self.requires_grad:
            extras.append(f"grad_fn={self._prim.name}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __str__ = __repr__


def _wrap(data) -> Tensor:
    """Fast constructor for a plain tensor around a backend array (no checks)."""
    t = _new_object(Tensor)
    if type(data) is not B.ndarray:
        data = B.xp.asarray(data)
    t.data = data
    t.requires_grad = False
    t.grad = None
    t._prim = None
    t._inputs = None
    t._params = None
    t._tangents = None
    t._origin = None
    return t


def _to_array(data, dtype=None):
    """Convert user data to a backend array following the dtype rules of ``tensor``."""
    dtype = dtypes.as_dtype(dtype)
    if isinstance(data, Tensor):
        arr = data.data
        return arr if dtype is None or arr.dtype == dtype else arr.astype(dtype)
    if isinstance(data, B.ndarray) or isinstance(data, np.ndarray) or isinstance(data, np.generic):
        arr = B.asarray(data)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"tensor: unsupported dtype {arr.dtype}; expected a float, "
                            f"integer or bool array")
        if dtype is not None and arr.dtype != dtype:
            arr = arr.astype(dtype)
        return arr
    try:
        arr = np.asarray(data)
    except ValueError as exc:
        raise ValueError(f"tensor: cannot build a tensor from ragged data ({exc})") from None
    if arr.dtype == object:
        if isinstance(data, (list, tuple)) and any(isinstance(e, Tensor) for e in _flat(data)):
            raise TypeError("tensor: got a list containing Tensors; use wl.stack to "
                            "combine tensors")
        raise TypeError(f"tensor: cannot convert object of type {type(data).__name__} "
                        f"to a tensor")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"tensor: unsupported data of dtype {arr.dtype}; expected numbers")
    if dtype is None:
        if arr.dtype.kind == "f":
            dtype = dtypes.get_default_dtype()       # Python floats follow the default
        elif arr.dtype.kind in "iu":
            dtype = dtypes.int64
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return B.asarray(arr)


def _flat(seq):
    for e in seq:
        if isinstance(e, (list, tuple)):
            yield from _flat(e)
        else:
            yield e


def tensor(data, dtype=None, requires_grad=False) -> Tensor:
    """Create a tensor from a scalar, a (nested) list, a NumPy array or a tensor.

    Python floats become the default float dtype (float32); Python ints int64; bools
    bool. A NumPy array keeps its dtype (a float64 array stays float64). The data is
    always copied, as ``torch.tensor`` does (``wl.as_tensor`` and ``wl.Tensor`` share an
    array's memory when they can).

    >>> wl.tensor([[1.0, 2.0]], requires_grad=True).shape
    (1, 2)
    """
    if isinstance(data, (np.ndarray, Tensor)):
        arr = data.data if isinstance(data, Tensor) else data
        data = arr.copy()
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Return ``x`` as a tensor; Python scalars adopt ``like``'s dtype when it fits."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, bool, np.generic)) and not isinstance(x, np.ndarray):
        return _wrap(B.xp.asarray(x, dtype=scalar_dtype(x, like.data.dtype)))
    return Tensor(x)


def scalar_dtype(value, dtype):
    """The dtype a Python scalar takes next to an array of ``dtype`` (weak typing)."""
    kind = dtype.kind
    if isinstance(value, (bool, np.bool_)):
        return dtype
    if isinstance(value, (int, np.integer)):
        return dtype if kind in "fiu" else dtypes.int64
    if isinstance(value, (float, np.floating)):
        return dtype if kind == "f" else dtypes.get_default_dtype()
    raise TypeError(f"cannot combine a tensor with a value of type {type(value).__name__}")


def is_grad_enabled() -> bool:
    return state.grad_enabled
