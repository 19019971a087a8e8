"""Positional information for transformers (chapter 10).

Absolute: learned embeddings and the fixed sinusoids of "Attention is all you need",
added to the token embeddings. Relative: rotary embeddings (RoPE, rotate-half
convention) rotate queries and keys so that their dot product depends only on the
offset between positions; ALiBi and T5-style buckets add a bias, a function of the
offset, to the attention scores.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend as B
from .. import ops
from ..core import dtypes
from ..ops.arguments import constant, floating, to_tensor
from . import init
from .layers import Embedding
from .module import Module, Parameter

__all__ = ["sinusoidal_embedding", "LearnedPositionalEmbedding", "SinusoidalPositionalEmbedding",
           "RotaryEmbedding", "rotate_half", "alibi_slopes", "alibi_bias", "ALiBi",
           "relative_position_bucket", "T5RelativePositionBias"]


def _const(array):
    """A constant tensor on the default backend from a NumPy table."""
    return constant(B.asarray(array))


def sinusoidal_embedding(length, dim, offset=0, base=10000.0, dtype=None):
    """``(length, dim)``: ``sin(p / base^(2i/dim))`` on even channels, ``cos`` on odd ones,
    for positions ``p = offset … offset + length − 1``."""
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding: dim must be even, got {dim}")
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    pos = np.arange(offset, offset + length, dtype=np.float64)[:, None]
    inv = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    pe = np.zeros((length, dim))
    pe[:, 0::2] = np.sin(pos * inv)
    pe[:, 1::2] = np.cos(pos * inv)
    return _const(pe.astype(d))


def _check_seq(x, dim, what):
    x = floating(to_tensor(x, what))
    if x.ndim < 2 or x.shape[-1] != dim:
        raise ValueError(f"{what}: expected (..., length, {dim}), got shape {x.shape}")
    return x


class LearnedPositionalEmbedding(Module):
    """A trained vector per position (``max_len`` of them); ``pe(x, offset=0)`` returns
    ``x + E[offset : offset + L]`` for ``x (..., L, dim)``."""

    def __init__(self, max_len, dim, std=0.02, generator=None):
        super().__init__()
        self.max_len, self.dim = max_len, dim
        self.weight = Parameter(np.zeros((max_len, dim), dtypes.get_default_dtype()))
        init.normal_(self.weight, 0.0, std, generator)

    def forward(self, x, offset=0):
        x = _check_seq(x, self.dim, "LearnedPositionalEmbedding")
        L = x.shape[-2]
        if offset + L > self.max_len:
            raise ValueError(f"LearnedPositionalEmbedding: positions up to {offset + L} exceed "
                             f"max_len={self.max_len}")
        return x + self.weight[offset:offset + L]


class SinusoidalPositionalEmbedding(Module):
    """Fixed sinusoids added to ``x (..., L, dim)``: ``pe(x, offset=0)``."""

    def __init__(self, dim, base=10000.0):
        super().__init__()
        self.dim, self.base = dim, base

    def forward(self, x, offset=0):
        x = _check_seq(x, self.dim, "SinusoidalPositionalEmbedding")
        return x + sinusoidal_embedding(x.shape[-2], self.dim, offset, self.base, x.dtype)


def rotate_half(x):
    """``[x1, x2] → [−x2, x1]`` on the halves of the last axis."""
    h = x.shape[-1] // 2
    return ops.concatenate([-x[..., h:], x[..., :h]], axis=-1)


class RotaryEmbedding(Module):
    """Rotary position embedding (RoPE), rotate-half convention.

    ``rope(x, offset=0)`` on ``x (..., L, dim)`` rotates position ``offset + i`` by
    ``x·cos(θ) + rotate_half(x)·sin(θ)``, with ``θ = p · base^(−2j/dim)`` repeated over
    the two halves. Applied to queries and keys, ``⟨rope(q)_i, rope(k)_j⟩`` depends on
    ``i − j`` only. No parameters.
    """

    def __init__(self, dim, base=10000.0):
        super().__init__()
        if dim % 2 or dim <= 0:
            raise ValueError(f"RotaryEmbedding: dim must be even and positive, got {dim}")
        self.dim, self.base = dim, float(base)
        self._cache = {}

    def tables(self, length, offset, dtype):
        key = (length, offset, np.dtype(dtype).str)
        t = self._cache.get(key)
        if t is None:
            inv = self.base ** (-np.arange(0, self.dim, 2, dtype=np.float64) / self.dim)
            ang = np.arange(offset, offset + length, dtype=np.float64)[:, None] * inv
            ang = np.concatenate([ang, ang], axis=-1)
            t = (_const(np.cos(ang).astype(dtype)), _const(np.sin(ang).astype(dtype)))
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = t
        return t

    def forward(self, x, offset=0):
        x = _check_seq(x, self.dim, "RotaryEmbedding")
        cos, sin = self.tables(x.shape[-2], int(offset), x.dtype)
        return x * cos + rotate_half(x) * sin

    def extra_repr(self):
        return f"dim={self.dim}, base={self.base}"


# ----------------------------------------------------------------------------- ALiBi
def alibi_slopes(num_heads):
    """ALiBi's head slopes: the geometric sequence ``2^(−8/n · h)``, h = 1 … n, for n a
    power of two (other counts interleave the next power's slopes, as in the paper)."""
    def power_of_two(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return np.array(power_of_two(num_heads))
    closest = 2 ** math.floor(math.log2(num_heads))
    extra = power_of_two(2 * closest)[0::2][:num_heads - closest]
    return np.array(power_of_two(closest) + extra)


def alibi_bias(num_heads, L, S=None, offset=None, causal=True, dtype=None):
    """``(num_heads, L, S)`` bias ``−slope_h · |i + offset − j|`` (query ``i`` at position
    ``offset + i``; by default the last query lines up with the last key). With
    ``causal`` only the past is penalised (the future is masked anyway)."""
    S = L if S is None else S
    offset = S - L if offset is None else offset
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    dist = (np.arange(L)[:, None] + offset) - np.arange(S)[None, :]
    dist = np.maximum(dist, 0) if causal else np.abs(dist)
    bias = -alibi_slopes(num_heads)[:, None, None] * dist
    return _const(bias.astype(d))


class ALiBi(Module):
    """Attention with linear biases: ``alibi(L, S=None, offset=None)`` gives the
    ``(num_heads, L, S)`` bias to pass as ``position_bias``."""

    def __init__(self, num_heads, causal=True):
        super().__init__()
        self.num_heads, self.causal = num_heads, causal

    def forward(self, L, S=None, offset=None, dtype=None):
        return alibi_bias(self.num_heads, L, S, offset, self.causal, dtype)


# ----------------------------------------------------------------------------- T5 buckets
def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32,
                             max_distance=128):
    """T5's bucket of each offset ``key − query``: exact buckets for small offsets,
    logarithmically wider ones up to ``max_distance`` (integers in, integers out)."""
    rel = np.asarray(relative_position)
    ret = np.zeros(rel.shape, dtype=np.int64)
    n = num_buckets
    if bidirectional:
        n //= 2
        ret += (rel > 0).astype(np.int64) * n
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    max_exact = n // 2
    small = rel < max_exact
    with np.errstate(divide="ignore"):
        large = max_exact + (np.log(np.maximum(rel, 1) / max_exact) / math.log(max_distance / max_exact)
                             * (n - max_exact)).astype(np.int64)
    large = np.minimum(large, n - 1)
    return ret + np.where(small, rel, large)


class T5RelativePositionBias(Module):
    """A learned scalar per (bucket, head): ``bias(L, S=None, offset=None)`` returns
    ``(num_heads, L, S)`` for the scores; its gradient trains the table."""

    def __init__(self, num_heads, num_buckets=32, max_distance=128, bidirectional=True,
                 generator=None):
        super().__init__()
        self.num_heads, self.num_buckets = num_heads, num_buckets
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.relative_attention_bias = Embedding(num_buckets, num_heads, generator=generator)
        init.normal_(self.relative_attention_bias.weight, 0.0, 0.02, generator)

    def forward(self, L, S=None, offset=None):
        S = L if S is None else S
        offset = S - L if offset is None else offset
        rel = np.arange(S)[None, :] - (np.arange(L)[:, None] + offset)
        buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets,
                                           self.max_distance)
        values = self.relative_attention_bias(buckets)          # (L, S, heads)
        return values.transpose(2, 0, 1)
