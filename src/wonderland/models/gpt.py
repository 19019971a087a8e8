"""A decoder-only language model (chapter 10): GPT.

Token embeddings plus positions, ``n_layer`` pre-norm blocks (causal multi-head
attention, then an MLP, each with a residual connection), a final layer norm, and
logits through the *tied* token-embedding matrix (the output layer reuses the input
embedding's weights, transposed). ``generate`` samples with temperature, top-k and
top-p (nucleus), decoding with a KV cache so each new token costs one position's work.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core.modes import no_grad
from ..core.tensor import Tensor
from ..nn import (Dropout, Embedding, KVCache, LayerNorm, LearnedPositionalEmbedding, Linear,
                  Module, ModuleList, MultiheadAttention, RotaryEmbedding,
                  SinusoidalPositionalEmbedding)
from ..nn import functional as F
from ..nn import init
from ..random import get_generator


class Block(Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, n_embd, n_head, dropout=0.0, n_layer=1, generator=None):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd)
        self.attn = MultiheadAttention(n_embd, n_head, dropout=dropout, generator=generator)
        self.ln_2 = LayerNorm(n_embd)
        self.fc = Linear(n_embd, 4 * n_embd, generator=generator)
        self.proj = Linear(4 * n_embd, n_embd, generator=generator)
        self.dropout = Dropout(dropout, generator)
        for lin in (self.attn.q_proj, self.attn.k_proj, self.attn.v_proj, self.fc):
            init.normal_(lin.weight, 0.0, 0.02, generator)
        for lin in (self.attn.out_proj, self.proj):      # GPT-2: scaled residual projections
            init.normal_(lin.weight, 0.0, 0.02 / math.sqrt(2 * n_layer), generator)
        for lin in (self.attn.q_proj, self.attn.k_proj, self.attn.v_proj, self.attn.out_proj,
                    self.fc, self.proj):
            lin.bias.data[...] = 0

    def forward(self, x, cache=None, rope=None, causal_mask=None):
        h = self.ln_1(x)
        a, _ = self.attn(h, h, h, attn_mask=causal_mask, is_causal=True, need_weights=False,
                         cache=cache, rope=rope)
        x = x + self.dropout(a)
        return x + self.dropout(self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh")))


class GPT(Module):
    """``GPT(vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0)``:
    ``model(idx)`` maps token ids ``(b, t)`` (``t ≤ block_size``) to next-token logits
    ``(b, t, vocab_size)``. ``positions`` (keyword) chooses the positional information:
    ``"learned"`` (default), ``"sinusoidal"``, ``"rope"`` or ``"none"``."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0, *,
                 positions="learned", generator=None):
        super().__init__()
        if positions not in ("learned", "sinusoidal", "rope", "none"):
            raise ValueError(f"GPT: positions must be 'learned', 'sinusoidal', 'rope' or 'none', "
                             f"got {positions!r}")
        self.vocab_size, self.block_size = vocab_size, block_size
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.positions = positions
        self.wte = Embedding(vocab_size, n_embd, generator=generator)
        init.normal_(self.wte.weight, 0.0, 0.02, generator)
        self.wpe = LearnedPositionalEmbedding(block_size, n_embd, generator=generator) \
            if positions == "learned" else \
            SinusoidalPositionalEmbedding(n_embd) if positions == "sinusoidal" else None
        self.rope = RotaryEmbedding(n_embd // n_head) if positions == "rope" else None
        self.drop = Dropout(dropout, generator)
        self.blocks = ModuleList([Block(n_embd, n_head, dropout, n_layer, generator)
                                  for _ in range(n_layer)])
        self.ln_f = LayerNorm(n_embd)

    def num_parameters(self, embeddings=True):
        n = sum(p.size for p in self.parameters())
        if not embeddings:
            n -= self.wte.weight.size + (self.wpe.weight.size if self.positions == "learned" else 0)
        return n

    def forward(self, idx, caches=None):
        """Logits for ids ``idx (b, t)``; with ``caches`` (one :class:`KVCache` per
        block), ``idx`` holds only the new tokens, placed after the cached ones."""
        ids = idx if isinstance(idx, Tensor) else Tensor(np.asarray(idx))
        if ids.ndim != 2:
            raise ValueError(f"GPT: expected token ids (batch, time), got shape {ids.shape}")
        offset = 0 if caches is None else len(caches[0])
        t = ids.shape[1]
        if offset + t > self.block_size and self.positions == "learned":
            raise ValueError(f"GPT: sequence of length {offset + t} exceeds block_size="
                             f"{self.block_size}")
        x = self.wte(ids)
        if self.wpe is not None:
            x = self.wpe(x, offset=offset)
        x = self.drop(x)
        mask = None
        if caches is None:
            mask = ops.greater(ops.arange(t).reshape(1, -1), ops.arange(t).reshape(-1, 1))
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i], self.rope, mask)
        x = self.ln_f(x)
        return ops.matmul(x, self.wte.weight.T)         # tied output embedding

    def loss(self, idx, targets):
        """Mean next-token cross-entropy (nats) of ``targets (b, t)`` given ``idx (b, t)``."""
        logits = self(idx)
        targets = targets if isinstance(targets, Tensor) else Tensor(np.asarray(targets))
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 use_cache=True, generator=None):
        """Extend ``idx (b, t)`` (or ``(t,)``; integer token ids) by ``max_new_tokens`` (an int
        ≥ 0) sampled tokens; returns ``(b, t + n)``.

        Logits are divided by ``temperature``; ``top_k`` keeps the k most likely tokens,
        ``top_p`` the smallest set whose probability reaches p. ``top_k=1`` is greedy and
        gives the same tokens with and without the cache. With ``use_cache`` each step
        feeds one token through per-layer :class:`KVCache` s (recomputing from the last
        ``block_size`` tokens when the cache is full)."""
        if temperature <= 0:
            raise ValueError(f"generate: temperature must be positive, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"generate: top_k must be at least 1, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)):
            raise TypeError(f"generate: max_new_tokens must be a non-negative int, got "
                            f"{max_new_tokens!r}")
        if max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be a non-negative int, got "
                             f"{max_new_tokens!r}")
        g = get_generator(generator)
        seq = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx)
        if seq.ndim == 1:
            seq = seq[None]
        if seq.ndim != 2:
            raise ValueError(f"generate: idx must be (b, t) or (t,) token ids, got shape "
                             f"{seq.shape}")
        if seq.shape[1] == 0:
            raise ValueError("generate: idx must hold at least one token")
        if seq.dtype.kind not in "iu":
            raise TypeError(f"generate: idx must hold integer token ids, got {seq.dtype} (a float "
                            f"prompt would be truncated to integers)")
        seq = seq.astype(np.int64)
        was = self.training
        self.eval()
        caches = None
        with no_grad():
            for _ in range(max_new_tokens):
                if use_cache and caches is not None and len(caches[0]) < self.block_size:
                    logits = self(seq[:, -1:], caches=caches)
                else:
                    ctx = seq[:, -self.block_size:]
                    if use_cache:
                        caches = [KVCache() for _ in self.blocks]
                        logits = self(ctx, caches=caches)
                    else:
                        logits = self(ctx)
                nxt = sample_next(logits.numpy()[:, -1], temperature, top_k, top_p, g)
                seq = np.concatenate([seq, nxt[:, None]], axis=1)
        self.train(was)
        return Tensor(seq)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token per row of ``logits (b, vocab)`` (a NumPy array), after temperature,
    top-k and top-p filtering. ``top_k=1`` returns the argmax without drawing."""
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k == 1:
        return z.argmax(-1)
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.sort(z, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=-1)
        sorted_p = np.take_along_axis(p, order, -1)
        before = np.cumsum(sorted_p, -1) - sorted_p      # mass of strictly more likely tokens
        keep_sorted = before < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, -1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(-1, keepdims=True)
    g = get_generator(generator)
    u = g.uniform((p.shape[0], 1)).numpy().astype(np.float64)
    cdf = np.cumsum(p, -1)
    return np.minimum((cdf < u * cdf[:, -1:]).sum(-1), p.shape[-1] - 1)
