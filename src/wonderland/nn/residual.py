"""Residual blocks (chapter 9): ``r(x) = f(x) + x``, with normalisation, and the
bottleneck variant. ``residual=False`` builds the same block without the skip, for the
plain twin of a residual network."""

from __future__ import annotations

from .containers import Sequential
from .conv import Conv2d
from .layers import Identity, activation
from .module import Module
from .normalization import BatchNorm2d, GroupNorm


def norm_layer(kind, channels):
    """``"batch"``, ``"group"`` (8 groups or fewer) or ``None``."""
    if kind == "batch":
        return BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return GroupNorm(groups, channels)
    if kind in (None, "none"):
        return Identity()
    raise ValueError(f"norm_layer: unknown normalisation {kind!r}; use 'batch', 'group' or None")


class ResidualBlock(Module):
    """Two 3×3 convolutions with normalisation: ``act(norm(conv(act(norm(conv(x))))) + skip(x))``;
    the skip is a 1×1 convolution when the shape changes (stride or channels)."""

    def __init__(self, in_channels, out_channels, stride=1, norm="batch", act="relu", residual=True):
        super().__init__()
        bias = norm in (None, "none")
        self.residual = residual
        self.body = Sequential(
            Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias),
            norm_layer(norm, out_channels), activation(act),
            Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            norm_layer(norm, out_channels))
        if residual and (stride != 1 or in_channels != out_channels):
            self.skip = Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias),
                                   norm_layer(norm, out_channels))
        else:
            self.skip = Identity()
        self.act = activation(act)

    def forward(self, x):
        y = self.body(x)
        return self.act(y + self.skip(x) if self.residual else y)


class Bottleneck(Module):
    """1×1 reduce → 3×3 → 1×1 expand (by ``expansion``), with a skip connection."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, norm="batch", act="relu", residual=True):
        super().__init__()
        out = width * self.expansion
        bias = norm in (None, "none")
        self.residual = residual
        self.body = Sequential(
            Conv2d(in_channels, width, 1, bias=bias), norm_layer(norm, width), activation(act),
            Conv2d(width, width, 3, stride=stride, padding=1, bias=bias), norm_layer(norm, width),
            activation(act), Conv2d(width, out, 1, bias=bias), norm_layer(norm, out))
        if residual and (stride != 1 or in_channels != out):
            self.skip = Sequential(Conv2d(in_channels, out, 1, stride=stride, bias=bias),
                                   norm_layer(norm, out))
        else:
            self.skip = Identity()
        self.act = activation(act)
        self.out_channels = out

    def forward(self, x):
        y = self.body(x)
        return self.act(y + self.skip(x) if self.residual else y)
