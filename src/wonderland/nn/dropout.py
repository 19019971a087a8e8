"""Inverted dropout (functional form; the module is ``Dropout`` in ``layers``)."""

from __future__ import annotations

from ..core.tensor import Tensor
from ..ops.arguments import to_tensor
from ..ops.nn import masked_scale
from ..random import get_generator

__all__ = ["dropout"]


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
    keep = get_generator(generator).bernoulli(1.0 - p, x.shape, dtype=bool)
    return masked_scale(x, keep, 1.0 / (1.0 - p))
