"""Convolution and pooling layers, channels last: sequences ``(b, t, c)``, images
``(b, h, w, c)``, volumes/video ``(b, t, h, w, c)``.

Kernels are ``(*kernel_size, in_channels/groups, out_channels)``; a transposed
convolution's kernel is the kernel of the convolution it transposes,
``(*kernel_size, out_channels/groups, in_channels)``. From PyTorch, both are
``weight.permute(2, 3, 1, 0)`` (2-D).
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core import dtypes
from ..ops.arguments import constant, floating, to_tensor
from ..ops.conv import conv_bias_raw, conv_raw, conv_transpose_raw
from ..ops.arguments import namespace
from ..ops.pool import argmax_windows
from ..ops.pool import max_pool as _max_pool_op
from . import init
from .module import Module, Parameter

_NAMES = {1: "(batch, length, channels)", 2: "(batch, height, width, channels)",
          3: "(batch, depth, height, width, channels)"}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _tuple(v, nd, what, name, low=None):
    """``v`` as ``nd`` ints: an int for every dimension, or one int per dimension; with
    ``low``, every entry must be at least ``low``."""
    if _is_int(v):
        out = (int(v),) * nd
    elif isinstance(v, (tuple, list)) and len(v) == nd and all(_is_int(a) for a in v):
        out = tuple(int(a) for a in v)
    else:
        raise TypeError(f"{what}: {name} must be an int or {nd} int{'s' * (nd > 1)} (one per "
                        f"spatial dimension), got {v!r}")
    if low is not None and min(out) < low:
        kind = {0: "non-negative", 1: "positive"}.get(low, f"at least {low}")
        raise ValueError(f"{what}: {name} must be {kind}, got {v!r}")
    return out


def _check_input(x, nd, what):
    x = floating(to_tensor(x, what))
    if x.ndim != nd + 2:
        raise ValueError(f"{what}: input must have shape {_NAMES[nd]}, got {x.shape}")
    return x


_PADDING_RULE = ("an int (both sides of every spatial dimension), one entry per spatial "
                 "dimension (an int, or a (before, after) pair), a (before, after) pair (1-D), "
                 "'valid', 'same' or 'causal' (1-D)")


def _padding_entries(padding, nd, what):
    """Per-dimension ``(before, after)`` pads from an int or one entry per dimension
    (in 1-D also a flat ``(before, after)`` pair: with one dimension it cannot be
    read as anything else)."""
    if _is_int(padding):
        entries = [padding] * nd
    elif isinstance(padding, (tuple, list)):
        entries = list(padding)
        if nd == 1 and len(entries) == 2 and all(_is_int(p) for p in entries):
            entries = [tuple(entries)]
    else:
        raise TypeError(f"{what}: padding must be {_PADDING_RULE}; got {padding!r}")
    if len(entries) != nd:
        if nd == 1:
            hint = "give an int or a (before, after) pair, e.g. 2, (2, 0) or [(2, 0)]"
        else:
            hint = ("give one entry per dimension, an int or a (before, after) pair, e.g. "
                    "((1, 0), (0, 2))")
        raise ValueError(f"{what}: padding {padding!r} has {len(entries)} entries for {nd} "
                         f"spatial dimension{'s' * (nd > 1)}; {hint}")
    pads = []
    for p in entries:
        if _is_int(p):
            pads.append((int(p), int(p)))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(a) for a in p):
            pads.append((int(p[0]), int(p[1])))
        else:
            raise TypeError(f"{what}: padding must be {_PADDING_RULE}; got {padding!r}")
    if any(a < 0 or b < 0 for a, b in pads):
        raise ValueError(f"{what}: padding must be non-negative, got {padding!r}")
    return pads


def _padding(padding, kernel, stride, dilation, nd, what):
    """Per-dimension ``(before, after)`` pads. The rule, the same for every rank: an int
    pads both sides of every spatial dimension; a sequence has exactly one entry per
    spatial dimension, each an int (both sides) or a ``(before, after)`` pair (so 1-D
    per-side padding is ``[(before, after)]``, or the flat pair ``(before, after)``,
    which in 1-D has no other reading);
    ``"valid"`` is no padding, ``"same"`` keeps the size (stride 1), ``"causal"`` pads
    only before (1-D)."""
    if not isinstance(padding, str):
        return _padding_entries(padding, nd, what)
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{what}: padding='same' needs stride 1, got stride {stride}")
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return pads
    if padding == "causal":
        if nd != 1:
            raise ValueError(f"{what}: padding='causal' applies to 1-D convolutions only")
        return [(dilation[0] * (kernel[0] - 1), 0)]
    raise ValueError(f"{what}: padding must be {_PADDING_RULE}; got {padding!r}")


_PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(x, pads, value=0.0, mode="zeros"):
    if all(a == 0 and b == 0 for a, b in pads):
        return x
    if mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {sorted(_PADDING_MODES)}, got {mode!r}")
    return ops.pad(x, [(0, 0)] + list(pads) + [(0, 0)], mode=_PADDING_MODES[mode],
                   constant_values=value)


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, nd=None,
         padding_mode="zeros"):
    """N-d convolution (``nd`` from the weight). See :func:`conv2d`."""
    weight = floating(to_tensor(weight, "conv"))
    nd = nd or weight.ndim - 2
    what = f"conv{nd}d"
    if weight.ndim != nd + 2:
        raise ValueError(f"{what}: weight must have shape (*kernel_size, in_channels/groups, "
                         f"out_channels) with {nd} kernel dims, got {weight.shape}")
    x = _check_input(x, nd, what)
    kernel = weight.shape[:nd]
    stride = _tuple(stride, nd, what, "stride", low=1)
    dilation = _tuple(dilation, nd, what, "dilation", low=1)
    if not _is_int(groups) or groups < 1 or x.shape[-1] % groups or weight.shape[-1] % groups:
        raise ValueError(f"{what}: groups={groups} must divide the input channels "
                         f"({x.shape[-1]}) and the output channels ({weight.shape[-1]})")
    if x.shape[-1] != weight.shape[-2] * groups:
        raise ValueError(f"{what}: input has {x.shape[-1]} channels but the weight "
                         f"{weight.shape} expects {weight.shape[-2] * groups} (groups={groups})")
    pads = _padding(padding, kernel, stride, dilation, nd, what)
    x = _pad(x, pads, mode=padding_mode)
    spatial = x.shape[1:1 + nd]
    if any(d * (k - 1) + 1 > n for n, k, d in zip(spatial, kernel, dilation)):
        raise ValueError(f"{what}: kernel {kernel} with dilation {dilation} is larger than the "
                         f"padded input {spatial}")
    if weight.dtype != x.dtype:
        weight = weight.astype(x.dtype)
    if bias is not None:
        bias = floating(to_tensor(bias, what))
        if bias.shape != (weight.shape[-1],):
            raise ValueError(f"{what}: bias must have shape ({weight.shape[-1]},), got {bias.shape}")
        return conv_bias_raw(x, weight, bias.astype(x.dtype), stride, dilation, groups)
    return conv_raw(x, weight, stride, dilation, groups)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of ``x (b, t, c_in)`` with ``weight (k, c_in/groups, c_out)``.

    ``padding``: an int, a ``(before, after)`` pair, ``[(before, after)]`` (one entry per
    spatial dimension, as in every rank), ``"valid"``, ``"same"`` or ``"causal"`` (output
    at t sees inputs ≤ t only)."""
    return conv(x, weight, bias, stride, padding, dilation, groups, nd=1)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of ``x (b, h, w, c_in)`` with ``weight (kh, kw, c_in/groups, c_out)``.

    ``padding`` is an int (both sides of both dimensions), or one entry per spatial
    dimension — an int or a ``(before, after)`` pair, e.g. ``(1, 2)`` or ``((1, 0), (0,
    2))`` — or ``"valid"`` or ``"same"``. ``groups = c_in`` gives a depthwise convolution.
    """
    return conv(x, weight, bias, stride, padding, dilation, groups, nd=2)


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution of ``x (b, t, h, w, c_in)`` with ``weight (kt, kh, kw, c_in/groups, c_out)``;
    ``padding`` as in :func:`conv2d`, with three entries."""
    return conv(x, weight, bias, stride, padding, dilation, groups, nd=3)


