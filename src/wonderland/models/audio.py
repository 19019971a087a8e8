"""An audio transformer (chapter 11): a 1-D convolutional tokeniser shortens the sound
into a few dozen tokens, a transformer encoder relates them, a class token is read out.

Two front ends: ``frontend="spectrogram"`` (Whisper-like: a log-magnitude spectrogram
of 25 ms frames, then two 1-D convolutions, the second with stride 2) and
``frontend="waveform"`` (wav2vec-like: strided convolutions straight on the samples,
:class:`~wonderland.nn.ConvFeatureEncoder`).
"""

from __future__ import annotations

import numpy as np

from .. import fft
from ..nn import (ClassToken, Conv1d, ConvFeatureEncoder, LayerNorm, Linear, Module, ModuleList,
                  SinusoidalPositionalEmbedding, TransformerEncoderLayer)
from ..nn import functional as F
from ..ops.arguments import floating, to_tensor


def log_spectrogram(audio, frame=200, hop=80, eps=1e-6):
    """``(b, samples)`` → ``(b, frames, frame//2 + 1)``: log magnitude of the Hann-windowed
    DFT of overlapping frames (differentiable: built from ``wl.fft.rfft``)."""
    x = floating(to_tensor(audio, "log_spectrogram"))
    n = (x.shape[-1] - frame) // hop + 1
    if n < 1:
        raise ValueError(f"log_spectrogram: {x.shape[-1]} samples are fewer than one frame ({frame})")
    idx = np.arange(n)[:, None] * hop + np.arange(frame)[None, :]
    window = np.hanning(frame).astype(x.dtype)
    frames = x[..., idx] * window
    re, im = fft.rfft(frames, axis=-1)
    return (re * re + im * im + eps).log() * 0.5


class AudioTransformer(Module):
    """Keyword spotting / audio classification from raw samples ``(b, samples)``."""

    def __init__(self, num_classes, dim=64, depth=2, heads=4, frontend="spectrogram",
                 conv_layers=((64, 10, 5), (64, 3, 2), (64, 3, 2), (64, 3, 2), (64, 3, 2)),
                 frame=200, hop=80, dropout=0.0, max_tokens=512, generator=None):
        super().__init__()
        if frontend not in ("spectrogram", "waveform"):
            raise ValueError(f"AudioTransformer: frontend must be 'spectrogram' or 'waveform', "
                             f"got {frontend!r}")
        self.frontend, self.frame, self.hop = frontend, frame, hop
        if frontend == "spectrogram":
            bins = frame // 2 + 1
            self.conv1 = Conv1d(bins, dim, 3, padding=1, generator=generator)
            self.conv2 = Conv1d(dim, dim, 3, stride=2, padding=1, generator=generator)
        else:
            self.features = ConvFeatureEncoder(conv_layers)
            self.proj = Linear(self.features.out_channels, dim, generator=generator)
        self.in_norm = LayerNorm(dim)
        self.pos = SinusoidalPositionalEmbedding(dim)
        self.tokens = ClassToken(dim, generator=generator)
        self.blocks = ModuleList([TransformerEncoderLayer(dim, heads, 2 * dim, dropout, "gelu",
                                                          norm_first=True, generator=generator)
                                  for _ in range(depth)])
        self.norm = LayerNorm(dim)
        self.head = Linear(dim, num_classes, generator=generator)

    def tokenize(self, audio):
        """The conv tokeniser alone: ``(b, samples)`` → ``(b, tokens, dim)``."""
        if self.frontend == "spectrogram":
            spec = log_spectrogram(audio, self.frame, self.hop)
            spec = spec - spec.mean(axis=(1, 2), keepdims=True)
            return self.in_norm(F.gelu(self.conv2(F.gelu(self.conv1(spec)))))
        return self.in_norm(self.proj(self.features(audio)))

    def forward(self, audio):
        x = self.tokens(self.pos(self.tokenize(audio)))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])
