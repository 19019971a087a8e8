"""Activation functions (functional form; the module forms are in ``layers``)."""

from __future__ import annotations

from .. import ops
from ..core.tensor import Tensor
from ..ops import nn as _ops_nn
from ..ops.arguments import floating, to_tensor

__all__ = ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "leaky_relu", "softplus",
           "log_sigmoid", "elu", "gelu", "silu"]

relu = ops.relu
sigmoid = ops.sigmoid
tanh = ops.tanh


def softmax(x, axis=-1, *, dim=None) -> Tensor:
    """Softmax along ``axis`` (``dim`` is accepted as PyTorch's name for it)."""
    return ops.softmax(x, axis if dim is None else dim)


def log_softmax(x, axis=-1, *, dim=None) -> Tensor:
    """Log-softmax along ``axis`` (``dim`` is accepted as PyTorch's name for it)."""
    return ops.log_softmax(x, axis if dim is None else dim)


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
