"""A configurable ResNet (chapter 9) and its plain twin."""

from __future__ import annotations

from ..nn import Conv2d, GlobalAvgPool, Linear, Module, Sequential, activation
from ..nn.residual import Bottleneck, ResidualBlock, norm_layer


class ResNet(Module):
    """Stem (3×3 conv, norm, act) → stages of residual blocks → global average pooling →
    linear head. Each stage ``i`` has ``depths[i]`` blocks of ``widths[i]`` channels; every
    stage after the first halves the resolution. ``block="bottleneck"`` uses 1-3-1 blocks.
    ``residual=False`` removes every skip connection (the plain network of the same
    depth); ``norm=None`` removes normalisation.
    """

    def __init__(self, in_channels=1, num_classes=10, widths=(16, 32, 64), depths=(2, 2, 2),
                 block="basic", norm="batch", residual=True, act="relu"):
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"ResNet: widths {widths} and depths {depths} must be non-empty and "
                             f"of one length")
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"ResNet: block must be 'basic' or 'bottleneck', got {block!r}")
        bias = norm in (None, "none")
        self.stem = Sequential(Conv2d(in_channels, widths[0], 3, padding=1, bias=bias),
                               norm_layer(norm, widths[0]), activation(act))
        layers, channels = [], widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            for j in range(d):
                stride = 2 if (i > 0 and j == 0) else 1
                if block == "basic":
                    layers.append(ResidualBlock(channels, w, stride, norm, act, residual))
                    channels = w
                else:
                    b = Bottleneck(channels, w, stride, norm, act, residual)
                    layers.append(b)
                    channels = b.out_channels
        self.stages = Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.head = Linear(channels, num_classes)
        self.depth = 2 + sum(depths) * (2 if block == "basic" else 3)

    def forward(self, x):
        return self.head(self.pool(self.stages(self.stem(x))))
