"""Dense layers' functional forms: the linear map, embeddings and one-hot rows."""

from __future__ import annotations

import numpy as np

from .. import backend as B
from .. import ops
from ..core.tensor import Tensor
from ..core.tracing import read_values, record_call
from ..ops.arguments import constant
from ..ops.nn import linear as _fused_linear
from ..ops.nn import linear_gelu as _fused_linear_gelu

__all__ = ["linear", "one_hot", "embedding"]


def linear(x, weight, bias=None, activation=None) -> Tensor:
    """``x @ weight + bias`` with ``weight`` of shape ``(in, out)``: ``x`` is ``(...,
    in)``, features last. One fused node (see ``wonderland.ops.nn.linear``).
    ``activation="gelu"`` applies the exact GELU in the same node, in the product's
    epilogue (``wonderland.ops.nn.linear_gelu``); ``"gelu_tanh"`` its tanh form."""
    ndim = x.ndim if isinstance(x, Tensor) else np.ndim(x)
    w_shape = tuple(getattr(weight, "shape", np.shape(weight)))
    if ndim == 0 and len(w_shape) == 2:
        raise ValueError(f"linear: expected an input of shape (..., {w_shape[0]}) (features "
                         f"last) for a weight of shape {w_shape}, got a scalar")
    if activation is None:
        return _fused_linear(x, weight, bias)
    if activation not in ("gelu", "gelu_tanh"):
        raise ValueError(f"linear: activation must be None, 'gelu' or 'gelu_tanh', "
                         f"got {activation!r}")
    return _fused_linear_gelu(x, weight, bias, "tanh" if activation == "gelu_tanh" else "none")


def one_hot(indices, num_classes=-1, dtype=None) -> Tensor:
    """One-hot rows; ``num_classes=-1`` infers ``max(indices) + 1`` (as PyTorch)."""
    if num_classes == -1:
        idx = np.asarray(B.to_numpy(read_values(indices, "one_hot")))
        num_classes = int(idx.max(initial=-1)) + 1
    return ops.one_hot(indices, num_classes, dtype)


def embedding(indices, weight, padding_idx=None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) at integer ``indices``; the result has
    shape ``indices.shape + (dim,)``. Rows at ``padding_idx`` receive no gradient."""
    idx = indices if isinstance(indices, Tensor) else constant(np.asarray(indices))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    n = weight.shape[0]
    if idx.size:
        record_call(check_index_range, idx.data, n=n, what="embedding", of="embeddings")
    out = ops.take(weight, idx, axis=0)
    if padding_idx is not None:
        # the padding row is looked up as usual but receives no gradient
        out = ops.where(ops.expand_dims(ops.equal(idx, padding_idx), -1), out.detach(), out)
    return out


def check_index_range(idx, *, n, what, of):
    """Raise unless every index lies in ``[0, n)`` (a recorded step under ``jit``)."""
    lo, hi = idx.min(), idx.max()
    if lo < 0 or hi >= n:
        raise IndexError(f"{what}: index {int(hi if hi >= n else lo)} is out of range for "
                         f"{n} {of}")
