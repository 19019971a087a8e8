"""Fused normalisation primitives: ``normalize`` (zero mean, unit variance over axes,
the core of batch, layer and group norm) and ``rms_normalize`` (RMSNorm's scaling).

Both Jacobians are symmetric, so one rule serves as VJP and JVP:

* ``normalize``: x̂ = (x − μ)/σ, σ = sqrt(var + ε);  J v = (v − mean(v) − x̂·mean(v·x̂)) / σ
* ``rms_normalize``: y = x·r, r = 1/sqrt(mean(x²) + ε);  J v = r·(v − y·mean(v·y))

Like PyTorch's, the nodes keep the input and the small per-row statistics (μ and 1/σ,
or r) the forward computed, not the output. When the backward pass is itself recorded
or carries tangents (higher orders), the rules recompute the statistics from ``x`` with
tensor operations so that they differentiate again. Layer norm over the last axis
with a weight and bias (the transformer's case) runs its forward and first-order backward
as compiled row loops (``kernels/norm.py``). The composite versions are checked against these in the
tests. They are also what the ONNX export rules write, operation for operation as the
forwards compute (``onnx=``; ONNX's LayerNormalization takes only trailing axes).
"""

from __future__ import annotations

import numpy as np

from ..core.primitive import Primitive, apply
from ..core.tracing import record_call
from ..core.vmap import axis_rule, batch_size, broadcast_batch
from .arguments import constant, zeros
from .kernels import norm as _kernels
from .reductions import mean, var


def _normalize_forward(x, *, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    centred = x - mu
    v = (centred * centred).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(v + eps)
    centred *= inv_std
    return centred, (mu, inv_std)


def _normalize_onnx_parts(g, x, axes, eps, dtype):
    """``(x̂, μ, 1/σ)`` as ONNX nodes, in the order the forward computes them."""
    mu = g.reduce("ReduceMean", x, axes, True)
    centred = g.node("Sub", [x, mu])
    v = g.reduce("ReduceMean", g.node("Mul", [centred, centred]), axes, True)
    inv_std = g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [v, g.scalar(eps, dtype)])])])
    return g.node("Mul", [centred, inv_std]), mu, inv_std


def _stats_out(g, values, outputs):
    """Name the statistics the program reads (most read none: the rule leaves them)."""
    for value, out in zip(values, outputs):
        if out is not None:
            g.node("Identity", [value], out)


def _normalize_onnx(g, inputs, outputs, *, axes, eps):
    xhat, mu, inv_std = _normalize_onnx_parts(g, inputs[0], axes, eps, g.dtype(outputs[0]))
    g.node("Identity", [xhat], outputs[0])
    _stats_out(g, (mu, inv_std), outputs[1:])


def _normalize_affine_onnx(g, inputs, outputs, *, axes, eps):
    x, w, b = inputs
    xhat, mu, inv_std = _normalize_onnx_parts(g, x, axes, eps, g.dtype(outputs[0]))
    g.node("Add", [g.node("Mul", [xhat, w]), b], outputs[0])
    _stats_out(g, (mu, inv_std), outputs[1:])


def _rms_onnx_parts(g, x, axes, eps, dtype):
    ms = g.reduce("ReduceMean", g.node("Mul", [x, x]), axes, True)
    r = g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [ms, g.scalar(eps, dtype)])])])
    return g.node("Mul", [x, r]), r


def _rms_onnx(g, inputs, outputs, *, axes, eps):
    y, r = _rms_onnx_parts(g, inputs[0], axes, eps, g.dtype(outputs[0]))
    g.node("Identity", [y], outputs[0])
    _stats_out(g, (r,), outputs[1:])


def _rms_affine_onnx(g, inputs, outputs, *, axes, eps):
    y, r = _rms_onnx_parts(g, inputs[0], axes, eps, g.dtype(outputs[0]))
    g.node("Mul", [y, inputs[1]], outputs[0])
    _stats_out(g, (r,), outputs[1:])


def _normalize_rule(v, out, x, *, axes, eps):
    inv_std = (var(x, axes, keepdims=True) + eps) ** -0.5
    return (v - mean(v, axes, keepdims=True) - out * mean(v * out, axes, keepdims=True)) * inv_std


