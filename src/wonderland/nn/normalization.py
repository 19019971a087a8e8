"""Normalisation layers (batch, layer, group, RMS) and channel-wise dropout.

Channels are the last axis. The statistics come from the fused primitives in
``ops/norm.py``; the learnable scale and shift are applied after them.
"""

from __future__ import annotations

import numpy as np

from ..core import dtypes
from ..core.tensor import Tensor
from ..core.tracing import record_call
from ..ops.arguments import constant, floating, to_tensor
from ..ops.norm import normalize, rms_normalize
from ..random import get_generator
from .module import Module, Parameter


def _check_affine(what, shape, weight, bias):
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != tuple(shape):
            raise ValueError(f"{what}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _affine(y, weight, bias):
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _update_running_stats(data, running_mean, running_var, *count, axes, momentum):
    """Move the running statistics towards the batch's (unbiased variance), in place;
    ``momentum=None``: a cumulative average over the ``count[0]`` batches seen."""
    if momentum is None:
        momentum = 1.0 / float(count[0])
    n = data.size // running_mean.size
    mean = data.mean(axis=axes)
    var = data.var(axis=axes) * (n / (n - 1))
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * var


def _count_batch(count):
    count[...] += 1


def _inverse_std(var, *, eps, dtype):
    return (1.0 / np.sqrt(var + eps)).astype(dtype)


def _inverse_std_onnx(g, inputs, outputs, *, eps, dtype):
    var = inputs[0]
    root = g.node("Sqrt", [g.node("Add", [var, g.scalar(eps, g.dtype(var))])])
    g.cast(g.node("Reciprocal", [root]), dtype, outputs[0])


# these two run through record_call (at inference, on the running statistics): their
# ONNX export rules sit on the functions, as a primitive's sit on the primitive
_inverse_std.onnx = _inverse_std_onnx


def _as_dtype(a, *, dtype):
    return a.astype(dtype)


_as_dtype.onnx = lambda g, inputs, outputs, *, dtype: g.cast(inputs[0], dtype, outputs[0])


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, num_batches_tracked=None):
    """Batch normalisation over every axis but the last (channels).

    In training the batch statistics normalise, and ``running_mean``/``running_var``
    (tensors, updated in place) move towards them by ``momentum`` (the running variance
    uses the unbiased estimate, as PyTorch does); that needs more than one value per
    channel, and an empty batch gives an empty result and leaves the running statistics
    as they are. ``momentum=None`` makes them a cumulative average over the batches
    counted so far in ``num_batches_tracked`` (an integer tensor, which the module
    ``BatchNorm`` counts up). At inference the running statistics normalise.
    """
    x = floating(to_tensor(x, "batch_norm"))
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected (batch, ..., channels), got {x.shape}")
    c = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},), got {t.shape}")
    if training:
        n = 1
        for d in x.shape[:-1]:
            n *= d
        if n == 1:
            raise ValueError(f"batch_norm: need more than one value per channel in training, got "
                             f"input of shape {x.shape}")
        if n == 0:
            # an empty batch has no statistics: an empty result, running statistics left
            # as they are (as in PyTorch)
            return _affine(x, weight, bias)
        y = normalize(x, axes, eps)
        if running_mean is not None and running_var is not None:
            # in place, as a recorded step: a jitted function updates them at every call
            if momentum is None and num_batches_tracked is None:
                raise ValueError("batch_norm: momentum=None (a cumulative average) needs "
                                 "num_batches_tracked")
            record_call(_update_running_stats, x, running_mean, running_var,
                        *(() if momentum is not None else (num_batches_tracked,)),
                        axes=axes, momentum=momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: inference needs running_mean and running_var")
        # recorded calls: a jitted function reads the running statistics at every call
        inv = constant(record_call(_inverse_std, running_var, eps=eps, dtype=x.dtype))
        mean = constant(record_call(_as_dtype, running_mean, dtype=x.dtype))
        y = (x - mean) * inv
    return _affine(y, weight, bias)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` axes, then scale and shift."""
    x = floating(to_tensor(x, "layer_norm"))
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if x.shape[x.ndim - k:] != shape:
        raise ValueError(f"layer_norm: input {x.shape} does not end with normalized_shape {shape}")
    _check_affine("layer_norm", shape, weight, bias)
    return normalize(x, tuple(range(x.ndim - k, x.ndim)), eps, weight, bias)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Split channels into ``num_groups`` groups; normalise each group over the spatial
    axes and its channels, per sample."""
    x = floating(to_tensor(x, "group_norm"))
    if x.ndim < 2:
        raise ValueError(f"group_norm: expected (batch, ..., channels), got shape {x.shape}")
    c = x.shape[-1]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"group_norm: num_groups={num_groups} must be positive and divide the "
                         f"{c} channels (input {x.shape})")
    _check_affine("group_norm", (c,), weight, bias)
    grouped = x.reshape(x.shape[:-1] + (num_groups, c // num_groups))
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    y = normalize(grouped, axes, eps).reshape(x.shape)
    return _affine(y, weight, bias)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """``x / sqrt(mean(x²) + eps) · weight`` over the last axes (``eps`` defaults to the
    dtype's machine epsilon, as in PyTorch)."""
    x = floating(to_tensor(x, "rms_norm"))
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if x.shape[x.ndim - k:] != shape:
        raise ValueError(f"rms_norm: input {x.shape} does not end with normalized_shape {shape}")
    _check_affine("rms_norm", shape, weight, None)
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps
    return rms_normalize(x, tuple(range(x.ndim - k, x.ndim)), eps, weight)


def channel_dropout(x, p=0.5, training=True, generator=None):
    """Drop whole channels: one Bernoulli draw per (sample, channel), shared over the
    spatial axes, with inverted scaling."""
    x = to_tensor(x, "channel_dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"channel_dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if x.ndim < 3:
        raise ValueError(f"channel_dropout: expected (batch, ..., channels), got {x.shape}")

    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    if p == 1.0:
        return x * 0.0
    keep = get_generator(generator).bernoulli(1.0 - p, shape, dtype=x.dtype)
    return x * (keep * (1.0 / (1.0 - p)))


class _Norm(Module):
    def _params(self, shape, affine, bias=True, dtype=None):
        d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        if affine:
            self.weight = Parameter(np.ones(shape, d))
            if bias:
                self.bias = Parameter(np.zeros(shape, d))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)


def _positive_ints(owner, name, value):
    values = value if isinstance(value, tuple) else (value,)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0
                         for v in values):
        raise ValueError(f"{owner}: {name} must be a positive int{' or ints' * isinstance(value, tuple)}, "
                         f"got {value!r}")


class BatchNorm(Module):
    """Batch normalisation over channels-last input of any rank from 2 up
    (``BatchNorm1d/2d/3d`` also check the rank, as PyTorch does). ``momentum=None``
    uses a cumulative average of batch statistics."""

    ranks = None                         # accepted input ranks (None: any from 2 up)
    layout = "(batch, ..., channels)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=None):
        super().__init__()
        _positive_ints(type(self).__name__, "num_features", num_features)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.track_running_stats = track_running_stats
        _Norm._params(self, (num_features,), affine, True, dtype)
        d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, d)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, d)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        name = type(self).__name__
        x = to_tensor(x, name)
        if x.ndim < 2 or (self.ranks is not None and x.ndim not in self.ranks):
            ranks = " or ".join(f"{r}-D" for r in self.ranks or (2,))
            raise ValueError(f"{name}: expected a {ranks}{' (or higher)' * (self.ranks is None)} "
                             f"input {self.layout}, got shape {x.shape}")
        if x.shape[-1] != self.num_features:
            raise ValueError(f"{name}: input has {x.shape[-1]} channels (last axis), the layer "
                             f"{self.num_features}")
        use_batch = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            record_call(_count_batch, self.num_batches_tracked)     # also at a jit replay
        return batch_norm(x, self.running_mean if self.track_running_stats else None,
                          self.running_var if self.track_running_stats else None,
                          self.weight, self.bias, use_batch,
                          0.0 if momentum is None and not self.track_running_stats else momentum,
                          self.eps, self.num_batches_tracked if self.track_running_stats else None)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(BatchNorm):
    """Batch normalisation of ``(batch, channels)`` or ``(batch, length, channels)``."""

    ranks = (2, 3)
    layout = "(batch, channels) or (batch, length, channels)"


class BatchNorm2d(BatchNorm):
    """Batch normalisation of images ``(batch, height, width, channels)``."""

    ranks = (4,)
    layout = "(batch, height, width, channels)"


class BatchNorm3d(BatchNorm):
    """Batch normalisation of volumes ``(batch, depth, height, width, channels)``."""

    ranks = (5,)
    layout = "(batch, depth, height, width, channels)"


class LayerNorm(_Norm):
    """Layer normalisation over the trailing ``normalized_shape``."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) \
            else tuple(normalized_shape)
        _positive_ints("LayerNorm", "normalized_shape", self.normalized_shape)
        self.eps = eps
        self._params(self.normalized_shape, elementwise_affine, bias, dtype)

    def forward(self, x):
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class GroupNorm(_Norm):
    """Group normalisation of ``num_channels`` channels in ``num_groups`` groups."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=None):
        super().__init__()
        _positive_ints("GroupNorm", "num_groups", num_groups)
        _positive_ints("GroupNorm", "num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_groups={num_groups} must divide num_channels={num_channels}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self._params((num_channels,), affine, True, dtype)

    def forward(self, x):
        x = to_tensor(x, "GroupNorm")
        if x.ndim < 2 or x.shape[-1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected (batch, ..., {self.num_channels}) with channels "
                             f"last, got shape {x.shape}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


class RMSNorm(_Norm):
    """Root-mean-square normalisation (no centring) with a learnable scale."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) \
            else tuple(normalized_shape)
        _positive_ints("RMSNorm", "normalized_shape", self.normalized_shape)
        self.eps = eps
        self._params(self.normalized_shape, elementwise_affine, False, dtype)

    def forward(self, x):
        return rms_norm(x, self.normalized_shape, self.weight, self.eps)


class ChannelDropout(Module):
    """Dropout of whole channels (``Dropout1d/2d/3d`` are aliases)."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ChannelDropout: p must be in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def forward(self, x):
        return channel_dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


Dropout1d = Dropout2d = Dropout3d = ChannelDropout

__all__ = ["batch_norm", "layer_norm", "group_norm", "rms_norm", "channel_dropout", "BatchNorm",
           "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "RMSNorm",
           "ChannelDropout", "Dropout1d", "Dropout2d", "Dropout3d"]
