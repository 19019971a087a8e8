"""The stateless form of every layer, activation and loss (``wl.nn.functional``).

Shapes are channels-last: features, classes and channels are the last axis.
Losses take ``reduction="mean" | "sum" | "none"``.
"""

from __future__ import annotations


import numpy as np

from .. import backend as B
from .. import ops
from ..core.tracing import read_values, record_call
from ..core.tensor import Tensor
from ..ops._common import constant, floating, operands, to_tensor
from ..ops import nn as _ops_nn
from ..ops.nn import linear as _fused_linear
from ..ops.nn import masked_scale, softmax_cross_entropy

__all__ = [
    "linear", "embedding", "dropout", "relu", "leaky_relu", "softplus", "elu", "gelu", "silu",
    "sigmoid", "tanh", "softmax", "log_softmax", "log_sigmoid", "mse_loss", "l1_loss",
    "huber_loss", "smooth_l1_loss", "hinge_loss", "multi_margin_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div",
    "softmax_cross_entropy", "one_hot", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "global_avg_pool", "global_max_pool", "masked_global_avg_pool",
    "masked_global_max_pool", "batch_norm", "layer_norm", "group_norm", "rms_norm",
    "channel_dropout",
    "scaled_dot_product_attention", "linear_attention", "linear_attention_recurrent",
    "alibi_bias", "rotate_half", "sinusoidal_embedding",
]

def linear(x, weight, bias=None) -> Tensor:
    """``x @ weight + bias`` with ``weight`` of shape ``(in, out)``: ``x`` is ``(...,
    in)``, features last. One fused node (see ``wonderland.ops.nn.linear``)."""
    ndim = x.ndim if isinstance(x, Tensor) else np.ndim(x)
    w_shape = tuple(getattr(weight, "shape", np.shape(weight)))
    if ndim == 0 and len(w_shape) == 2:
        raise ValueError(f"linear: expected an input of shape (..., {w_shape[0]}) (features "
                         f"last) for a weight of shape {w_shape}, got a scalar")
    return _fused_linear(x, weight, bias)


relu = ops.relu
sigmoid = ops.sigmoid
tanh = ops.tanh


def _array(t: Tensor):
    """An array of ``t``'s backend (its data, or the innermost data inside vmap)."""
    while t._batch is not None:
        t = t._batch[1]
    return t.data


def one_hot(indices, num_classes=-1, dtype=None) -> Tensor:
    """One-hot rows; ``num_classes=-1`` infers ``max(indices) + 1`` (as PyTorch)."""
    if num_classes == -1:
        idx = np.asarray(B.to_numpy(read_values(indices, "one_hot")))
        num_classes = int(idx.max(initial=-1)) + 1
    return ops.one_hot(indices, num_classes, dtype)


def softmax(x, axis=-1, *, dim=None) -> Tensor:
    """Softmax along ``axis`` (``dim`` is accepted as PyTorch's name for it)."""
    return ops.softmax(x, axis if dim is None else dim)


def log_softmax(x, axis=-1, *, dim=None) -> Tensor:
    """Log-softmax along ``axis`` (``dim`` is accepted as PyTorch's name for it)."""
    return ops.log_softmax(x, axis if dim is None else dim)


