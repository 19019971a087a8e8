"""Fused primitives for neural-network layers, where composition would be slower, less
stable or keep more memory: ``linear`` (x @ W + b in one node), ``linear_gelu`` (GELU,
exact or its tanh form, in the product's epilogue),
``softmax_cross_entropy``, the activations ``gelu`` and ``silu`` (one node keeping only
the input, where the composite keeps three or four arrays) and ``masked_scale``
(dropout: keeps only the boolean mask).

Their composite references (``x @ w + b``; ``gelu(x @ w + b)``;
``-(q * log_softmax(z)).sum(-1)``;
``x Φ(x)``; ``x σ(x)``; ``x * mask / (1 - p)``) are checked against them in the tests,
and they are what each primitive's ONNX export rule writes (``onnx=``).
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend as B
from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ..core.tracing import record_call
from ..core.vmap import batch_size, broadcast_batch, elementwise_rule, moveaxis, unary_rule
from .arguments import constant, operands, to_tensor
from .elementwise import _add, erf, exp, sigmoid, tanh
from .kernels import special as _special
from .linalg import _matmul_batch, _matrix_shape, _mm, _mT, gemm
from .reductions import log_softmax, softmax
from .reductions import sum as _sum


# ----------------------------------------------------------------------------- linear
def _linear_forward(x, w, b):
    if x.ndim > 2 and x.flags.c_contiguous:
        out = gemm(x.reshape(_matrix_shape(x.shape)), w)
        out += b
        return out.reshape(x.shape[:-1] + (w.shape[-1],))
    out = gemm(x, w) if x.ndim == 2 else np.matmul(x, w)
    out += b
    return out


def _linear_vjp_w(g, out, x, w, b):
    if x.ndim == 1:
        return x.expand_dims(-1) * g.expand_dims(-2)
    if x.ndim > 2:
        return _mm(_mT(x.reshape(_matrix_shape(x.shape))), g.reshape(_matrix_shape(g.shape)))
    return _mm(_mT(x), g)


def _linear_vjp_x(g, out, x, w, b):
    return _mm(g, _mT(w))


def _linear_batch(args, axes):
    (x, w, b), (ax, aw, ab) = args, axes
    if aw is None and ab is None:                 # the usual case: examples share weights
        return apply(_linear, (moveaxis(x, ax, 0), w, b)), 0
    prod, ap = _matmul_batch([x, w], [ax, aw])
    return elementwise_rule(_add)([prod, b], [ap, ab])


def _linear_onnx(g, inputs, outputs):
    x, w, b = inputs
    g.node("Add", [g.matmul(x, w), b], outputs[0])


_linear = Primitive(
    "linear", _linear_forward, save={0: (1,), 1: (0,)}, onnx=_linear_onnx,
    vjp=(_linear_vjp_x, _linear_vjp_w, lambda g, out, x, w, b: g),
    jvp=(lambda t, out, x, w, b: _mm(t, w), lambda t, out, x, w, b: _mm(x, t),
         lambda t, out, x, w, b: t),
    batch=_linear_batch)


def _linear_operands(x, weight, bias):
    """``linear``'s arguments checked, as tensors of one dtype (``bias`` may be None)."""
    x, weight = operands(x, weight, "linear")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (in, out), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: input features {x.shape[-1] if x.ndim else None} do not "
                         f"match weight {weight.shape} (input shape {x.shape})")
    if bias is None:
        return x, weight, None
    bias = to_tensor(bias, "linear")
    if bias.shape != (weight.shape[1],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[1]},), got {bias.shape}")
    if x.dtype != weight.dtype or bias.dtype != weight.dtype:
        dtype = np.result_type(x.dtype, weight.dtype, bias.dtype)
        x, weight, bias = x.astype(dtype), weight.astype(dtype), bias.astype(dtype)
    return x, weight, bias


def linear(x, weight, bias=None) -> Tensor:
    """``x @ weight + bias`` with ``weight`` of shape (in, out) (channels last).

    One fused node: the bias is added in place into the product, and the backward
    folds batch dimensions into one matrix product.
    """
    x, weight, bias = _linear_operands(x, weight, bias)
    if bias is None:
        return _mm(x, weight) if x.ndim else x @ weight
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


def _sce_onnx(g, inputs, outputs):
    z, q = inputs
    logp = g.node("LogSoftmax", [z], axis=-1)
    total = g.reduce("ReduceSum", g.node("Mul", [q, logp]), [-1], False)
    g.node("Neg", [total], outputs[0])


_softmax_ce = Primitive(
    "softmax_cross_entropy", _sce_forward, save={0: (0, 1), 1: (0,)}, onnx=_sce_onnx,
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


# ----------------------------------------------------------------------------- activations
_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_C = math.sqrt(2.0 / math.pi)


def _gelu_forward(x, *, approximate):
    if _special.applies(x):
        return _special.gelu(x, approximate == "tanh")
    if approximate == "tanh":
        inner = _TANH_C * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + np.tanh(inner))
    return 0.5 * x * (1.0 + B.of(x).erf(x * _SQRT_HALF))