def _xhat(x, axes, eps):
    """x̂ and 1/σ recomputed from x with tensor operations (so they follow x at every
    order of differentiation)."""
    centred = x - mean(x, axes, keepdims=True)
    inv_std = (mean(centred * centred, axes, keepdims=True) + eps) ** -0.5
    return centred * inv_std, inv_std


def _normalized_grad(g, xhat, inv_std, axes):
    return (g - mean(g, axes, keepdims=True) - xhat * mean(g * xhat, axes, keepdims=True)) * inv_std


def _normalize_vjp(g, out, x, *, axes, eps, res):
    # every order: the statistics are recomputed from x, so they follow it
    xhat, inv_std = _xhat(x, axes, eps)
    return _normalized_grad(g, xhat, inv_std, axes)


def _normalize_vjp_kernel(g, out, inputs, needs, *, axes, eps, res):
    """First order: the statistics kept by the forward pass."""
    x, = inputs
    mu, inv_std = res
    return [_normalized_grad(g, (x - mu) * inv_std, inv_std, axes)]


_normalize = Primitive("normalize", _normalize_forward, vjp=_normalize_vjp,
                       vjp_kernel=_normalize_vjp_kernel, jvp=_normalize_rule, save=(0,),
                       residuals=True, onnx=_normalize_onnx)
_normalize.batch = axis_rule(_normalize, "axes")


def _rms_forward(x, *, axes, eps):
    ms = (x * x).mean(axis=axes, keepdims=True)
    r = 1.0 / np.sqrt(ms + eps)
    return x * r, (r,)


def _rms_rule(v, out, x, *, axes, eps):
    r = (mean(x * x, axes, keepdims=True) + eps) ** -0.5
    return (v - out * mean(v * out, axes, keepdims=True)) * r


def _rms_grad(g, x, r, axes):
    y = x * r
    return (g - y * mean(g * y, axes, keepdims=True)) * r


def _rms_vjp(g, out, x, *, axes, eps, res):
    return _rms_grad(g, x, (mean(x * x, axes, keepdims=True) + eps) ** -0.5, axes)


def _rms_vjp_kernel(g, out, inputs, needs, *, axes, eps, res):
    """First order: the scale kept by the forward pass."""
    return [_rms_grad(g, inputs[0], res[0], axes)]


_rms = Primitive("rms_normalize", _rms_forward, vjp=_rms_vjp, vjp_kernel=_rms_vjp_kernel,
                 jvp=_rms_rule, save=(0,), residuals=True, onnx=_rms_onnx)
_rms.batch = axis_rule(_rms, "axes")


# ----------------------------------------------------------------------------- with scale and shift
# Layer norm's ``x̂·w + b`` in the same node, as PyTorch fuses it: the node keeps x, w
# and the statistics; x̂ is recomputed in the backward pass instead of being kept.
def _normalize_affine_forward(x, w, b, *, axes, eps):
    if _kernels.applies(x, w, b, axes):             # layer norm over the last axis
        return _kernels.layer_norm(x, w, b, eps)
    xhat, stats = _normalize_forward(x, axes=axes, eps=eps)
    xhat *= w
    xhat += b
    return xhat, stats


def _affine_grads(g, w, xhat, inv_std, needs, axes):
    gx = gw = None
    if needs[0]:
        gx = _normalized_grad(g * w, xhat, inv_std, axes)
    if needs[1]:
        gw = g * xhat                                # summed to w's shape by the engine
    return [gx, gw, g if needs[2] else None]


def _normalize_affine_vjp(g, out, inputs, needs, *, axes, eps, res):
    x, w, _ = inputs
    xhat, inv_std = _xhat(x, axes, eps)
    return _affine_grads(g, w, xhat, inv_std, needs, axes)


def _normalize_affine_vjp_kernel(g, out, inputs, needs, *, axes, eps, res):
    """First order: x̂ from the statistics kept by the forward pass (over the last axis:
    one compiled pass, ``kernels/norm.py``)."""
    x, w, _ = inputs
    mu, inv_std = res
    # the weight is kept only when ∂x is wanted (save=), which the kernel computes anyway
    if needs[0] and _kernels.applies(x.data, w.data, w.data, axes) and g.shape == x.shape \
            and g.dtype == x.dtype:
        grads = record_call(_kernels.layer_norm_backward, g.data, x.data, w.data, mu.data,
                            inv_std.data)
        return [constant(a) if need else None for a, need in zip(grads, needs)]
    return _affine_grads(g, w, (x - mu) * inv_std, inv_std, needs, axes)


