"""Losses: the functional forms (regression, classification, divergences) and their
module forms (``MSELoss``, ``CrossEntropyLoss`` ...)."""

from __future__ import annotations

import numpy as np

from .. import backend as B
from .. import ops
from ..core.tensor import Tensor, physical_data
from ..core.tracing import record_call
from ..ops.arguments import constant, floating, operands, to_tensor
from ..ops.nn import softmax_cross_entropy
from .activations import log_sigmoid
from .dense import check_index_range
from .module import Module

__all__ = ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "hinge_loss",
           "multi_margin_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy", "nll_loss", "kl_div", "MSELoss", "L1Loss", "HuberLoss",
           "SmoothL1Loss", "HingeLoss", "MultiMarginLoss", "BCELoss", "BCEWithLogitsLoss",
           "CrossEntropyLoss", "NLLLoss", "KLDivLoss"]


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
    t = target.data if isinstance(target, Tensor) else B.asarray(target, like=physical_data(logits))
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
        record_call(check_index_range, t, n=c, what="multi_margin_loss", of="classes")
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
    t_arr = target.data if isinstance(target, Tensor) else B.asarray(target, like=physical_data(z))
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


# ----------------------------------------------------------------------------- modules
class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none", "batchmean"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or "
                             f"'none', got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    def forward(self, input, target):  # noqa: A002
        return mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):  # noqa: A002
        return l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):  # noqa: A002
        return huber_loss(input, target, self.reduction, self.delta)


class SmoothL1Loss(_Loss):
    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):  # noqa: A002
        return smooth_l1_loss(input, target, self.reduction, self.beta)


class HingeLoss(_Loss):
    """Binary hinge loss with ±1 targets."""

    def __init__(self, margin=1.0, reduction="mean"):
        super().__init__(reduction)
        self.margin = margin

    def forward(self, scores, target):
        return hinge_loss(scores, target, self.margin, self.reduction)


class MultiMarginLoss(_Loss):
    """Multi-class hinge loss."""

    def __init__(self, p=1, margin=1.0, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.p, self.margin, self.weight = p, margin, weight

    def forward(self, input, target):  # noqa: A002
        return multi_margin_loss(input, target, self.p, self.margin, self.weight, self.reduction)


class BCELoss(_Loss):
    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):  # noqa: A002
        return binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):  # noqa: A002
        return binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight)


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index, self.label_smoothing = weight, ignore_index, label_smoothing

    def forward(self, logits, target):
        return cross_entropy(logits, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class NLLLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, log_probs, target):
        return nll_loss(log_probs, target, self.weight, self.ignore_index, self.reduction)


class KLDivLoss(_Loss):
    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):  # noqa: A002
        return kl_div(input, target, self.reduction, self.log_target)
