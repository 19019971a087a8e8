"""The Tensor: one backend array plus the bookkeeping of the transformations watching it.

A tensor produced by a recorded primitive points to the graph node of that application
(``_node``, and ``_index`` for primitives with several results); leaves have no node.
The node, not the tensor, keeps what the backward pass needs (see ``graph.py``), so a
tensor that user code drops is freed at once unless a rule saved it.

Other slots:

* ``_tangents`` — forward mode: a dict from ``jvp`` level to the tangent tensor;
* ``_batch``    — ``vmap``: ``(level, inner tensor, batch axis)`` for a batched tensor,
  whose ``data`` is then only an :class:`AbstractArray` of the per-example shape;
* ``_vc``       — the version counter, a one-element list shared by a tensor and the
  tensors that view its memory; in-place updates (optimiser steps, ``copy_``,
  ``load_state_dict``) bump it, and a backward pass that meets a saved value whose
  version changed raises instead of computing a wrong gradient.

Arithmetic operators and the NumPy-style methods (``sum``, ``reshape``, ...) are
installed on the class by ``wonderland.ops`` (``ops/methods.py``); ``backward`` by the
engine (``engine.py``).
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from . import dtypes
from .modes import get_state as _get_state

_new_object = object.__new__


class _Shaped:
    """``ndim`` and ``size`` from a ``shape`` attribute."""

    __slots__ = ()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class AbstractArray(_Shaped):
    """Shape and dtype without values: the ``data`` of a batched (vmapped) tensor.

    Reading the values of a tensor inside ``vmap`` depends on which example is meant,
    so anything beyond ``shape``, ``dtype``, ``ndim``, ``size`` raises.
    """

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __getattr__(self, name):
        raise TypeError(
            f"vmap: this operation reads the values of a batched tensor (attribute "
            f"{name!r} of its data); inside vmap only tensor operations may be used, "
            f"not values (Python branches on values, .item(), .numpy() ...)")

    def _no_values(self, *_args, **_kwargs):
        raise TypeError("vmap: this operation reads the values of a batched tensor; inside "
                        "vmap only tensor operations may be used, not values")

    __array__ = __bool__ = __float__ = __int__ = __index__ = __getitem__ = _no_values
    __iter__ = __len__ = _no_values

    def __repr__(self):
        return f"AbstractArray(shape={self.shape}, dtype={self.dtype})"


class Meta(_Shaped):
    """Shape and dtype of a value a node did not save: what a VJP rule may read of an
    input it did not declare in ``save``."""

    __slots__ = ("shape", "dtype", "owner", "index")

    def __init__(self, shape, dtype, owner, index=None):
        self.shape = shape
        self.dtype = dtype
        self.owner = owner              # the primitive's name
        self.index = index              # which input; None for the output

    @property
    def what(self):
        if self.index is None:
            return f"the output of '{self.owner}'"
        return f"input {self.index} of '{self.owner}'"

    def __getattr__(self, name):
        raise AttributeError(
            f"this rule reads {name!r} of {self.what}, which its primitive did not save; "
            f"add it to the primitive's save=(...)")

    def unsaved(self):
        raise TypeError(
            f"this rule uses the values of {self.what}, which its primitive did not save; "
            f"add it to the primitive's save=(...)")


class Tensor:
    """An n-dimensional array that automatic differentiation can follow.

    Create one with :func:`wonderland.tensor` (or ``Tensor(data)``); tensors are
    immutable to users: operations return new tensors, and only in-place updates outside
    the graph (optimiser steps, ``copy_``) change a tensor's values, bumping its version.
    """

    __slots__ = ("data", "requires_grad", "grad", "_node", "_index", "_tangents", "_batch",
                 "_vc", "__weakref__")

    __array_ufunc__ = None  # make `ndarray op Tensor` defer to the Tensor's reflected operator

    def __init__(self, data, dtype=None, requires_grad=False):
        self.data = to_array(data, dtype)
        self.grad = None
        self._node = None
        self._index = 0
        self._tangents = None
        self._batch = None
        self._vc = None
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
        """Where the values live (``"cpu"`` for NumPy arrays)."""
        data = self.data if self._batch is None else _physical(self).data
        return B.backend_of(data).device

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded primitive."""
        return self._node is None

    @property
    def grad_fn(self):
        """The graph node that produced this tensor (``None`` for leaves)."""
        return self._node

    @property
    def version(self) -> int:
        """How many in-place updates this tensor's memory has seen."""
        return self._vc[0] if self._vc is not None else 0

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
        _check_read(self, "numpy()")
        return _read_only(B.to_numpy(self.data))

    def __array__(self, dtype=None, copy=None):
        """NumPy's view of the values: read-only, so writing to it cannot corrupt a
        gradient (``np.array(t)`` copies and is writable, as usual)."""
        _check_read(self, "converting to a NumPy array")
        arr = B.to_numpy(self.data)
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        if copy:
            return arr.copy()
        return _read_only(arr)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """The array API's DLPack export: another library (``torch.from_dlpack(t)``,
        ``np.from_dlpack(t)``) reads and writes this tensor's memory without a copy.
        Read-only memory is exported as a copy, so it stays read-only (``copy=False``
        then raises ``BufferError``); see ``wonderland.interop.dlpack``."""
        if self._batch is not None:
            raise TypeError("__dlpack__: a tensor inside vmap has no memory of its own to "
                            "share; export the result of the vmapped function")
        _check_read(self, "__dlpack__ (sharing memory with another library)")
        arr = self.data
        kwargs = {k: v for k, v in (("stream", stream), ("max_version", max_version),
                                    ("dl_device", dl_device)) if v is not None}
        flags = getattr(arr, "flags", None)
        if flags is not None and not flags.writeable:
            if copy is False:
                raise BufferError("__dlpack__: this tensor's memory is read-only, and "
                                  "copy=False forbids the copy that keeps it so")
            arr = arr.copy()
        elif copy is not None:
            kwargs["copy"] = copy
        return arr.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        """DLPack's ``(device type, index)`` of the memory (the CPU is ``(1, 0)``)."""
        data = self.data if self._batch is None else _physical(self).data
        return data.__dlpack_device__()

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(
                f"item: only one-element tensors can be converted to a Python scalar, "
                f"got shape {self.shape}")
        _check_read(self, "item()")
        return self.data.item()

    def tolist(self):
        _check_read(self, "tolist()")
        return self.data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError(
                f"__index__: only one-element integer tensors can be used as an index, "
                f"got {self.dtype} of shape {self.shape}")
        _check_read(self, "using a tensor as an index")
        return int(self.data.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(
                f"bool: the truth value of a tensor with {self.data.size} elements is "
                f"ambiguous; use .any() or .all()")
        _check_read(self, "bool() (an if or while on a tensor)")
        return bool(self.data.item())

    __hash__ = object.__hash__  # identity hash; == is elementwise

    # ----------------------------------------------------------------- autodiff
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Mark a leaf tensor as a variable whose gradient ``backward`` accumulates."""
        if self._node is not None and not requires_grad:
            raise RuntimeError(
                "requires_grad_: cannot turn off gradients of a non-leaf tensor; use .detach()")
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad: only floating-point tensors can require gradients, "
                f"got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        """A new tensor with the same values (same memory, same version counter), cut
        off from every transformation."""
        return share(self, from_array(self.data)) if self._batch is None else _detach_batched(self)

    # ----------------------------------------------------------------- in place
    def copy_(self, src) -> "Tensor":
        """Copy ``src``'s values into this tensor's memory (broadcasting, casting to this
        dtype) and bump its version. Not recorded: use it to load weights by hand; a
        backward pass that needs the old values then raises instead of using new ones."""
        if self._node is not None:
            raise RuntimeError(
                f"copy_: cannot write into a tensor computed by a recorded operation "
                f"('{self._node.prim.name}'); copy into a leaf (a parameter or buffer)")
        if self._batch is not None:
            raise TypeError("copy_: in-place updates are not supported inside vmap")
        trace = _get_state().trace
        if trace is not None:
            trace.refuse_side_effect("copy_ (an in-place update)")
        values = src.data if isinstance(src, Tensor) else B.asarray(src)
        try:
            B.copy_into(self.data, values)
        except ValueError as exc:
            raise ValueError(f"copy_: cannot copy values of shape {getattr(values, 'shape', ())} "
                             f"into a tensor of shape {self.shape} ({exc})") from None
        except TypeError as exc:
            raise TypeError(f"copy_: cannot cast {getattr(values, 'dtype', type(values).__name__)} "
                            f"into a tensor of dtype {self.dtype} ({exc})") from None
        self.bump_version()
        return self

    def bump_version(self) -> None:
        """Record that this tensor's memory was changed in place (by code outside the
        graph, such as an optimiser step)."""
        vc = self._vc
        if vc is None:
            self._vc = [1]
        else:
            vc[0] += 1

    # ----------------------------------------------------------------- printing
    def __repr__(self) -> str:
        if self._batch is not None:
            return f"BatchedTensor(shape={self.shape}, dtype={self.dtype}, level={self._batch[0]})"
        body = np.array2string(B.to_numpy(self.data), separator=", ", prefix="tensor(",
                               threshold=200, edgeitems=3)
        dt = self.data.dtype
        extras = []
        if self.data.size == 0:
            extras.append(f"shape={self.shape}")
        if self.data.size == 0 or dt not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_):
            extras.append(f"dtype={dt}")
        if self._node is not None and self.requires_grad:
            extras.append(f"grad_fn={self._node.prim.name}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __str__ = __repr__


def _check_read(t, what):
    """Refuse to hand out a value ``jit`` is tracing (see ``tracing.py``)."""
    trace = _get_state().trace
    if trace is not None:
        trace.refuse(t, what)


def _read_only(arr):
    if isinstance(arr, np.ndarray) and arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def from_array(data) -> Tensor:
    """Fast constructor for a plain tensor around a backend array (no checks)."""
    t = _new_object(Tensor)
    t.data = data
    t.requires_grad = False
    t.grad = None
    t._node = None
    t._index = 0
    t._tangents = None
    t._batch = None
    t._vc = None
    return t


def physical_data(t: Tensor):
    """The array that holds ``t``'s values: its own, or inside ``vmap`` the innermost
    batched tensor's (an array of the right backend, e.g. for ``like=``)."""
    while t._batch is not None:
        t = t._batch[1]
    return t.data