def _transpose_args(stride, dilation, padding, output_padding, groups, nd, what):
    """Checked stride, dilation, padding and output_padding of a transposed convolution.
    Its padding crops the output symmetrically (PyTorch's meaning), so it takes an int
    or one int per spatial dimension."""
    stride = _tuple(stride, nd, what, "stride", low=1)
    dilation = _tuple(dilation, nd, what, "dilation", low=1)
    padding = _tuple(padding, nd, what, "padding", low=0)
    output_padding = _tuple(output_padding, nd, what, "output_padding", low=0)
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"{what}: groups must be positive (an int), got {groups!r}")
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{what}: output_padding {output_padding} must be smaller than the "
                         f"stride or the dilation")
    return stride, dilation, padding, output_padding


def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1, *, nd=None):
    """N-d transposed convolution (the adjoint of a convolution); see :func:`conv_transpose2d`."""
    weight = floating(to_tensor(weight, "conv_transpose"))
    nd = nd or weight.ndim - 2
    what = f"conv_transpose{nd}d"
    x = _check_input(x, nd, what)
    kernel = weight.shape[:nd]
    if weight.ndim != nd + 2:
        raise ValueError(f"{what}: weight must have shape (*kernel_size, out_channels/groups, "
                         f"in_channels) with {nd} kernel dims, got {weight.shape}")
    stride, dilation, padding, output_padding = _transpose_args(
        stride, dilation, padding, output_padding, groups, nd, what)
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"{what}: input has {x.shape[-1]} channels but the weight {weight.shape} "
                         f"expects {weight.shape[-1]} (its last axis)")
    if x.shape[-1] % groups:
        raise ValueError(f"{what}: groups={groups} must divide the input channels {x.shape[-1]}")
    out_channels = weight.shape[-2] * groups
    full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(x.shape[1:1 + nd], stride, dilation, kernel)]
    sizes = [n - 2 * p + op for n, p, op in zip(full, padding, output_padding)]
    if min(sizes) <= 0:
        raise ValueError(f"{what}: padding {padding} leaves no output (full output size {tuple(full)})")
    if weight.dtype != x.dtype:
        weight = weight.astype(x.dtype)
    y = conv_transpose_raw(x, weight, stride, dilation, groups, (x.shape[0], *full, out_channels))
    extra = [max(0, op - p) for op, p in zip(output_padding, padding)]
    if any(extra):
        y = ops.pad(y, [(0, 0)] + [(0, e) for e in extra] + [(0, 0)])
    index = (slice(None),) + tuple(slice(p, n - p + op) for p, n, op in zip(padding, full, output_padding))
    y = y[index]
    if bias is not None:
        bias = floating(to_tensor(bias, what))
        if bias.shape != (out_channels,):
            raise ValueError(f"{what}: bias must have shape ({out_channels},), got {bias.shape}")
        y = y + bias.astype(y.dtype)
    return y


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution; ``weight (k, c_out/groups, c_in)``."""
    return conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, nd=1)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution (upsampling): the adjoint of :func:`conv2d`.

    ``weight`` is ``(kh, kw, c_out/groups, c_in)``; the output size per dimension is
    ``(n - 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1``, as in PyTorch.
    """
    return conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, nd=2)


