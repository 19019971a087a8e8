"""Gradient utilities: clipping by global norm and by value, parameter vectors."""

from __future__ import annotations

import math

from .. import ops
from ..core import dtypes
from ..core.modes import no_grad
from ..core.tensor import Tensor, tensor


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
        return tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        if math.isinf(norm_type):
            total = max(float(ops.abs(p.grad).max()) if p.grad.size else 0.0 for p in params)
        else:
            total = sum(float((ops.abs(p.grad.astype(dtypes.float64)) ** norm_type).sum())
                        for p in params) ** (1.0 / norm_type)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}")
        coef = min(max_norm / (total + 1e-6), 1.0)
        if coef < 1.0:
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
