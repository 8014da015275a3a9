"""The Vision Transformer (Dosovitskiy et al. 2020), configurable to every published variant and to the blog.

    image [B, C, H, W]
      -> patch_embed      [B, N, D]       N = (H / patch) * (W / patch)
      -> cls_token        [B, N + 1, D]   (if class_token)
      -> pos_embed        same shape      (the blog adds it *before* cls_token, to the patches only)
      -> blocks           same shape      depth x (attention + MLP)
      -> norm, pool       [B, D]          [CLS] token or mean of patch tokens
      -> head             [B, num_classes]
"""

from __future__ import annotations

import torch
from torch import nn

from .base import TransformerModel, block_stack
from .config import ViTConfig
from .layers import (Attention, Block, ClassToken, ConvStem, PatchEmbed, PositionEmbedding, init_weights,
                     readout_queries, sincos_2d)
from .seed import BatchAxisAttention


class Pool(nn.Module):
    """Reduce the token sequence to one vector: the [CLS] token, or the mean of the patch tokens."""

    def __init__(self, mode: str, num_prefix_tokens: int) -> None:
        super().__init__()
        self.mode = mode
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.mode == "cls":
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens :].mean(dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

    def stage_label(self) -> str:
        return "pool ([CLS] token)" if self.mode == "cls" else "pool (mean of patches)"


class VisionTransformer(TransformerModel):
    """A ViT built from a :class:`ViTConfig`. ``forward(images)`` returns logits, or features if
    ``num_classes == 0``."""

    input_name = "images"

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.num_prefix_tokens = int(c.class_token)
        self.patch_embed = (ConvStem if c.stem == "conv" else PatchEmbed)(c.patch_size, c.in_channels, c.dim)
        self.cls_token = ClassToken(c.dim) if c.class_token else None
        self.pos_embed = self._make_pos_embed(c)
        self.pos_drop = nn.Dropout(c.dropout)
        attention = BatchAxisAttention if c.attention_axis == "batch" else Attention
        self.blocks = block_stack(lambda rate: Block(
            c.dim, c.heads, c.hidden_dim, qkv_bias=c.qkv_bias, dropout=c.dropout, attn_dropout=c.attn_dropout,
            drop_path=rate, pre_norm=c.norm == "pre", norm_eps=c.norm_eps, attention=attention,
        ), c.depth, c.drop_path)
        # Post-norm blocks already end with a LayerNorm, so only pre-norm models have a final one.
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps) if c.norm == "pre" else nn.Identity()
        self.pool = Pool(c.pool, self.num_prefix_tokens)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(init_weights)

    def block_stacks(self) -> list[nn.Sequential]:
        return [self.blocks]

    @staticmethod
    def _make_pos_embed(c: ViTConfig) -> PositionEmbedding | None:
        if c.pos_embed == "none":
            return None
        if c.pos_embed == "sincos2d":
            return PositionEmbedding(c.num_patches, c.dim, fixed=sincos_2d(c.grid_size, c.dim))
        with_cls = c.pos_embed == "learned" and c.class_token
        return PositionEmbedding(c.num_patches + int(with_cls), c.dim)

    @property
    def embed_order(self) -> tuple[str, ...]:
        """The order in which the [CLS] token and the position embedding are applied after patch embedding."""
        pos_covers_cls = self.config.pos_embed == "learned" and self.cls_token is not None
        order = ("cls_token", "pos_embed") if pos_covers_cls else ("pos_embed", "cls_token")
        return tuple(name for name in order if getattr(self, name) is not None)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder output tokens, [B, prefix + N, D]."""
        return self._encode(images, queries=None)

    def _encode(self, images: torch.Tensor, queries: int | None) -> torch.Tensor:
        self.check_input(images)
        x = self.patch_embed(images)
        for name in self.embed_order:
            x = getattr(self, name)(x)
        x = self.run_stack(self.blocks, self.pos_drop(x), queries)
        return self.norm(x) if self.config.pool == "cls" else x

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool the encoder tokens and classify: [B, prefix + N, D] -> [B, num_classes]."""
        x = self.pool(tokens)
        if self.config.pool == "mean":
            x = self.norm(x)
        return self.head(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        queries = readout_queries(self.blocks, self.num_prefix_tokens, self.config.pool) if self.prune_readout else None
        return self.forward_head(self._encode(images, queries))