def conv_transpose3d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """3-D transposed convolution; ``weight (kt, kh, kw, c_out/groups, c_in)``."""
    return conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, nd=3)


# ----------------------------------------------------------------------------- pooling
def _pool_args(x, kernel_size, stride, padding, dilation, nd, what):
    x = _check_input(x, nd, what)
    kernel, stride, padding, dilation = _pool_geometry(kernel_size, stride, padding, dilation,
                                                       nd, what)
    return x, kernel, stride, padding, dilation


def _pool_geometry(kernel_size, stride, padding, dilation, nd, what):
    """Checked kernel, stride, padding and dilation of a pooling window. Pooling pads
    both sides alike (PyTorch's meaning): an int or one int per spatial dimension."""
    kernel = _tuple(kernel_size, nd, what, "kernel_size", low=1)
    stride = kernel if stride is None else _tuple(stride, nd, what, "stride", low=1)
    dilation = _tuple(dilation, nd, what, "dilation", low=1)
    padding = _tuple(padding, nd, what, "padding", low=0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{what}: padding {padding} must be between 0 and half the kernel {kernel}")
    return kernel, stride, padding, dilation


def _pool_sizes(x, kernel, stride, padding, dilation, ceil_mode, nd, what):
    """Output sizes and the extra padding at the end that ``ceil_mode`` needs."""
    sizes, extra = [], []
    for n, k, s, p, d in zip(x.shape[1:1 + nd], kernel, stride, padding, dilation):
        span = n + 2 * p - d * (k - 1) - 1
        if span < 0:
            raise ValueError(f"{what}: window {kernel} (dilation {dilation}) is larger than the "
                             f"padded input {tuple(x.shape[1:1 + nd])}")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + p:      # the last window must start inside
            o -= 1
        sizes.append(o)
        extra.append(max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)))
    return sizes, extra


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             return_indices=False, *, nd):
    """N-d max pooling; see :func:`max_pool2d`."""
    what = f"max_pool{nd}d"
    x, kernel, stride, padding, dilation = _pool_args(x, kernel_size, stride, padding, dilation, nd, what)
    _, extra = _pool_sizes(x, kernel, stride, padding, dilation, ceil_mode, nd, what)
    pads = tuple((p, p + e) for p, e in zip(padding, extra))
    spatial = x.shape[1:1 + nd]
    if any(a or b for a, b in pads):
        x = _pad(x, list(pads), value=float("-inf"))
    else:
        pads = ()
    out = _max_pool_op(x, kernel, stride, dilation, pads)
    if not return_indices:
        return out
    offsets = argmax_windows(x, kernel, stride, dilation, pads)
    return out, _flat_indices(offsets, kernel, stride, dilation, padding, spatial)


