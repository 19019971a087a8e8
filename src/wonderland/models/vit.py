"""Vision transformers and their relatives (chapter 11): ``ViT`` (patch tokens, a class
token and optional register tokens, learned positions, a pre-norm encoder), ``MLPMixer``
(token-mixing and channel-mixing MLPs) and ``MetaFormer`` (the same block with any token
mixer: attention, pooling as in PoolFormer, the Fourier transform as in FNet). Images
are channels-last ``(b, h, w, c)``.
"""

from __future__ import annotations

from ..nn import (AttentionMixer, ClassToken, FourierMixer, LayerNorm, LearnedPositionalEmbedding,
                  Linear, MetaFormerBlock, MLPMixerBlock, Module, ModuleList, PatchEmbed,
                  PoolingMixer, TransformerEncoderLayer)


class ViT(Module):
    """``ViT(image_size, patch_size, in_chans, num_classes, dim, depth, heads,
    mlp_ratio=4, num_registers=0, dropout=0.0)``: classifies from the class token."""

    def __init__(self, image_size, patch_size, in_chans, num_classes, dim=64, depth=4, heads=4,
                 mlp_ratio=4, num_registers=0, dropout=0.0, generator=None):
        super().__init__()
        self.patch = PatchEmbed(image_size, patch_size, in_chans, dim, generator=generator)
        self.tokens = ClassToken(dim, num_registers, generator=generator)
        self.pos = LearnedPositionalEmbedding(self.patch.num_patches + self.tokens.num_tokens, dim,
                                              generator=generator)
        self.blocks = ModuleList([TransformerEncoderLayer(dim, heads, mlp_ratio * dim, dropout,
                                                          "gelu", norm_first=True,
                                                          generator=generator)
                                  for _ in range(depth)])
        self.norm = LayerNorm(dim)
        self.head = Linear(dim, num_classes, generator=generator)

    def features(self, images):
        x = self.pos(self.tokens(self.patch(images)))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, images):
        return self.head(self.features(images)[:, 0])


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