def version_counter(t: Tensor) -> list:
    """``t``'s version counter, created on first use."""
    vc = t._vc
    if vc is None:
        vc = t._vc = [0]
    return vc


def share(source: Tensor, view: Tensor) -> Tensor:
    """Give ``view`` (a tensor over ``source``'s memory) ``source``'s version counter."""
    view._vc = version_counter(source)
    return view


def _physical(t: Tensor) -> Tensor:
    while t._batch is not None:
        t = t._batch[1]
    return t


def _detach_batched(t: Tensor) -> Tensor:
    level, inner, axis = t._batch
    out = from_array(t.data)
    out._batch = (level, inner.detach(), axis)
    return out


def to_array(data, dtype=None):
    """Convert user data to a backend array following the dtype rules of ``tensor``."""
    dtype = dtypes.as_dtype(dtype)
    if isinstance(data, Tensor):
        arr = data.data
        return arr if dtype is None or arr.dtype == dtype else arr.astype(dtype)
    if B.is_array(data) or isinstance(data, (np.ndarray, np.generic)):
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
    if isinstance(data, Tensor):
        data = data.data.copy()
    elif B.is_array(data) or isinstance(data, np.ndarray):
        data = data.copy()
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def to_tensor(x, what: str) -> Tensor:
    """``x`` as a tensor (numbers and arrays take the default dtypes); ``what`` names the
    operation in the error for anything else."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Meta):
        x.unsaved()
    try:
        return Tensor(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected a tensor, a number or an array, got "
                        f"{type(x).__name__}") from exc


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Return ``x`` as a tensor; Python scalars adopt ``like``'s dtype when it fits."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, bool, np.generic)) and not isinstance(x, np.ndarray):
        return from_array(B.scalar_array(x, scalar_dtype(x, like.dtype), like.data))
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