def _flat_indices(offsets, kernel, stride, dilation, padding, spatial):
    """PyTorch's ``return_indices`` in channels-last layout: for every output element,
    the row-major flat index ``i·W + j`` (2-D) of the chosen input position within its
    sample's and channel's unpadded spatial grid, as int64 of the output's shape (tensor
    operations on the chosen kernel offsets)."""
    nd = len(kernel)
    xp = namespace(offsets)
    flat = offsets.astype(np.int64) * 0
    rest = offsets.astype(np.int64)
    strides_k = [int(np.prod(kernel[d + 1:])) for d in range(nd)]
    for d in range(nd):
        chosen = (rest // strides_k[d]) % kernel[d]           # this dimension's offset
        shape = [1] * offsets.ndim
        shape[1 + d] = offsets.shape[1 + d]
        start = constant((xp.arange(offsets.shape[1 + d]) * stride[d] - padding[d]).reshape(shape))
        flat = flat * spatial[d] + start + chosen * dilation[d]
    return flat


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-D max pooling over ``(b, t, c)``; ``stride`` defaults to the kernel size. See
    :func:`max_pool2d` for ``return_indices`` (here the index is the time step)."""
    return max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd=1)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling over ``(b, h, w, c)`` (2×2 halves h and w). The gradient goes to
    the first maximum of each window in row-major order (padding is never chosen; NaN
    wins), as in PyTorch. ``ceil_mode`` keeps a last, partial window. ``padding`` pads
    both sides alike: an int or one int per spatial dimension.

    With ``return_indices`` it returns ``(values, indices)``: ``indices`` has the
    output's shape ``(b, h_out, w_out, c)`` and holds, per sample and channel, the
    row-major flat position ``i·w + j`` of each maximum in the unpadded input (PyTorch's
    indices, moved to channels last: ``torch_indices.permute(0, 2, 3, 1)``)."""
    return max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd=2)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """3-D max pooling over ``(b, t, h, w, c)``; ``return_indices`` gives the flat
    position ``(i·h + j)·w + k`` of each maximum, as in :func:`max_pool2d`."""
    return max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd=3)


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, *, nd):
    what = f"avg_pool{nd}d"
    x, kernel, stride, padding, _ = _pool_args(x, kernel_size, stride, padding, 1, nd, what)
    _, extra = _pool_sizes(x, kernel, stride, padding, (1,) * nd, ceil_mode, nd, what)
    c = x.shape[-1]
    k = int(np.prod(kernel))
    pads = [(p, p + e) for p, e in zip(padding, extra)]
    padded = _pad(x, pads)
    xp = namespace(x)
    ones = constant(xp.ones((*kernel, 1, c), dtype=x.dtype))
    if divisor_override is not None:
        return conv_raw(padded, ones, stride, (1,) * nd, c) * (1.0 / divisor_override)
    if not any(extra) and (count_include_pad or not any(padding)):
        w = constant(xp.full((*kernel, 1, c), 1.0 / k, dtype=x.dtype))
        return conv_raw(padded, w, stride, (1,) * nd, c)
    # divide by the number of elements each window covers: real ones only, or also the
    # symmetric padding (count_include_pad), never the ceil_mode extension
    mask = xp.zeros((1, *padded.shape[1:1 + nd], 1), dtype=x.dtype)
    inner = padding if not count_include_pad else (0,) * nd
    lengths = [n + 2 * (p - i) for n, p, i in zip(x.shape[1:1 + nd], padding, inner)]
    mask[(slice(None),) + tuple(slice(i, i + m) for i, m in zip(inner, lengths))] = 1.0
    counts = conv_raw(constant(mask), constant(xp.ones((*kernel, 1, 1), dtype=x.dtype)),
                      stride, (1,) * nd, 1)
    return conv_raw(padded, ones, stride, (1,) * nd, c) / counts


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling over ``(b, t, c)``."""
    return avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, nd=1)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling over ``(b, h, w, c)`` (a depthwise convolution with a constant
    kernel), PyTorch's arguments: ``count_include_pad=False`` averages over the real
    elements only; ``ceil_mode`` keeps a last, partial window."""
    return avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override, nd=2)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """3-D average pooling over ``(b, t, h, w, c)``."""
    return avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override, nd=3)