def _normalize_affine_jvp(tangents, out, inputs, *, axes, eps):
    tx, tw, tb = tangents
    x, w, _ = inputs
    xhat = normalize(x, axes, eps)
    total = None
    if tx is not None:
        total = _normalize_rule(tx, xhat, x, axes=axes, eps=eps) * w
    if tw is not None:
        total = xhat * tw if total is None else total + xhat * tw
    if tb is not None:
        total = tb if total is None else total + tb
    return total


_normalize_affine = Primitive(
    "normalize_affine", _normalize_affine_forward, residuals=True,
    save={0: (0, 1), 1: (0,)}, vjp_all=_normalize_affine_vjp,
    vjp_kernel=_normalize_affine_vjp_kernel, jvp_all=_normalize_affine_jvp,
    onnx=_normalize_affine_onnx)


def _rms_affine_forward(x, w, *, axes, eps):
    y, stats = _rms_forward(x, axes=axes, eps=eps)
    y *= w
    return y, stats


def _rms_affine_grads(g, x, w, r, needs, axes):
    gx = gw = None
    if needs[0]:
        gx = _rms_grad(g * w, x, r, axes)
    if needs[1]:
        gw = g * (x * r)
    return [gx, gw]


def _rms_affine_vjp(g, out, inputs, needs, *, axes, eps, res):
    x, w = inputs
    return _rms_affine_grads(g, x, w, (mean(x * x, axes, keepdims=True) + eps) ** -0.5, needs,
                             axes)


def _rms_affine_vjp_kernel(g, out, inputs, needs, *, axes, eps, res):
    """First order: the scale kept by the forward pass."""
    x, w = inputs
    return _rms_affine_grads(g, x, w, res[0], needs, axes)


def _rms_affine_jvp(tangents, out, inputs, *, axes, eps):
    tx, tw = tangents
    x, w = inputs
    y = rms_normalize(x, axes, eps)
    total = None
    if tx is not None:
        total = _rms_rule(tx, y, x, axes=axes, eps=eps) * w
    if tw is not None:
        total = y * tw if total is None else total + y * tw
    return total


_rms_affine = Primitive(
    "rms_normalize_affine", _rms_affine_forward, residuals=True,
    save={0: (0, 1), 1: (0,)}, vjp_all=_rms_affine_vjp, vjp_kernel=_rms_affine_vjp_kernel,
    jvp_all=_rms_affine_jvp, onnx=_rms_affine_onnx)


def _affine_batch(prim):
    """Batching rule: batch axes first; the (per-example) scale and shift right-aligned
    against the per-example input, so they broadcast."""
    def rule(args, bdims, *, axes, eps):
        size = batch_size(args, bdims)
        x = broadcast_batch(args[0], bdims[0], size)
        rest = [a if ax is None else broadcast_batch(a, ax, size).reshape(
            (size,) + (1,) * (x.ndim - a.ndim) + tuple(a.shape[:ax] + a.shape[ax + 1:]))
            for a, ax in zip(args[1:], bdims[1:])]
        return apply(prim, (x,) + tuple(rest), {"axes": tuple(a + 1 for a in axes),
                                                 "eps": eps}), 0

    return rule


_normalize_affine.batch = _affine_batch(_normalize_affine)
_rms_affine.batch = _affine_batch(_rms_affine)


def normalize(x, axes, eps=1e-5, weight=None, bias=None):
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (a tuple of non-negative axes), then
    ``· weight + bias`` when given (broadcast against ``x``), in one node."""
    params = {"axes": tuple(axes), "eps": float(eps)}
    if weight is None and bias is None:
        return apply(_normalize, (x,), params)
    if weight is None:
        return apply(_normalize, (x,), params) + bias
    if bias is None:
        bias = zeros((), x.dtype, x)
    return apply(_normalize_affine, (x, weight, bias), params)


def rms_normalize(x, axes, eps=1e-6, weight=None):
    """``x / sqrt(mean(x²) + eps)`` over ``axes``, then ``· weight`` when given."""
    params = {"axes": tuple(axes), "eps": float(eps)}
    if weight is None:
        return apply(_rms, (x,), params)
    return apply(_rms_affine, (x, weight), params)