# ----------------------------------------------------------------------------- layers
def embedding(indices, weight, padding_idx=None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) at integer ``indices``; the result has
    shape ``indices.shape + (dim,)``. Rows at ``padding_idx`` receive no gradient."""
    idx = indices if isinstance(indices, Tensor) else constant(np.asarray(indices))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    n = weight.shape[0]
    if idx.size:
        record_call(_check_index_range, idx.data, n=n, what="embedding", of="embeddings")
    out = ops.take(weight, idx, axis=0)
    if padding_idx is not None:
        # the padding row is looked up as usual but receives no gradient
        out = ops.where(ops.expand_dims(ops.equal(idx, padding_idx), -1), out.detach(), out)
    return out


def _check_index_range(idx, *, n, what, of):
    """Raise unless every index lies in ``[0, n)`` (a recorded step under ``jit``)."""
    lo, hi = idx.min(), idx.max()
    if lo < 0 or hi >= n:
        raise IndexError(f"{what}: index {int(hi if hi >= n else lo)} is out of range for "
                         f"{n} {of}")


def dropout(x, p=0.5, training=True, generator=None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    ``1/(1-p)`` in training; the identity at inference."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = to_tensor(x, "dropout")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    from ..random import _gen

    keep = _gen(generator).bernoulli(1.0 - p, x.shape, dtype=bool)
    return masked_scale(x, keep, 1.0 / (1.0 - p))


# ----------------------------------------------------------------------------- activations
def leaky_relu(x, negative_slope=0.01) -> Tensor:
    """``x`` where positive, ``negative_slope * x`` elsewhere."""
    x = floating(to_tensor(x, "leaky_relu"))
    return ops.where(x > 0, x, x * negative_slope)


def softplus(x, beta=1.0, threshold=20.0) -> Tensor:
    """``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``; stable."""
    x = floating(to_tensor(x, "softplus"))
    if beta == 1.0:
        smooth = ops.softplus(x)
    else:
        smooth = ops.softplus(x * beta) * (1.0 / beta)
    return ops.where(x * beta > threshold, x, smooth)


def log_sigmoid(x) -> Tensor:
    """``log(sigmoid(x)) = -softplus(-x)``, stable."""
    return -softplus(-floating(to_tensor(x, "log_sigmoid")))


def elu(x, alpha=1.0) -> Tensor:
    """``x`` where positive, ``alpha (exp(x) - 1)`` elsewhere."""
    x = floating(to_tensor(x, "elu"))
    negative = ops.where(x > 0, 0.0, x)          # no tie at 0: elu'(0) = alpha, as PyTorch
    return ops.where(x > 0, x, ops.expm1(negative) * alpha)


def gelu(x, approximate="none") -> Tensor:
    """Gaussian error linear unit ``x Φ(x)``; ``approximate="tanh"`` for the tanh form
    (a fused primitive: the node keeps only ``x``)."""
    return _ops_nn.gelu(floating(to_tensor(x, "gelu")), approximate)


def silu(x) -> Tensor:
    """``x * sigmoid(x)`` (also called swish; a fused primitive keeping only ``x``)."""
    return _ops_nn.silu(floating(to_tensor(x, "silu")))


# ----------------------------------------------------------------------------- reductions
def _reduce(loss, reduction, what, weight_sum=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if weight_sum is not None:
            return loss.sum() / weight_sum
        return loss.mean()
    raise ValueError(f"{what}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(a, b, what):
    a, b = operands(a, b, what)
    if a.shape != b.shape:
        raise ValueError(f"{what}: input shape {a.shape} and target shape {b.shape} differ")
    a = floating(a)
    return a, b.astype(a.dtype) if b.dtype != a.dtype else b


# ----------------------------------------------------------------------------- regression losses
def mse_loss(input, target, reduction="mean") -> Tensor:  # noqa: A002 - PyTorch's name
    """Squared error ``(input - target)²``."""
    a, b = _same_shape(input, target, "mse_loss")
    d = a - b
    return _reduce(d * d, reduction, "mse_loss")


def l1_loss(input, target, reduction="mean") -> Tensor:  # noqa: A002
    """Absolute error ``|input - target|``."""
    a, b = _same_shape(input, target, "l1_loss")
    return _reduce(ops.abs(a - b), reduction, "l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0) -> Tensor:  # noqa: A002
    """Quadratic ``½e²`` inside ``|e| ≤ delta``, linear ``delta(|e| - ½delta)`` outside."""
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    a, b = _same_shape(input, target, "huber_loss")
    e = ops.abs(a - b)
    quad = ops.minimum(e, delta)
    return _reduce(quad * quad * 0.5 + (e - quad) * delta, reduction, "huber_loss")


def smooth_l1_loss(input, target, reduction="mean", beta=1.0) -> Tensor:  # noqa: A002
    """Huber divided by ``beta`` (PyTorch's smooth L1)."""
    if beta <= 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, delta=beta) * (1.0 / beta)