def global_avg_pool(x):
    """Mean over every axis but the batch and channel axes: ``(b, ..., c) → (b, c)``."""
    x = floating(to_tensor(x, "global_avg_pool"))
    if x.ndim < 3:
        raise ValueError(f"global_avg_pool: expected (batch, ..., channels), got {x.shape}")
    return x.mean(axis=tuple(range(1, x.ndim - 1)))


def _first_max_over_axis1(x):
    """``max`` over axis 1 of ``(b, n, c)`` whose gradient goes to the first maximum
    (NaN wins), the convention of :func:`max_pool2d`, rather than split between ties."""
    idx = ops.argmax(x, axis=1, keepdims=True)             # an operation: works in vmap
    return ops.take_along_axis(x, idx, axis=1).squeeze(1)


def global_max_pool(x):
    """Maximum over every axis but the batch and channel axes: ``(b, ..., c) → (b, c)``.
    Ties send the gradient to the first maximum in row-major order, as max pooling does
    (and PyTorch's ``max_pool2d`` over the whole image)."""
    x = floating(to_tensor(x, "global_max_pool"))
    if x.ndim < 3:
        raise ValueError(f"global_max_pool: expected (batch, ..., channels), got {x.shape}")
    if any(n == 0 for n in x.shape[1:-1]):
        raise ValueError(f"global_max_pool: no positions to pool over in {x.shape}")
    return _first_max_over_axis1(x.reshape((x.shape[0], -1, x.shape[-1])))


def masked_global_avg_pool(x, mask):
    """Mean over the time axis of ``x (b, t, c)`` counting only positions where
    ``mask (b, t)`` is true: padding in variable-length batches does not dilute it."""
    x = floating(to_tensor(x, "masked_global_avg_pool"))
    m = to_tensor(mask, "masked_global_avg_pool")
    if x.ndim != 3 or m.shape != x.shape[:2]:
        raise ValueError(f"masked_global_avg_pool: need x (b, t, c) and mask (b, t); got "
                         f"{x.shape} and {m.shape}")
    mf = m.astype(x.dtype)[..., None]
    counts = ops.maximum(mf.sum(axis=1), 1.0)
    return (x * mf).sum(1) / counts


def masked_global_max_pool(x, mask):
    """Maximum over the time axis of ``x (b, t, c)`` at positions where ``mask`` is true
    (ties: the gradient goes to the first maximum, as in :func:`global_max_pool`)."""
    x = floating(to_tensor(x, "masked_global_max_pool"))
    m = to_tensor(mask, "masked_global_max_pool")
    if x.ndim != 3 or m.shape != x.shape[:2]:
        raise ValueError(f"masked_global_max_pool: need x (b, t, c) and mask (b, t); got "
                         f"{x.shape} and {m.shape}")
    return _first_max_over_axis1(ops.where(m[..., None], x, float("-inf")))


