"""Gradient utilities: clipping by global norm and by value, parameter vectors."""

from __future__ import annotations

import math

import numpy as np

from .. import backend as B
from .. import ops
from ..core.modes import no_grad
from ..core.tensor import Tensor, tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def _norm_power(a, norm_type) -> float:
    """``Σ |a|^p`` of one backend array, accumulated in float64 (``max |a|`` for p = inf)."""
    xp = B.ns(a)
    if math.isinf(norm_type):
        return float(xp.abs(a).max()) if a.size else 0.0
    flat = a.reshape(-1).astype(np.float64, copy=False)
    if norm_type == 2.0:
        return float(xp.dot(flat, flat))
    return float((xp.abs(flat) ** norm_type).sum())


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False) -> Tensor:
    """Scale gradients in place so their global norm is at most ``max_norm``.

    Returns the norm before clipping (as a tensor). The norm is computed on the gradients'
    arrays in float64, one reduction per gradient (this runs every training step).
    """
    params = _grads(parameters)
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be non-negative, got {max_norm}")
    if not params:
        return tensor(0.0)
    norm_type = float(norm_type)
    powers = [_norm_power(p.grad.data, norm_type) for p in params]
    total = max(powers) if math.isinf(norm_type) else sum(powers) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}")
    coef = min(max_norm / (total + 1e-6), 1.0)
    if coef < 1.0:
        with no_grad():
            for p in params:
                p.grad = p.grad * coef
    return tensor(total, dtype=params[0].grad.dtype)


def clip_grad_value_(parameters, clip_value) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    with no_grad():
        for p in _grads(parameters):
            p.grad = ops.clip(p.grad, -clip_value, clip_value)


def parameters_to_vector(parameters) -> Tensor:
    """All parameters flattened and concatenated (a copy, not differentiable)."""
    return ops.concatenate([p.detach().reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters) -> None:
    """Copy a flat vector back into the parameters, in place (bumping their versions)."""
    data = vec.detach() if isinstance(vec, Tensor) else Tensor(vec)
    i = 0
    for p in parameters:
        n = p.size
        if i + n > data.size:
            raise ValueError("vector_to_parameters: the vector is too short")
        p.copy_(data[i:i + n].reshape(p.shape))
        i += n
    if i != data.size:
        raise ValueError(f"vector_to_parameters: the vector has {data.size} elements, the "
                         f"parameters {i}")
