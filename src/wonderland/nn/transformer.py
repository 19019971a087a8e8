"""Transformer blocks (chapters 10–11) with PyTorch's constructor arguments, submodule
names and outputs: ``TransformerEncoderLayer``, ``TransformerDecoderLayer``,
``TransformerEncoder``, ``TransformerDecoder``, ``Transformer``; plus the pieces of
vision and mixer models: class and register tokens, ``PatchEmbed`` (channels last),
``MLPMixerBlock`` and ``MetaFormerBlock`` with pluggable token mixers (attention,
pooling as in PoolFormer, the Fourier transform as in FNet), and a wav2vec-style
convolutional feature encoder for raw audio.

Post-norm (``norm_first=False``, the original): ``x = norm(x + block(x))``; pre-norm:
``x = x + block(norm(x))``. Masks follow ``MultiheadAttention``: boolean **True means
ignore**, float masks are added.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .. import fft, ops
from ..core import dtypes
from ..ops.arguments import floating, to_tensor
from . import functional as F
from . import init
from .attention import MultiheadAttention
from .containers import ModuleList, Sequential
from .conv import AvgPool2d, Conv1d
from .layers import GELU, Dropout, Linear, activation as _activation_module
from .module import Module, Parameter
from .normalization import GroupNorm, LayerNorm

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerDecoder", "Transformer", "generate_square_subsequent_mask",
           "ClassToken", "PatchEmbed", "MLPMixerBlock", "MetaFormerBlock", "AttentionMixer",
           "PoolingMixer", "FourierMixer", "ConvFeatureEncoder"]


def _activation(act):
    if isinstance(act, str):
        if act not in ("relu", "gelu"):
            raise ValueError(f"activation should be relu/gelu, not {act}")
        return _activation_module(act)
    if isinstance(act, Module):
        return act
    if callable(act):
        class _Fn(Module):
            def forward(self, x):
                return act(x)
        return _Fn()
    raise TypeError(f"activation must be 'relu', 'gelu' or a callable, got {act!r}")


def _activated(act, linear, x):
    """``act(linear(x))``; the exact GELU goes into the product's epilogue (one fused
    node, ``F.linear(..., activation="gelu")``)."""
    if type(act) is GELU and act.approximate == "none" and linear.bias is not None:
        return F.linear(x, linear.weight, linear.bias, activation="gelu")
    return act(linear(x))


def generate_square_subsequent_mask(sz, dtype=None):
    """PyTorch's causal float mask: ``-inf`` above the diagonal, 0 elsewhere, ``(sz, sz)``."""
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    return ops.where(ops.arange(sz).reshape(-1, 1) >= ops.arange(sz).reshape(1, -1),
                     0.0, -np.inf).astype(d)


# ----------------------------------------------------------------------------- layers
class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward network, each with a residual connection and
    layer norm (PyTorch's ``nn.TransformerEncoderLayer``; ``batch_first=True`` by
    default here). ``forward(src, src_mask=None, src_key_padding_mask=None,
    is_causal=False)``."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True,
                 generator=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, generator=generator)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, generator=generator)
        self.dropout = Dropout(dropout, generator)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, generator=generator)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout, generator)
        self.dropout2 = Dropout(dropout, generator)
        self.activation = _activation(activation)
        self.batch_first = batch_first

    def _sa(self, x, mask, kpm, is_causal):
        return self.dropout1(self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=kpm,
                                            need_weights=False, is_causal=is_causal)[0])

    def _ff(self, x):
        h = _activated(self.activation, self.linear1, x)
        return self.dropout2(self.linear2(self.dropout(h)))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = floating(to_tensor(src, "TransformerEncoderLayer"))
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff(x))