# ----------------------------------------------------------------------------- modules
class _ConvNd(Module):
    nd = 2
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, output_padding=0, padding_mode="zeros",
                 dtype=None, generator=None):
        super().__init__()
        name = type(self).__name__
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {sorted(_PADDING_MODES)}, "
                             f"got {padding_mode!r}")
        if self.transposed and padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is defined for transposed "
                             f"convolutions")
        self.padding_mode = padding_mode
        for what, n in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not _is_int(n) or n <= 0:
                raise ValueError(f"{name}: {what} must be positive (an int), got {n!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _tuple(kernel_size, self.nd, name, "kernel_size", low=1)
        self._check_geometry(name, stride, padding, dilation, groups, output_padding)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.output_padding = groups, output_padding
        d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        if self.transposed:
            shape = (*self.kernel_size, out_channels // groups, in_channels)
            fan_in = (out_channels // groups) * int(np.prod(self.kernel_size))
        else:
            shape = (*self.kernel_size, in_channels // groups, out_channels)
            fan_in = (in_channels // groups) * int(np.prod(self.kernel_size))
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(np.zeros(shape, d))
        init.uniform_(self.weight, -bound, bound, generator)
        if bias:
            self.bias = Parameter(np.zeros(out_channels, d))
            init.uniform_(self.bias, -bound, bound, generator)
        else:
            self.register_parameter("bias", None)

    def _check_geometry(self, name, stride, padding, dilation, groups, output_padding):
        """Fail at construction, not at the first call, on a bad stride, dilation or
        padding."""
        if self.transposed:
            _transpose_args(stride, dilation, padding, output_padding, groups, self.nd, name)
            return
        stride = _tuple(stride, self.nd, name, "stride", low=1)
        dilation = _tuple(dilation, self.nd, name, "dilation", low=1)
        _padding(padding, self.kernel_size, stride, dilation, self.nd, name)
        if output_padding != 0:
            raise ValueError(f"{name}: output_padding applies to transposed convolutions only")

    def forward(self, x):
        if self.transposed:
            return conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation, nd=self.nd)
        return conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                    self.groups, nd=self.nd, padding_mode=self.padding_mode)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != 1:
            s += f", stride={self.stride}"
        if self.padding != 0:
            s += f", padding={self.padding!r}"
        if self.output_padding != 0:
            s += f", output_padding={self.output_padding!r}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


def _conv_class(name, nd, transposed, doc):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *args, **kwargs):
        # PyTorch's positional order after padding
        names = (["output_padding", "groups", "bias", "dilation", "padding_mode"] if transposed
                 else ["dilation", "groups", "bias", "padding_mode"])
        if len(args) > len(names):
            raise TypeError(f"{name}() takes at most {5 + len(names)} positional arguments, got "
                            f"{5 + len(args)}")
        for key, value in zip(names, args):
            if key in kwargs:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            kwargs[key] = value
        _ConvNd.__init__(self, in_channels, out_channels, kernel_size, stride, padding, **kwargs)

    return type(name, (_ConvNd,), {"nd": nd, "transposed": transposed, "__init__": __init__,
                                   "__doc__": doc})


Conv1d = _conv_class("Conv1d", 1, False, "1-D convolution layer over (b, t, c); see conv1d.")
Conv2d = _conv_class("Conv2d", 2, False, "2-D convolution layer over (b, h, w, c); see conv2d.")
Conv3d = _conv_class("Conv3d", 3, False, "3-D convolution layer over (b, t, h, w, c); see conv3d.")
ConvTranspose1d = _conv_class("ConvTranspose1d", 1, True, "1-D transposed convolution layer.")
ConvTranspose2d = _conv_class("ConvTranspose2d", 2, True, "2-D transposed convolution layer (upsampling).")
ConvTranspose3d = _conv_class("ConvTranspose3d", 3, True, "3-D transposed convolution layer.")


class _Pool(Module):
    """Pooling module; the arguments after ``padding`` follow PyTorch's order."""

    extra_names = ()
    nd = 2

    def __init__(self, kernel_size, stride=None, padding=0, *args, **kwargs):
        super().__init__()
        if len(args) > len(self.extra_names):
            raise TypeError(f"{type(self).__name__}() takes at most {3 + len(self.extra_names)} "
                            f"arguments, got {3 + len(args)}")
        options = dict(zip(self.extra_names, args))
        for key, value in kwargs.items():
            if key not in self.extra_names:
                raise TypeError(f"{type(self).__name__}() got an unexpected argument {key!r}")
            options[key] = value
        _pool_geometry(kernel_size, stride, padding, options.get("dilation", 1), self.nd,
                       type(self).__name__)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.options = options

    def extra_repr(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}{extra}"


def _pool_class(name, fn, nd, extra_names):
    def forward(self, x):
        return fn(x, self.kernel_size, self.stride, self.padding, **self.options, nd=nd)

    return type(name, (_Pool,), {"forward": forward, "extra_names": extra_names, "nd": nd,
                                 "__doc__": f"{name}: module form of {fn.__name__}{nd}d."})


_MAX_ARGS = ("dilation", "return_indices", "ceil_mode")       # PyTorch's order
_AVG_ARGS = ("ceil_mode", "count_include_pad", "divisor_override")
MaxPool1d = _pool_class("MaxPool1d", max_pool, 1, _MAX_ARGS)
MaxPool2d = _pool_class("MaxPool2d", max_pool, 2, _MAX_ARGS)
MaxPool3d = _pool_class("MaxPool3d", max_pool, 3, _MAX_ARGS)
AvgPool1d = _pool_class("AvgPool1d", avg_pool, 1, _AVG_ARGS[:2])
AvgPool2d = _pool_class("AvgPool2d", avg_pool, 2, _AVG_ARGS)
AvgPool3d = _pool_class("AvgPool3d", avg_pool, 3, _AVG_ARGS)


class GlobalAvgPool(Module):
    """``(b, ..., c) → (b, c)`` by averaging over the spatial axes."""

    def forward(self, x):
        return global_avg_pool(x)


class GlobalMaxPool(Module):
    """``(b, ..., c) → (b, c)`` by the maximum over the spatial axes."""

    def forward(self, x):
        return global_max_pool(x)


# ----------------------------------------------------------------------------- receptive field
def receptive_field(layers):
    """Receptive field of every layer of a stack of convolutions and poolings.

    ``layers`` is a module (its convolution and pooling layers are taken in definition
    order, as one sequential chain — for networks with parallel branches such as skip
    connections, pass the main path's layers) or a list of ``(kernel, stride,
    dilation)`` tuples (ints or one per dimension). Returns one
    dict per layer with its ``receptive_field`` (input elements seen by one output
    element, per dimension) and ``jump`` (input distance between adjacent outputs):
    ``r ← r + (k − 1)·d·j`` and ``j ← j·s``.
    """
    specs = []
    if isinstance(layers, Module):
        for name, m in layers.named_modules():
            if isinstance(m, _ConvNd) and not m.transposed:
                specs.append((name or type(m).__name__, m.kernel_size, m.stride, m.dilation))
            elif isinstance(m, _Pool):
                k = m.kernel_size
                specs.append((name or type(m).__name__, k, k if m.stride is None else m.stride,
                              m.options.get("dilation", 1)))
    else:
        for i, spec in enumerate(layers):
            k, s, d = (tuple(spec) + (1, 1))[:3]
            specs.append((f"layer{i}", k, s, d))
    if not specs:
        raise ValueError("receptive_field: no convolution or pooling layers found")
    nd = max(len(k) if isinstance(k, tuple) else 1 for _, k, _, _ in specs)
    r, j = [1] * nd, [1] * nd
    out = []
    for name, k, s, d in specs:
        k, s, d = (_tuple(v, nd, "receptive_field", "size") for v in (k, s, d))
        r = [ri + (ki - 1) * di * ji for ri, ki, di, ji in zip(r, k, d, j)]
        j = [ji * si for ji, si in zip(j, s)]
        out.append({"layer": name, "receptive_field": tuple(r), "jump": tuple(j)})
    return out
