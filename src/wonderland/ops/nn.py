"""Fused primitives for neural-network layers, where composition would be slower or
less stable: ``linear`` (x @ W + b in one node) and ``softmax_cross_entropy``.

Their composite references (``x @ w + b``; ``-(q * log_softmax(z)).sum(-1)``) are
checked against them in the tests.
"""

from __future__ import annotations

import numpy as np

from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ..core.vmap import batch_size, broadcast_batch, elementwise_rule, moveaxis
from ._common import operands, to_tensor
from .elementwise import _add
from .linalg import _matmul_batch, _mm, _mT
from .reductions import log_softmax, softmax
from .reductions import sum as _sum


# ----------------------------------------------------------------------------- linear
def _linear_forward(x, w, b):
    if x.ndim > 2 and x.flags.c_contiguous:
        out = x.reshape(-1, x.shape[-1]) @ w
        out += b
        return out.reshape(x.shape[:-1] + (w.shape[-1],))
    out = np.matmul(x, w)
    out += b
    return out


def _linear_vjp_w(g, out, x, w, b):
    if x.ndim == 1:
        return x.expand_dims(-1) * g.expand_dims(-2)
    if x.ndim > 2:
        return _mm(_mT(x.reshape(-1, x.shape[-1])), g.reshape(-1, g.shape[-1]))
    return _mm(_mT(x), g)


def _linear_vjp_x(g, out, x, w, b):
    return _mm(g, _mT(w))


def _linear_batch(args, axes):
    (x, w, b), (ax, aw, ab) = args, axes
    if aw is None and ab is None:                 # the usual case: examples share weights
        return apply(_linear, (moveaxis(x, ax, 0), w, b)), 0
    prod, ap = _matmul_batch([x, w], [ax, aw])
    return elementwise_rule(_add)([prod, b], [ap, ab])


_linear = Primitive(
    "linear", _linear_forward, save=(0, 1),
    vjp=(_linear_vjp_x, _linear_vjp_w, lambda g, out, x, w, b: g),
    jvp=(lambda t, out, x, w, b: _mm(t, w), lambda t, out, x, w, b: _mm(x, t),
         lambda t, out, x, w, b: t),
    batch=_linear_batch)


def linear(x, weight, bias=None) -> Tensor:
    """``x @ weight + bias`` with ``weight`` of shape (in, out) (channels last).

    One fused node: the bias is added in place into the product, and the backward
    folds batch dimensions into one matrix product.
    """
    x, weight = operands(x, weight, "linear")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (in, out), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: input features {x.shape[-1] if x.ndim else None} do not "
                         f"match weight {weight.shape} (input shape {x.shape})")
    if bias is None:
        return _mm(x, weight) if x.ndim else x @ weight
    bias = to_tensor(bias, "linear")
    if bias.shape != (weight.shape[1],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[1]},), got {bias.shape}")
    if x.dtype != weight.dtype or bias.dtype != weight.dtype:
        dtype = np.result_type(x.dtype, weight.dtype, bias.dtype)
        x, weight, bias = x.astype(dtype), weight.astype(dtype), bias.astype(dtype)
    return apply(_linear, (x, weight, bias))


# ----------------------------------------------------------------------------- softmax cross-entropy
def _sce_forward(z, q):
    shifted = z - z.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -(q * logp).sum(axis=-1)


def _sce_vjp_z(g, out, z, q):
    # d/dz of -sum(q * log_softmax(z)) = softmax(z) * sum(q) - q
    return g.expand_dims(-1) * (softmax(z) * _sum(q, -1, keepdims=True) - q)


def _sce_jvp_z(t, out, z, q):
    return _sum(t * (softmax(z) * _sum(q, -1, keepdims=True) - q), -1)


def _sce_batch(args, axes):
    size = batch_size(args, axes)
    z, q = (broadcast_batch(a, ax, size) for a, ax in zip(args, axes))
    return apply(_softmax_ce, (z, q)), 0


_softmax_ce = Primitive(
    "softmax_cross_entropy", _sce_forward, save=(0, 1),
    vjp=(_sce_vjp_z, lambda g, out, z, q: -g.expand_dims(-1) * log_softmax(z)),
    jvp=(_sce_jvp_z, lambda t, out, z, q: -_sum(t * log_softmax(z), -1)),
    batch=_sce_batch)


def softmax_cross_entropy(logits, target_probs) -> Tensor:
    """Per-row ``-sum(q * log_softmax(logits))`` over the last axis, as one primitive.

    ``target_probs`` has the logits' shape (rows need not sum to 1: class weights and
    label smoothing enter through it). The gradient in the logits is
    ``softmax(z) * sum(q) - q``, computed without forming ``log(softmax)``'s Jacobian.
    """
    z, q = operands(logits, target_probs, "softmax_cross_entropy")
    if z.shape != q.shape:
        raise ValueError(f"softmax_cross_entropy: targets of shape {q.shape} do not match "
                         f"logits of shape {z.shape}")
    if z.ndim == 0:
        raise ValueError("softmax_cross_entropy: logits need a class axis")
    if q.dtype != z.dtype:
        q = q.astype(z.dtype)
    return apply(_softmax_ce, (z, q))