def _gelu_slope(x, approximate):
    """d gelu / dx as tensor operations (so it differentiates again)."""
    if approximate == "tanh":
        th = tanh((x + x * x * x * 0.044715) * _TANH_C)
        return (th + 1.0) * 0.5 + x * (1.0 - th * th) * ((x * x * (3 * 0.044715) + 1.0) * (0.5 * _TANH_C))
    return (erf(x * _SQRT_HALF) + 1.0) * 0.5 + x * exp(x * x * -0.5) * _INV_SQRT_2PI


def _gelu_vjp(g, out, x, *, approximate):
    return g * _gelu_slope(x, approximate)


def _gelu_vjp_kernel(g, out, inputs, needs, *, approximate):
    """First order, float32: one compiled pass over the cotangent and the input."""
    x, = inputs
    if not _special.applies(x.data) or g.shape != x.shape or g.dtype != x.dtype:
        return NotImplemented
    return [constant(record_call(_special.gelu_vjp, g.data, x.data, approximate == "tanh"))]


def _gelu_onnx(g, inputs, outputs, *, approximate):
    x, out = inputs[0], outputs[0]
    if g.opset >= 20:
        g.node("Gelu", [x], out, approximate=approximate)
        return
    dtype = g.dtype(out)
    half = g.node("Mul", [x, g.scalar(0.5, dtype)])
    if approximate == "tanh":               # 0.5 x (1 + tanh(c (x + 0.044715 x³)))
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [cube, g.scalar(0.044715, dtype)])])
        t = g.node("Tanh", [g.node("Mul", [inner, g.scalar(_TANH_C, dtype)])])
    else:                                   # 0.5 x (1 + erf(x / √2))
        t = g.node("Erf", [g.node("Mul", [x, g.scalar(_SQRT_HALF, dtype)])])
    g.node("Mul", [half, g.node("Add", [t, g.scalar(1, dtype)])], out)


_gelu = Primitive(
    "gelu", _gelu_forward, save=(0,), onnx=_gelu_onnx,
    vjp=_gelu_vjp, vjp_kernel=_gelu_vjp_kernel,
    jvp=lambda t, out, x, *, approximate: t * _gelu_slope(x, approximate))
_gelu.batch = unary_rule(_gelu)


def gelu(x, approximate="none") -> Tensor:
    """Gaussian error linear unit ``x Φ(x)`` (``approximate="tanh"``: the tanh form), one
    node that keeps only its input."""
    x = to_tensor(x, "gelu")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return apply(_gelu, (x,), {"approximate": approximate})


def _silu_forward(x):
    if _special.applies(x):
        return _special.silu(x)
    return x * B.of(x).expit(x)


def _silu_slope(x):
    s = sigmoid(x)
    return s * (x * (1.0 - s) + 1.0)


def _silu_vjp_kernel(g, out, inputs, needs):
    """First order, float32: ``g σ(x) (1 + x σ(−x))`` in one compiled pass."""
    x, = inputs
    if not _special.applies(x.data) or g.shape != x.shape or g.dtype != x.dtype:
        return NotImplemented
    return [constant(record_call(_special.silu_vjp, g.data, x.data))]


_silu = Primitive("silu", _silu_forward, save=(0,),
                  onnx=lambda g, inputs, outputs:
                      g.node("Mul", [inputs[0], g.node("Sigmoid", inputs)], outputs[0]),
                  vjp=lambda g, out, x: g * _silu_slope(x), vjp_kernel=_silu_vjp_kernel,
                  jvp=lambda t, out, x: t * _silu_slope(x))
_silu.batch = unary_rule(_silu)


def silu(x) -> Tensor:
    """``x * sigmoid(x)`` (swish), one node that keeps only its input."""
    x = to_tensor(x, "silu")
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return apply(_silu, (x,))


# ----------------------------------------------------------------------------- linear + GELU
def _linear_gelu_forward(x, w, b, *, approximate="none"):
    """``gelu(x @ w + b)`` and the pre-activation ``h`` (kept for the backward). Float32:
    the bias and the GELU in one compiled pass over the product (its epilogue)."""
    if not (_special.applies(x) and _special.applies(w) and _special.applies(b)):
        h = _linear_forward(x, w, b)
        return _gelu_forward(h, approximate=approximate), (h,)
    x2 = np.ascontiguousarray(x).reshape(_matrix_shape(x.shape))
    h = gemm(x2, w)
    y = _special.bias_gelu(h, b, approximate == "tanh")
    shape = x.shape[:-1] + (w.shape[-1],)
    return y.reshape(shape), (h.reshape(shape),)