class TransformerDecoderLayer(Module):
    """Masked self-attention, cross-attention to the encoder's ``memory``, and a
    feed-forward network (PyTorch's ``nn.TransformerDecoderLayer``).
    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True,
                 generator=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, generator=generator)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, generator=generator)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, generator=generator)
        self.dropout = Dropout(dropout, generator)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, generator=generator)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout, generator)
        self.dropout2 = Dropout(dropout, generator)
        self.dropout3 = Dropout(dropout, generator)
        self.activation = _activation(activation)
        self.batch_first = batch_first

    def _sa(self, x, mask, kpm, is_causal, cache=None):
        return self.dropout1(self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=kpm,
                                            need_weights=False, is_causal=is_causal,
                                            cache=cache)[0])

    def _mha(self, x, mem, mask, kpm, is_causal):
        return self.dropout2(self.multihead_attn(x, mem, mem, attn_mask=mask, key_padding_mask=kpm,
                                                 need_weights=False, is_causal=is_causal)[0])

    def _ff(self, x):
        h = _activated(self.activation, self.linear1, x)
        return self.dropout3(self.linear2(self.dropout(h)))

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False,
                *, cache=None):
        """``cache``: a :class:`KVCache` for the self-attention when decoding one step
        at a time (then ``tgt`` holds only the new positions and ``tgt_is_causal`` is
        implied)."""
        x = floating(to_tensor(tgt, "TransformerDecoderLayer"))
        causal = tgt_is_causal or cache is not None
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask, tgt_key_padding_mask, causal, cache)
            x = x + self._mha(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                              memory_is_causal)
            return x + self._ff(self.norm3(x))
        x = self.norm1(x + self._sa(x, tgt_mask, tgt_key_padding_mask, causal, cache))
        x = self.norm2(x + self._mha(x, memory, memory_mask, memory_key_padding_mask,
                                     memory_is_causal))
        return self.norm3(x + self._ff(x))


def _clones(layer, n):
    return ModuleList([copy.deepcopy(layer) for _ in range(n)])


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (as PyTorch, deep copies: they start
    with equal weights) and an optional final ``norm``."""

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True,
                 mask_check=True):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                      is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer`` and an optional final ``norm``."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False,
                *, caches=None):
        """``caches``: one :class:`KVCache` per layer for incremental decoding."""
        x = tgt
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal,
                      cache=None if caches is None else caches[i])
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """The encoder–decoder transformer with PyTorch's arguments (``nn.Transformer``):
    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=None, tgt_is_causal=None, memory_is_causal=False)``. Weight matrices
    are re-initialised Xavier-uniform, as PyTorch does."""

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1, activation="relu", custom_encoder=None,
                 custom_decoder=None, layer_norm_eps=1e-5, batch_first=True, norm_first=False,
                 bias=True, generator=None):
        super().__init__()
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation,
                                            layer_norm_eps, batch_first, norm_first, bias, generator)
            self.encoder = TransformerEncoder(layer, num_encoder_layers,
                                              LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation,
                                            layer_norm_eps, batch_first, norm_first, bias, generator)
            self.decoder = TransformerDecoder(layer, num_decoder_layers,
                                              LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        for p in self.parameters():
            if p.ndim > 1:
                bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                init.uniform_(p, -bound, bound, generator)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        src_t, tgt_t = to_tensor(src, "Transformer"), to_tensor(tgt, "Transformer")
        bd = 0 if self.batch_first else 1
        if src_t.ndim == 3 and src_t.shape[bd] != tgt_t.shape[bd]:
            raise RuntimeError(f"Transformer: the batch number of src ({src_t.shape[bd]}) and tgt "
                               f"({tgt_t.shape[bd]}) must be equal")
        if src_t.shape[-1] != self.d_model or tgt_t.shape[-1] != self.d_model:
            raise RuntimeError(f"Transformer: the feature number of src and tgt must be equal to "
                               f"d_model={self.d_model}, got {src_t.shape} and {tgt_t.shape}")
        memory = self.encoder(src_t, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt_t, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)


# ----------------------------------------------------------------------------- tokens
class ClassToken(Module):
    """Prepends ``1 + num_registers`` learned tokens to ``x (b, t, d)``: a class token
    (read out for classification) and register tokens (extra scratch space that
    attention may use, discarded at the output; Darcet et al. 2024)."""

    def __init__(self, dim, num_registers=0, generator=None):
        super().__init__()
        self.dim, self.num_registers = dim, num_registers
        self.cls_token = Parameter(np.zeros((1, 1, dim), dtypes.get_default_dtype()))
        init.normal_(self.cls_token, 0.0, 0.02, generator)
        if num_registers:
            self.registers = Parameter(np.zeros((1, num_registers, dim), dtypes.get_default_dtype()))
            init.normal_(self.registers, 0.0, 0.02, generator)
        else:
            self.register_parameter("registers", None)

    @property
    def num_tokens(self):
        return 1 + self.num_registers

    def forward(self, x):
        b = x.shape[0]
        parts = [self.cls_token.broadcast_to((b, 1, self.dim))]
        if self.registers is not None:
            parts.append(self.registers.broadcast_to((b, self.num_registers, self.dim)))
        return ops.concatenate(parts + [x], axis=1)


class PatchEmbed(Module):
    """Image ``(b, h, w, c)`` → patch tokens ``(b, (h/p)·(w/p), dim)``: each non-overlapping
    ``p × p`` patch flattened and linearly projected (a strided convolution)."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, generator=None):
        super().__init__()
        img = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if img[0] % patch_size or img[1] % patch_size:
            raise ValueError(f"PatchEmbed: image size {img} is not a multiple of the patch "
                             f"size {patch_size}")
        self.img_size, self.patch_size = img, patch_size
        self.grid = (img[0] // patch_size, img[1] // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.in_chans, self.embed_dim = in_chans, embed_dim
        self.proj = Linear(patch_size * patch_size * in_chans, embed_dim, generator=generator)

    def forward(self, x):
        x = floating(to_tensor(x, "PatchEmbed"))
        if x.ndim != 4 or x.shape[1:] != self.img_size + (self.in_chans,):
            raise ValueError(f"PatchEmbed: expected images (b, {self.img_size[0]}, "
                             f"{self.img_size[1]}, {self.in_chans}) (channels last), got {x.shape}")
        b, p = x.shape[0], self.patch_size
        gh, gw = self.grid
        x = x.reshape(b, gh, p, gw, p, self.in_chans).transpose(0, 1, 3, 2, 4, 5)
        return self.proj(x.reshape(b, gh * gw, p * p * self.in_chans))


# ----------------------------------------------------------------------------- mixers
class MLPMixerBlock(Module):
    """MLP-Mixer block (Tolstikhin et al. 2021): a token-mixing MLP across the ``t``
    tokens (shared over channels), then a channel-mixing MLP, each pre-norm with a
    residual connection."""

    def __init__(self, num_tokens, dim, token_hidden, channel_hidden, dropout=0.0):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.token_mlp = Sequential(Linear(num_tokens, token_hidden), GELU(), Dropout(dropout),
                                    Linear(token_hidden, num_tokens))
        self.norm2 = LayerNorm(dim)
        self.channel_mlp = Sequential(Linear(dim, channel_hidden), GELU(), Dropout(dropout),
                                      Linear(channel_hidden, dim))

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).swapaxes(1, 2)).swapaxes(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class AttentionMixer(Module):
    """Self-attention as a MetaFormer token mixer."""

    def __init__(self, dim, num_heads=4, dropout=0.0):
        super().__init__()
        self.attn = MultiheadAttention(dim, num_heads, dropout=dropout)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class PoolingMixer(Module):
    """PoolFormer's mixer: average pooling over a ``k × k`` neighbourhood of the token
    grid minus the token itself (``pool(x) − x``). Tokens are ``(b, h·w, d)``."""

    def __init__(self, grid, pool_size=3):
        super().__init__()
        self.grid = tuple(grid)
        self.pool = AvgPool2d(pool_size, stride=1, padding=pool_size // 2,
                              count_include_pad=False)

    def forward(self, x):
        b, t, d = x.shape
        img = x.reshape(b, self.grid[0], self.grid[1], d)
        return self.pool(img).reshape(b, t, d) - x


class FourierMixer(Module):
    """FNet's mixer: the real part of the 2-D Fourier transform over (tokens, channels)."""

    def forward(self, x):
        re, _ = fft.fft2(x, axes=(-2, -1))
        return re


class MetaFormerBlock(Module):
    """MetaFormer (Yu et al. 2022): ``x + mixer(norm(x))`` then ``x + mlp(norm(x))``; the
    token mixer is any module on ``(b, t, d)`` (attention, pooling, Fourier …)."""

    def __init__(self, dim, token_mixer, mlp_ratio=4, dropout=0.0):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.token_mixer = token_mixer
        self.norm2 = LayerNorm(dim)
        self.mlp = Sequential(Linear(dim, mlp_ratio * dim), GELU(), Dropout(dropout),
                              Linear(mlp_ratio * dim, dim))

    def forward(self, x):
        x = x + self.token_mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# ----------------------------------------------------------------------------- audio
class ConvFeatureEncoder(Module):
    """wav2vec 2.0's feature encoder: strided 1-D convolutions turn raw audio
    ``(b, samples)`` or ``(b, samples, 1)`` into a much shorter sequence of feature
    vectors ``(b, frames, channels)`` — the audio tokeniser. GELU after each layer, group
    norm after the first (as wav2vec 2.0's base model). ``layers`` lists
    ``(channels, kernel, stride)``."""

    def __init__(self, layers=((64, 10, 5), (64, 3, 2), (64, 3, 2), (64, 3, 2), (64, 2, 2)),
                 in_channels=1):
        super().__init__()
        convs, c = [], in_channels
        for ch, k, s in layers:
            convs.append(Conv1d(c, ch, k, stride=s, bias=False))
            c = ch
        self.convs = ModuleList(convs)
        self.norm = GroupNorm(layers[0][0], layers[0][0])
        self.layers = tuple(tuple(x) for x in layers)
        self.out_channels = c

    def output_length(self, n):
        for _, k, s in self.layers:
            n = (n - k) // s + 1
        return n

    def forward(self, x):
        x = floating(to_tensor(x, "ConvFeatureEncoder"))
        if x.ndim == 2:
            x = x.expand_dims(-1)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i == 0:
                x = self.norm(x)
            x = F.gelu(x)
        return x

