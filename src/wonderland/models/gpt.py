"""A decoder-only language model (chapter 10): GPT.

Token embeddings plus positions, ``n_layer`` pre-norm blocks (causal multi-head
attention, then an MLP, each with a residual connection), a final layer norm, and
logits through the *tied* token-embedding matrix (the output layer reuses the input
embedding's weights, transposed). ``generate`` samples with temperature, top-k and
top-p (nucleus), decoding with a KV cache so each new token costs one position's work.
``GPT.from_pretrained`` and ``save_pretrained`` read and write Hugging Face's GPT-2
folders (see ``pretrained.py``).
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
from .pretrained import load_gpt2, save_gpt2


# the MLP's nonlinearity by name ("gelu_tanh" is GPT-2's, which Hugging Face calls "gelu_new")
ACTIVATIONS = {
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "quick_gelu": lambda x: x * F.sigmoid(1.702 * x),
}


class Block(Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``, the
    MLP ``proj(act(fc(x)))`` of width ``n_inner`` (default ``4 · n_embd``) with ``act``
    one of :data:`ACTIVATIONS` (default ``"gelu_tanh"``, GPT-2's)."""

    def __init__(self, n_embd, n_head, dropout=0.0, n_layer=1, generator=None, *, n_inner=None,
                 activation="gelu_tanh", layer_norm_eps=1e-5):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"GPT: activation must be one of {sorted(ACTIVATIONS)}, got "
                             f"{activation!r}")
        n_inner = 4 * n_embd if n_inner is None else n_inner
        self.activation = activation
        self.ln_1 = LayerNorm(n_embd, eps=layer_norm_eps)
        self.attn = MultiheadAttention(n_embd, n_head, dropout=dropout, generator=generator)
        self.ln_2 = LayerNorm(n_embd, eps=layer_norm_eps)
        self.fc = Linear(n_embd, n_inner, generator=generator)
        self.proj = Linear(n_inner, n_embd, generator=generator)
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
        h = self.ln_2(x)
        if self.activation in ("gelu", "gelu_tanh"):   # GELU in the product's epilogue
            h = F.linear(h, self.fc.weight, self.fc.bias, activation=self.activation)
        else:
            h = ACTIVATIONS[self.activation](self.fc(h))
        return x + self.dropout(self.proj(h))


class GPT(Module):
    """``GPT(vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0)``:
    ``model(idx)`` maps token ids ``(b, t)`` (``t ≤ block_size``) to next-token logits
    ``(b, t, vocab_size)``. ``positions`` (keyword) chooses the positional information:
    ``"learned"`` (default), ``"sinusoidal"``, ``"rope"`` or ``"none"``; ``n_inner``,
    ``activation`` and ``layer_norm_eps`` shape every :class:`Block` (defaults: GPT-2's).
    ``GPT.from_pretrained(folder)`` / ``save_pretrained(folder)`` read and write Hugging
    Face's GPT-2 format."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0, *,
                 positions="learned", n_inner=None, activation="gelu_tanh", layer_norm_eps=1e-5,
                 generator=None):
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
        self.n_inner = 4 * n_embd if n_inner is None else n_inner
        self.activation, self.layer_norm_eps = activation, layer_norm_eps
        self.blocks = ModuleList([Block(n_embd, n_head, dropout, n_layer, generator,
                                        n_inner=n_inner, activation=activation,
                                        layer_norm_eps=layer_norm_eps)
                                  for _ in range(n_layer)])
        self.ln_f = LayerNorm(n_embd, eps=layer_norm_eps)

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
        ``block_size`` tokens when the cache is full). :meth:`stream` gives the same
        tokens one step at a time."""
        steps = self.stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator)
        new = [nxt[:, None] for nxt in steps]
        return Tensor(np.concatenate([_prompt_ids(idx)] + new, axis=1))

    def stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
               use_cache=True, generator=None):
        """The tokens :meth:`generate` appends, as they come: an iterator of
        ``max_new_tokens`` int64 arrays ``(b,)``, one per step (arguments as
        :meth:`generate`, checked at the call). Each step runs in eval mode without
        recording a graph; the model's mode is restored after it."""
        _check_sampling(temperature, top_k, top_p, max_new_tokens)
        return self._steps(_prompt_ids(idx), max_new_tokens, temperature, top_k, top_p,
                           use_cache, get_generator(generator))

    def _steps(self, seq, max_new_tokens, temperature, top_k, top_p, use_cache, g):
        caches = None
        for _ in range(max_new_tokens):
            was = self.training
            self.eval()
            try:
                with no_grad():
                    if use_cache and caches is not None and len(caches[0]) < self.block_size:
                        logits = self(seq[:, -1:], caches=caches)
                    else:
                        ctx = seq[:, -self.block_size:]
                        caches = [KVCache() for _ in self.blocks] if use_cache else None
                        logits = self(ctx, caches=caches)
            finally:
                self.train(was)
            nxt = sample_next(logits.numpy()[:, -1], temperature, top_k, top_p, g)
            seq = np.concatenate([seq, nxt[:, None]], axis=1)
            yield nxt

    @classmethod
    def from_pretrained(cls, path):
        """A GPT from a Hugging Face GPT-2 folder (``config.json`` and ``model.safetensors``
        or sharded safetensors with ``model.safetensors.index.json``), in eval mode; see
        :mod:`wonderland.models.pretrained`. Nothing is downloaded."""
        return load_gpt2(cls, path)

    def save_pretrained(self, path, max_shard_size=None):
        """Write this model as a Hugging Face GPT-2 folder (``transformers`` loads it as
        ``GPT2LMHeadModel``), shards of at most ``max_shard_size`` (bytes or ``"5GB"``)
        when given; each file is replaced atomically."""
        save_gpt2(self, path, max_shard_size)


def _check_sampling(temperature, top_k, top_p, max_new_tokens):
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


def _prompt_ids(idx):
    """The prompt ``idx`` as int64 ids ``(b, t)``, checked."""
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
    return seq.astype(np.int64)


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