# ----------------------------------------------------------------------------- classification losses
def hinge_loss(scores, target, margin=1.0, reduction="mean") -> Tensor:
    """Binary hinge ``max(0, margin - y·s)`` with targets ``y ∈ {-1, +1}``."""
    s, y = _same_shape(scores, target, "hinge_loss")
    if y.size:
        record_call(_check_signs, y)
    return _reduce(ops.relu(margin - y * s), reduction, "hinge_loss")


def _class_targets(logits, target, what):
    t = target.data if isinstance(target, Tensor) else B.asarray(target, like=_array(logits))
    if t.dtype.kind not in "iu":
        raise TypeError(f"{what}: class targets must be integers, got {t.dtype}")
    if t.shape != logits.shape[:-1]:
        raise ValueError(f"{what}: target shape {t.shape} does not match the logits' leading "
                         f"shape {logits.shape[:-1]} (logits {logits.shape}, classes last)")
    return t


def _check_signs(y):
    if not ((y == -1) | (y == 1)).all():
        raise ValueError("hinge_loss: targets must be -1 or +1")


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean") -> Tensor:  # noqa: A002
    """Multi-class hinge: ``sum_{i≠y} max(0, margin - x_y + x_i)^p / C`` per sample."""
    x = floating(to_tensor(input, "multi_margin_loss"))
    t = _class_targets(x, target, "multi_margin_loss")
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: p must be 1 or 2, got {p}")
    c = x.shape[-1]
    if t.size:
        record_call(_check_index_range, t, n=c, what="multi_margin_loss", of="classes")
    t_col = ops.expand_dims(constant(t), -1)
    xy = ops.take_along_axis(x, t_col, axis=-1)
    xp = B.ns(t)
    viol = ops.relu(x - xy + margin)
    if p == 2:
        viol = viol * viol
    if weight is not None:
        w = to_tensor(weight, "multi_margin_loss")
        viol = viol * ops.take(w, t_col, axis=0).astype(x.dtype)
    not_target = ops.not_equal(constant(xp.arange(c)), t_col).astype(x.dtype)
    return _reduce((viol * not_target).sum(-1) * (1.0 / c), reduction, "multi_margin_loss")


def binary_cross_entropy(input, target, weight=None, reduction="mean") -> Tensor:  # noqa: A002
    """``-(y log p + (1-y) log(1-p))`` on probabilities; logs are clamped at -100 (as
    PyTorch does) so that p = 0 or 1 give a finite loss."""
    p, y = _same_shape(input, target, "binary_cross_entropy")
    if p.size:
        record_call(_check_probabilities, p.data)
    with np.errstate(divide="ignore"):
        logp = ops.maximum(ops.log(p), -100.0)
        log1mp = ops.maximum(ops.log1p(-p), -100.0)
    loss = -(y * logp + (1.0 - y) * log1mp)
    if weight is not None:
        loss = loss * to_tensor(weight, "binary_cross_entropy")
    return _reduce(loss, reduction, "binary_cross_entropy")


