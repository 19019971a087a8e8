"""Vision transformers and their relatives (chapter 11): ``ViT`` (patch tokens, a class
token and optional register tokens, learned positions, a pre-norm encoder), ``MLPMixer``
(token-mixing and channel-mixing MLPs) and ``MetaFormer`` (the same block with any token
mixer: attention, pooling as in PoolFormer, the Fourier transform as in FNet). Images
are channels-last ``(b, h, w, c)``.
"""

from __future__ import annotations

from ..nn import (GELU, AttentionMixer, ClassToken, FourierMixer, LayerNorm,
                  LearnedPositionalEmbedding, Linear, MetaFormerBlock, MLPMixerBlock, Module,
                  ModuleList, PatchEmbed, PoolingMixer, ReLU, TransformerEncoderLayer)
from .pretrained import load_vit, save_vit

# the MLP's nonlinearity by name: exact GELU (ViT's), its tanh form, ReLU
_ACTIVATIONS = {"gelu": GELU, "gelu_tanh": lambda: GELU(approximate="tanh"), "relu": ReLU}


class ViT(Module):
    """``ViT(image_size, patch_size, in_chans, num_classes, dim, depth, heads,
    mlp_ratio=4, num_registers=0, dropout=0.0)``: classifies from the class token.

    Keywords: ``mlp_dim`` (the MLP width, default ``mlp_ratio · dim``), ``layer_norm_eps``
    (every layer norm's epsilon), ``qkv_bias`` (biases of the query, key and value
    projections), ``activation`` (``"gelu"``, ``"gelu_tanh"`` or ``"relu"``).
    ``ViT.from_pretrained(folder)`` / ``save_pretrained(folder)`` read and write Hugging
    Face's ``ViTForImageClassification`` folders."""

    def __init__(self, image_size, patch_size, in_chans, num_classes, dim=64, depth=4, heads=4,
                 mlp_ratio=4, num_registers=0, dropout=0.0, generator=None, *, mlp_dim=None,
                 layer_norm_eps=1e-5, qkv_bias=True, activation="gelu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"ViT: activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{activation!r}")
        self.num_classes, self.dim, self.depth, self.heads = num_classes, dim, depth, heads
        self.mlp_dim = mlp_ratio * dim if mlp_dim is None else mlp_dim
        self.layer_norm_eps, self.qkv_bias, self.activation = layer_norm_eps, qkv_bias, activation
        self.dropout = dropout
        self.patch = PatchEmbed(image_size, patch_size, in_chans, dim, generator=generator)
        self.tokens = ClassToken(dim, num_registers, generator=generator)
        self.pos = LearnedPositionalEmbedding(self.patch.num_patches + self.tokens.num_tokens, dim,
                                              generator=generator)
        self.blocks = ModuleList([TransformerEncoderLayer(dim, heads, self.mlp_dim, dropout,
                                                          _ACTIVATIONS[activation](),
                                                          layer_norm_eps=layer_norm_eps,
                                                          norm_first=True, generator=generator)
                                  for _ in range(depth)])
        if not qkv_bias:
            for blk in self.blocks:
                for proj in (blk.self_attn.q_proj, blk.self_attn.k_proj, blk.self_attn.v_proj):
                    proj.register_parameter("bias", None)
        self.norm = LayerNorm(dim, eps=layer_norm_eps)
        self.head = Linear(dim, num_classes, generator=generator)

    def features(self, images):
        x = self.pos(self.tokens(self.patch(images)))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, images):
        return self.head(self.features(images)[:, 0])

    @classmethod
    def from_pretrained(cls, path):
        """A ViT from a Hugging Face ``ViTForImageClassification`` folder, in eval mode
        (see :mod:`wonderland.models.pretrained`); it takes channels-last images."""
        return load_vit(cls, path)

    def save_pretrained(self, path, max_shard_size=None):
        """Write this model as a ``ViTForImageClassification`` folder (atomically)."""
        save_vit(self, path, max_shard_size)


class MLPMixer(Module):
    """``MLPMixer(image_size, patch_size, in_chans, num_classes, dim, depth,
    token_hidden, channel_hidden)``: patches, mixer blocks, mean over tokens, a head."""

    def __init__(self, image_size, patch_size, in_chans, num_classes, dim=64, depth=4,
                 token_hidden=32, channel_hidden=128, dropout=0.0, generator=None):
        super().__init__()
        self.patch = PatchEmbed(image_size, patch_size, in_chans, dim, generator=generator)
        n = self.patch.num_patches
        self.blocks = ModuleList([MLPMixerBlock(n, dim, token_hidden, channel_hidden, dropout)
                                  for _ in range(depth)])
        self.norm = LayerNorm(dim)
        self.head = Linear(dim, num_classes, generator=generator)

    def forward(self, images):
        x = self.patch(images)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(1))


class MetaFormer(Module):
    """A MetaFormer classifier with a chosen token mixer: ``mixer="attention"``,
    ``"pooling"`` (PoolFormer) or ``"fourier"`` (FNet)."""

    def __init__(self, image_size, patch_size, in_chans, num_classes, dim=64, depth=4,
                 mixer="pooling", heads=4, mlp_ratio=4, dropout=0.0, generator=None):
        super().__init__()
        self.patch = PatchEmbed(image_size, patch_size, in_chans, dim, generator=generator)
        self.pos = LearnedPositionalEmbedding(self.patch.num_patches, dim, generator=generator)

        def make():
            if mixer == "attention":
                return AttentionMixer(dim, heads, dropout)
            if mixer == "pooling":
                return PoolingMixer(self.patch.grid)
            if mixer == "fourier":
                return FourierMixer()
            raise ValueError(f"MetaFormer: mixer must be 'attention', 'pooling' or 'fourier', "
                             f"got {mixer!r}")

        self.blocks = ModuleList([MetaFormerBlock(dim, make(), mlp_ratio, dropout)
                                  for _ in range(depth)])
        self.norm = LayerNorm(dim)
        self.head = Linear(dim, num_classes, generator=generator)

    def forward(self, images):
        x = self.pos(self.patch(images))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(1))
