"""Gradient utilities: clipping by global norm and by value, parameter vectors."""

from __future__ import annotations

import math

import numpy as np

from ..core.tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False) -> Tensor:
    """Scale gradients in place so their global norm is at most ``max_norm``.

    Returns the norm before clipping (as a tensor).
    """
    params = _grads(parameters)
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be non-negative, got {max_norm}")
    if not params:
        return Tensor(np.zeros((), dtype=np.float32))
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        total = max(float(np.abs(p.grad.data).max()) if p.grad.size else 0.0 for p in params)
    else:
        total = sum(float((np.abs(p.grad.data.astype(np.float64)) ** norm_type).sum())
                    for p in params) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}")
    coef = min(max_norm / (total + 1e-6), 1.0)
    if coef < 1.0:
        for p in params:
            p.grad = Tensor(p.grad.data * p.grad.data.dtype.type(coef))
    return Tensor(np.asarray(total, dtype=params[0].grad.dtype))


def clip_grad_value_(parameters, clip_value) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for p in _grads(parameters):
        p.grad = Tensor(np.clip(p.grad.data, -clip_value, clip_value))


def parameters_to_vector(parameters) -> Tensor:
    """All parameters flattened and concatenated (a copy, not differentiable)."""
    return Tensor(np.concatenate([p.data.ravel() for p in parameters]))


def vector_to_parameters(vec, parameters) -> None:
    """Copy a flat vector back into the parameters, in place."""
    data = vec.data if isinstance(vec, Tensor) else np.asarray(vec)
    i = 0
    for p in parameters:
        n = p.size
        if i + n > data.size:
            raise ValueError("vector_to_parameters: the vector is too short")
        p.data[...] = data[i:i + n].reshape(p.shape)
        i += n
    if i != data.size:
        raise ValueError(f"vector_to_parameters: the vector has {data.size} elements, the "
                         f"parameters {i}")