def _check_probabilities(p):
    if p.min() < 0 or p.max() > 1:
        raise ValueError("binary_cross_entropy: input must be probabilities in [0, 1]; use "
                         "binary_cross_entropy_with_logits for scores")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",  # noqa: A002
                                     pos_weight=None) -> Tensor:
    """Binary cross-entropy on logits ``z``: ``-(w_pos y log σ(z) + (1-y) log(1-σ(z)))``,
    computed stably with ``log σ(z) = -softplus(-z)``."""
    z, y = _same_shape(input, target, "binary_cross_entropy_with_logits")
    log_p = log_sigmoid(z)
    log_1mp = log_sigmoid(-z)
    if pos_weight is not None:
        loss = -(y * log_p * to_tensor(pos_weight, "binary_cross_entropy_with_logits")
                 + (1.0 - y) * log_1mp)
    else:
        loss = -(y * log_p + (1.0 - y) * log_1mp)
    if weight is not None:
        loss = loss * to_tensor(weight, "binary_cross_entropy_with_logits")
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0) -> Tensor:
    """Softmax cross-entropy with classes on the last axis, as one fused primitive.

    ``target`` is either integer class indices of shape ``logits.shape[:-1]`` (entries
    equal to ``ignore_index`` are skipped) or class probabilities of the logits' shape.
    ``weight`` rescales each class; ``label_smoothing`` ε mixes the target with the
    uniform distribution: ``(1-ε)·target + ε/C``. With ``reduction="mean"`` and class
    indices the sum is divided by the total weight of the counted targets, as in PyTorch.
    """
    z = floating(to_tensor(logits, "cross_entropy"))
    if z.ndim == 0:
        raise ValueError("cross_entropy: logits need a class axis (the last)")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    c = z.shape[-1]
    w = None
    if weight is not None:
        w = to_tensor(weight, "cross_entropy").data
        if w.shape != (c,):
            raise ValueError(f"cross_entropy: weight must have shape ({c},), got {w.shape}")
    t_arr = target.data if isinstance(target, Tensor) else B.asarray(target, like=_array(z))
    if t_arr.dtype.kind == "f":                       # class probabilities
        q = to_tensor(target, "cross_entropy").astype(z.dtype)
        if q.shape != z.shape:
            raise ValueError(f"cross_entropy: probability targets of shape {q.shape} must "
                             f"match the logits' shape {z.shape}")
        if label_smoothing:
            q = q * (1.0 - label_smoothing) + label_smoothing / c
        if w is not None:
            q = q * to_tensor(weight, "cross_entropy").astype(z.dtype)
        return _reduce(softmax_cross_entropy(z, q), reduction, "cross_entropy")
    t = _class_targets(z, target, "cross_entropy")
    # soft targets and the mean's denominator from the class indices, as one recorded
    # array computation (a jitted function recomputes them from each call's targets)
    q, total = record_call(_class_target_weights, t, *(() if w is None else (w,)), c=c,
                           ignore_index=ignore_index, label_smoothing=float(label_smoothing),
                           dtype=z.dtype)
    loss = softmax_cross_entropy(z, constant(q))
    if reduction == "mean":
        return loss.sum() * constant(total)
    return _reduce(loss, reduction, "cross_entropy")


def _class_target_weights(t, *weight, c, ignore_index, label_smoothing, dtype):
    """For class indices ``t``: the target distribution per row (one-hot, class-weighted,
    smoothed, zero where ignored) and the mean's factor: 1 / the counted rows' total
    weight (NaN when nothing is counted, as in PyTorch)."""
    xp = B.ns(t)
    w = weight[0].astype(dtype, copy=False) if weight else None
    ignored = t == ignore_index
    any_ignored = bool(ignored.any())
    safe_t = xp.where(ignored, 0, t) if any_ignored else t
    if safe_t.size and (safe_t.min() < 0 or safe_t.max() >= c):
        bad = safe_t.max() if safe_t.max() >= c else safe_t.min()
        raise IndexError(f"cross_entropy: target {int(bad)} is out of range for {c} classes")
    rows = xp.arange(safe_t.size)
    onehot = xp.zeros((safe_t.size, c), dtype=dtype)
    onehot[rows, safe_t.ravel()] = 1.0
    onehot = onehot.reshape(t.shape + (c,))
    wt = xp.ones(t.shape, dtype=dtype) if w is None else w[safe_t]
    if label_smoothing:
        # PyTorch: (1-ε)·w_y·(-log p_y) + ε/C·Σ_c w_c·(-log p_c)
        q = (1.0 - label_smoothing) * onehot * wt[..., None] + \
            (label_smoothing / c) * (w if w is not None else 1.0)
    else:
        q = onehot * wt[..., None] if w is not None else onehot
    if any_ignored:
        q = q * ~ignored[..., None]
        wt = wt * ~ignored
    denom = float(wt.sum())
    total = xp.asarray(1.0 / denom if denom else float("nan"), dtype=dtype)
    return q.astype(dtype, copy=False), total