def _linear_gelu_vjp(g, out, inputs, needs, *, res, approximate="none"):
    """The composite rule (every order): the pre-activation recomputed with tensor ops."""
    x, w, b = inputs
    gh = g * _gelu_slope(apply(_linear, (x, w, b)), approximate)
    return [rule(gh, None, x, w, b) if need else None
            for rule, need in zip((_linear_vjp_x, _linear_vjp_w, lambda gh, *_: gh), needs)]


def _linear_gelu_vjp_kernel(g, out, inputs, needs, *, res, approximate="none"):
    """First order, float32: GELU's slope and the bias gradient in one compiled pass over
    the kept pre-activation, then the two products of ``linear``'s rules."""
    x, w, b = inputs
    h = res[0].data
    if not _special.applies(h) or g.shape != h.shape or g.dtype != h.dtype:
        return NotImplemented
    gh, gb = record_call(_special.gelu_grad_bias, g.data, h, approximate == "tanh")
    gh = constant(gh)
    return [_linear_vjp_x(gh, None, x, w, b) if needs[0] else None,
            _linear_vjp_w(gh, None, x, w, b) if needs[1] else None,
            constant(gb) if needs[2] else None]


def _linear_gelu_jvp(tangents, out, inputs, *, approximate="none"):
    x, w, b = inputs
    tx, tw, tb = tangents
    th = None
    for t in (None if tx is None else _mm(tx, w), None if tw is None else _mm(x, tw), tb):
        if t is not None:
            th = t if th is None else th + t
    return th * _gelu_slope(apply(_linear, (x, w, b)), approximate)


def _linear_gelu_batch(args, axes, *, approximate="none"):
    (x, w, b), (ax, aw, ab) = args, axes
    if aw is None and ab is None:
        return apply(_linear_gelu, (moveaxis(x, ax, 0), w, b), {"approximate": approximate}), 0
    h, ah = _linear_batch(args, axes)
    return apply(_gelu, (h,), {"approximate": approximate}), ah


def _linear_gelu_onnx(g, inputs, outputs, *, approximate="none"):
    x, w, b = inputs
    _gelu_onnx(g, [g.node("Add", [g.matmul(x, w), b])], outputs, approximate=approximate)


_linear_gelu = Primitive(
    "linear_gelu", _linear_gelu_forward, save="inputs", residuals=True,
    vjp_all=_linear_gelu_vjp, vjp_kernel=_linear_gelu_vjp_kernel, jvp_all=_linear_gelu_jvp,
    batch=_linear_gelu_batch, onnx=_linear_gelu_onnx)


def linear_gelu(x, weight, bias, approximate="none") -> Tensor:
    """``gelu(x @ weight + bias)`` as one node (``approximate="tanh"``: GELU's tanh form):
    for float32 the bias and the GELU run in one pass over the product (its epilogue),
    and the backward computes GELU's slope and the bias gradient in one pass too.
    ``gelu(linear(x, weight, bias), approximate)`` is its reference (and what it computes
    without a bias)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"linear_gelu: approximate must be 'none' or 'tanh', "
                         f"got {approximate!r}")
    x, weight, bias = _linear_operands(x, weight, bias)
    if bias is None or x.ndim == 0:
        return gelu(linear(x, weight, bias), approximate)
    return apply(_linear_gelu, (x, weight, bias), {"approximate": approximate})


# ----------------------------------------------------------------------------- dropout
def _masked_scale_forward(x, mask, *, scale):
    out = x * mask
    out *= x.dtype.type(scale)
    return out


def _masked_scale_onnx(g, inputs, outputs, *, scale):
    x, mask = inputs
    dtype = g.dtype(outputs[0])
    kept = g.node("Mul", [x, g.cast(mask, dtype)])
    g.node("Mul", [kept, g.scalar(scale, dtype)], outputs[0])


_masked_scale = Primitive(
    "masked_scale", _masked_scale_forward, save=(1,), scalar="{0} * {1} * {scale}",
    onnx=_masked_scale_onnx,
    vjp=(lambda g, out, x, mask, *, scale: g * mask * scale, None),
    jvp=(lambda t, out, x, mask, *, scale: t * mask * scale, None))


def _masked_scale_batch(args, bdims, *, scale):
    return elementwise_rule(_masked_scale)(args, bdims, scale=scale)


_masked_scale.batch = _masked_scale_batch


def masked_scale(x, mask, scale) -> Tensor:
    """``x * mask * scale`` with a boolean ``mask`` (inverted dropout's kernel): one node
    that keeps only the mask."""
    x, mask = to_tensor(x, "masked_scale"), to_tensor(mask, "masked_scale")
    if mask.dtype.kind != "b":
        raise TypeError(f"masked_scale: the mask must be bool, got {mask.dtype}")
    return apply(_masked_scale, (x, mask), {"scale": float(scale)})
