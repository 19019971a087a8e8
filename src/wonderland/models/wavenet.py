"""Causal dilated convolutions for sequences (chapter 8): a WaveNet-style stack for
forecasting and autoregressive generation, and a character-level language model.

Every convolution is causal (the output at step t sees inputs ≤ t), and dilations
double per layer, so the receptive field ``1 + (k − 1)·Σ dilations`` grows
exponentially with depth. Training uses teacher forcing (all steps at once, each
predicting the next); generation runs one step at a time on the model's own outputs.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..core.modes import no_grad
from ..core.tensor import Tensor
from ..nn import Conv1d, Dropout, Embedding, Module, ModuleList
from ..nn import functional as F
from ..random import get_generator


class WaveNet(Module):
    """``(b, t, in_channels) → (b, t, out_channels)`` through gated, residual, causal
    dilated convolution layers with skip connections."""

    def __init__(self, in_channels, out_channels, channels=32, kernel_size=2,
                 dilations=(1, 2, 4, 8, 16, 32), dropout=0.0):
        super().__init__()
        self.kernel_size, self.dilations = kernel_size, tuple(dilations)
        self.input = Conv1d(in_channels, channels, 1)
        self.filters = ModuleList([Conv1d(channels, 2 * channels, kernel_size, padding="causal",
                                          dilation=d) for d in dilations])
        self.residuals = ModuleList([Conv1d(channels, channels, 1) for _ in dilations])
        self.skips = ModuleList([Conv1d(channels, channels, 1) for _ in dilations])
        self.hidden = Conv1d(channels, channels, 1)
        self.output = Conv1d(channels, out_channels, 1)
        self.dropout = Dropout(dropout)

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def forward(self, x):
        h = self.input(x)
        skip = None
        for filt, res, sk in zip(self.filters, self.residuals, self.skips):
            a, b = ops.split(filt(h), 2, axis=-1)
            z = self.dropout(ops.tanh(a) * ops.sigmoid(b))          # gated activation
            h = h + res(z)
            s = sk(z)
            skip = s if skip is None else skip + s
        return self.output(F.relu(self.hidden(F.relu(skip))))


class CharCNN(Module):
    """Character-level causal language model: embedding → WaveNet → logits."""

    def __init__(self, vocab_size, embedding_dim=32, channels=64, kernel_size=2,
                 dilations=(1, 2, 4, 8, 16, 32), dropout=0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = Embedding(vocab_size, embedding_dim)
        self.net = WaveNet(embedding_dim, vocab_size, channels, kernel_size, dilations, dropout)

    @property
    def receptive_field(self) -> int:
        return self.net.receptive_field

    def forward(self, ids):
        return self.net(self.embed(ids))

    def generate(self, prime, steps, temperature=1.0, generator=None):
        """Continue the integer sequence ``prime`` by ``steps`` sampled tokens."""
        if temperature <= 0:
            raise ValueError(f"generate: temperature must be positive, got {temperature}")
        g = get_generator(generator)
        seq = list(np.asarray(prime.data if isinstance(prime, Tensor) else prime, dtype=np.int64))
        if not seq:
            raise ValueError("generate: prime must hold at least one token")
        window = self.receptive_field
        was = self.training
        self.eval()
        with no_grad():
            for _ in range(steps):
                ctx = np.array(seq[-window:], dtype=np.int64)[None]
                logits = self(Tensor(ctx)).numpy()[0, -1].astype(np.float64) / temperature
                p = np.exp(logits - logits.max())
                p /= p.sum()
                seq.append(int(g.choice(len(p), p=p).item()))
        self.train(was)
        return np.array(seq[len(np.asarray(prime.data if isinstance(prime, Tensor) else prime)):])


def forecast(model, history, steps):
    """Roll a one-step forecaster forward: feed its own predictions back as inputs.
    ``history`` is ``(t, channels)``; returns ``(steps, channels)``."""
    h = np.asarray(history.data if isinstance(history, Tensor) else history, dtype=np.float32)
    window = getattr(model, "receptive_field", h.shape[0])
    out = []
    was = model.training
    model.eval()
    with no_grad():
        for _ in range(steps):
            nxt = model(Tensor(h[-window:][None])).numpy()[0, -1]
            out.append(nxt)
            h = np.concatenate([h, nxt[None]], axis=0)
    model.train(was)
    return np.stack(out)