def nll_loss(log_probs, target, weight=None, ignore_index=-100, reduction="mean") -> Tensor:
    """Negative log-likelihood ``-log_probs[target]`` (classes on the last axis)."""
    lp = floating(to_tensor(log_probs, "nll_loss"))
    t = _class_targets(lp, target, "nll_loss")
    c = lp.shape[-1]
    w = () if weight is None else (to_tensor(weight, "nll_loss").data,)
    # the picked positions, the per-row weights and the mean's factor from the targets, as
    # one recorded array computation (a jitted function recomputes them for each call)
    safe_t, wt, factor = record_call(_nll_target_weights, t, *w, c=c,
                                     ignore_index=ignore_index, dtype=lp.dtype)
    picked = ops.take_along_axis(lp, constant(safe_t), axis=-1)[..., 0]
    loss = -picked * constant(wt)
    if reduction == "mean":
        return loss.sum() * constant(factor)
    return _reduce(loss, reduction, "nll_loss")


def _nll_target_weights(t, *weight, c, ignore_index, dtype):
    """For class indices ``t``: where to pick (ignored rows point at class 0), each row's
    weight (0 where ignored) and the mean's factor, 1 / the total weight (NaN for none)."""
    xp = B.ns(t)
    valid = t != ignore_index
    safe_t = xp.where(valid, t, 0)
    if safe_t.size and (safe_t.min() < 0 or safe_t.max() >= c):
        raise IndexError(f"nll_loss: target out of range for {c} classes")
    wt = xp.ones(t.shape, dtype=dtype) if not weight else \
        weight[0].astype(dtype, copy=False)[safe_t]
    wt = wt * valid
    denom = float(wt.sum())
    factor = xp.asarray(1.0 / denom if denom else float("nan"), dtype=dtype)
    return safe_t[..., None], wt.astype(dtype, copy=False), factor


def kl_div(input, target, reduction="mean", log_target=False) -> Tensor:  # noqa: A002
    """PyTorch's ``kl_div``: ``input`` holds log-probabilities, ``target`` probabilities
    (or log-probabilities with ``log_target``); pointwise ``t (log t - input)``.
    ``reduction="batchmean"`` divides the sum by the first dimension."""
    x, t = _same_shape(input, target, "kl_div")
    if log_target:
        loss = ops.exp(t) * (t - x)
    else:
        safe = ops.where(t > 0, t, 1.0)
        loss = ops.where(t > 0, t * (ops.log(safe) - x), 0.0)
    if reduction == "batchmean":
        return loss.sum() * (1.0 / (x.shape[0] if x.ndim else 1))
    return _reduce(loss, reduction, "kl_div")


from .conv import (avg_pool1d, avg_pool2d, avg_pool3d, conv1d, conv2d, conv3d,  # noqa: E402
                   conv_transpose1d, conv_transpose2d, conv_transpose3d, global_avg_pool,
                   global_max_pool, masked_global_avg_pool, masked_global_max_pool, max_pool1d,
                   max_pool2d, max_pool3d)
from .normalization import batch_norm, channel_dropout, group_norm, layer_norm, rms_norm  # noqa: E402
from .attention import (linear_attention, linear_attention_recurrent,  # noqa: E402
                        scaled_dot_product_attention)
from .positional import alibi_bias, rotate_half, sinusoidal_embedding  # noqa: E402
