"""The Vision Transformer (Dosovitskiy et al. 2020), configurable to every published variant and to the blog.

    image [B, C, H, W]
      -> patch_embed      [B, N, D]       N = (H / patch) * (W / patch)
      -> reg_token        [B, R + N, D]   (if reg_tokens: R registers)
      -> cls_token        [B, 1 + R + N, D] (if class_token; DeiT's distillation token after it if distilled)
      -> pos_embed        same shape      (the blog, DeiT-3 and DINOv2 add it *before* the prefix tokens, to
                                          the patches only; any input size with dynamic_img_size)
      -> patch_drop       [B, prefix + K, D] (training with patch_dropout: a random K of the N patches)
      -> norm_pre         same shape      (if norm_pre: CLIP's LayerNorm before the blocks)
      -> blocks           same shape      depth x (attention + MLP); EVA-02: RoPE on the patches' queries and
                                          keys, SwiGLU MLP (eva.py, rope.py)
      -> norm, pool       [B, D]          [CLS] token, mean of patch tokens or attention pooling (heads.py);
                                          the norm after pooling with fc_norm
      -> head             [B, num_classes] (distilled: the mean of head([CLS]) and head_dist(distillation token))
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .base import TransformerModel, block_stack
from .config import ViTConfig
from .eva import SwiGLU, eva_attention
from .heads import Pool, norm_after_pool
from .layers import (Attention, Block, ClassToken, ConvStem, PatchEmbed, PositionEmbedding, init_weights,
                     readout_queries, sincos_2d)
from .rope import RotaryEmbedding2d
from .patch_dropout import PatchDropout
from .seed import BatchAxisAttention


class VisionTransformer(TransformerModel):
    """A ViT built from a :class:`ViTConfig`. ``forward(images)`` returns logits, or features if
    ``num_classes == 0``; :meth:`forward_intermediates` returns the patch-token maps of chosen blocks."""

    input_name = "images"

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.num_prefix_tokens = int(c.class_token) + int(c.distilled) + c.reg_tokens
        """Tokens before the patches: [CLS], then the distillation token or the registers."""
        if c.stem == "conv":
            self.patch_embed: nn.Module = ConvStem(c.patch_size, c.in_channels, c.dim)
        else:  # CLIP's patch embedding, followed by norm_pre, has no bias
            self.patch_embed = PatchEmbed(c.patch_size, c.in_channels, c.dim, bias=not c.norm_pre)
        self.cls_token = ClassToken(c.dim) if c.class_token else None
        self.dist_token = ClassToken(c.dim, 1, "distillation token") if c.distilled else None
        self.reg_token = ClassToken(c.dim, c.reg_tokens, "register tokens") if c.reg_tokens else None
        self.pos_embed = self._make_pos_embed(c)
        self.pos_drop = nn.Dropout(c.dropout)
        self.patch_drop = PatchDropout(c.patch_dropout, self.num_prefix_tokens) if c.patch_dropout else None
        self.norm_pre = nn.LayerNorm(c.dim, eps=c.norm_eps) if c.norm_pre else None
        self.rope = RotaryEmbedding2d(c.dim // c.heads, c.grid_size, c.rope_grid, self.num_prefix_tokens) \
            if c.rope else None
        attention = self._attention_class(c)
        self.blocks = block_stack(lambda rate: Block(
            c.dim, c.heads, c.hidden_dim, qkv_bias=c.qkv_bias, dropout=c.dropout, attn_dropout=c.attn_dropout,
            drop_path=rate, pre_norm=c.norm == "pre", norm_eps=c.norm_eps, attention=attention,
            init_values=c.init_values, qk_norm=c.qk_norm, act=c.act,
            mlp=SwiGLU(c.dim, c.hidden_dim, c.dropout, c.mlp_norm, c.norm_eps) if c.swiglu else None,
        ), c.depth, c.drop_path)
        # Post-norm blocks already end with a LayerNorm, so only pre-norm models have a final one.
        final_norm = c.norm == "pre" and c.final_norm
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps) if final_norm else nn.Identity()
        self.norm_after_pool = norm_after_pool(c)
        self.pool = Pool(c.pool, self.num_prefix_tokens, c.dim, c.heads, c.hidden_dim, c.norm_eps, c.act)
        self.head = nn.Linear(c.pooled_dim, c.num_classes) if c.num_classes else nn.Identity()
        self.head_dist = self._make_head() if c.distilled else None
        self.apply(init_weights)

    def block_stacks(self) -> list[nn.Sequential]:
        return [self.blocks]

    def _attention_class(self, c: ViTConfig) -> Callable[..., Attention]:
        """The blocks' attention: the blog's across the batch, EVA's (RoPE, no key bias) or the plain one."""
        if c.attention_axis == "batch":
            return BatchAxisAttention
        return eva_attention(self.rope, key_bias=c.key_bias or not c.qkv_bias)

    def _make_head(self) -> nn.Module:
        return nn.Linear(self.config.dim, self.config.num_classes) if self.config.num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head (and distillation head) for ``num_classes`` (0: no head)."""
        super().reset_classifier(num_classes)
        if self.head_dist is not None:
            self.head_dist = self._make_head().to(next(self.parameters()).device)
            self.head_dist.apply(init_weights)

    @staticmethod
    def _make_pos_embed(c: ViTConfig) -> PositionEmbedding | None:
        if c.pos_embed == "none":
            return None
        if c.pos_embed.startswith("sincos2d"):
            jax = c.pos_embed == "sincos2d_jax"
            table = sincos_2d(c.grid_size, c.dim, endpoint=jax)
            return PositionEmbedding(c.num_patches, c.dim, fixed=table, grid=c.grid_size, endpoint=jax)
        prefix = pos_embed_prefix(c)
        return PositionEmbedding(c.num_patches + prefix, c.dim, grid=c.grid_size, prefix_tokens=prefix,
                                 antialias=c.pos_embed_antialias)

    @property
    def embed_order(self) -> tuple[str, ...]:
        """The order in which the prefix tokens (registers, then [CLS] in front of them) and the position
        embedding are applied after patch embedding."""
        if pos_embed_prefix(self.config):
            order = ("reg_token", "dist_token", "cls_token", "pos_embed")
        else:
            order = ("pos_embed", "reg_token", "dist_token", "cls_token")
        return tuple(name for name in order if getattr(self, name) is not None)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder output tokens, [B, prefix + N, D]."""
        return self._final_norm(self.run_stack(self.blocks, self._embed(images)))

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the tokens the first block reads, [B, prefix + N, D]."""
        self.check_input(images)
        grid = self.token_grid(images) if self.config.dynamic_img_size else None
        if self.rope is not None:
            self.rope.use_grid(grid or self.config.grid_size)
        x = self.patch_embed(images)
        for name in self.embed_order:
            x = self.pos_embed(x, grid) if name == "pos_embed" else getattr(self, name)(x)
        x = self.pos_drop(x)
        if self.patch_drop is not None:
            x = self.patch_drop(x)
        return x if self.norm_pre is None else self.norm_pre(x)

    def _final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final norm of every token (unless it applies to the pooled vector: ``fc_norm``, mean pooling)."""
        return tokens if self.norm_after_pool else self.norm(tokens)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool the encoder tokens and classify: [B, prefix + N, D] -> [B, num_classes]. A distilled model
        returns the mean of its two heads (of the two tokens' features without heads), as timm's."""
        x = self.pool(tokens)
        if self.norm_after_pool:
            x = self.norm(x)
        if self.head_dist is not None:
            return (self.head(x) + self.head_dist(tokens[:, 1])) / 2
        return self.head(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        readers = int(c.class_token) + int(c.distilled)  # the tokens the head reads with pool='cls'
        queries = readout_queries(self.blocks, readers, c.pool) if self.prune_readout else None
        return self.forward_head(self._final_norm(self.run_stack(self.blocks, self._embed(images), queries)))

    def token_grid(self, images: torch.Tensor) -> tuple[int, int]:
        """The patch grid of ``images``: (H / patch, W / patch)."""
        return (images.shape[-2] // self.config.patch_size[0], images.shape[-1] // self.config.patch_size[1])

    def check_input(self, images: torch.Tensor) -> None:
        """With ``dynamic_img_size``: any [B, C, H, W] with H and W multiples of the patch; else the config's size."""
        c = self.config
        if not c.dynamic_img_size:
            return super().check_input(images)
        sizes = tuple(images.shape[2:]) if images.ndim == 4 else ()
        if images.ndim != 4 or images.shape[1] != c.in_channels or not all(
                size > 0 and size % patch == 0 for size, patch in zip(sizes, c.patch_size)):
            got = "x".join(map(str, images.shape))
            raise ValueError(f"expected images of shape Bx{c.in_channels}xHxW with H, W multiples of the patch "
                             f"{c.patch_size[0]}x{c.patch_size[1]}, got {got}")

    def forward_intermediates(
        self, images: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
        output_fmt: str = "NCHW", intermediates_only: bool = False, stop_early: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """The patch tokens of chosen blocks, for dense heads (detection, segmentation); timm's interface.

        ``indices``: the last n blocks (an int), or block indices (negative from the end); None: every block.
        ``norm``: apply the final norm to them (the token norm of [CLS] models). ``output_fmt``: ``NCHW``
        ([B, D, grid_h, grid_w] maps) or ``NLC`` ([B, grid_h * grid_w, D]); prefix tokens are dropped.
        Returns ``(final tokens as forward_features gives them, maps)``, or only the maps with
        ``intermediates_only`` (``stop_early`` then skips the blocks after the last one taken).
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take = take_indices(len(self.blocks), indices)
        last = max(take) if stop_early and intermediates_only else len(self.blocks) - 1
        x = self._embed(images)
        maps = []
        for i in range(last + 1):
            x = self.run_stack(self.blocks[i : i + 1], x)
            if i in take:
                maps.append((self._final_norm(x) if norm else x)[:, self.num_prefix_tokens :])
        if output_fmt == "NCHW":
            height, width = self.token_grid(images)
            maps = [y.reshape(y.shape[0], height, width, -1).permute(0, 3, 1, 2).contiguous() for y in maps]
        return maps if intermediates_only else (self._final_norm(x), maps)


def pos_embed_prefix(config: ViTConfig) -> int:
    """How many prefix tokens ([CLS], distillation, registers) the position embedding has places for: all of them with
    ``pos_embed='learned'`` (timm's default), none otherwise (timm's ``no_embed_class``)."""
    prefix = int(config.class_token) + int(config.distilled) + config.reg_tokens
    return prefix if config.pos_embed == "learned" else 0


def take_indices(depth: int, indices: int | Sequence[int] | None) -> list[int]:
    """Block indices from timm's ``indices``: an int n is the last n blocks, a sequence is taken as is (negative
    counts from the end), None is every block. A one-line error for an index out of range."""
    if indices is None:
        indices = depth
    if isinstance(indices, int):
        if not 0 < indices <= depth:
            raise ValueError(f"indices={indices} asks for the last {indices} blocks of {depth}; use 1 to {depth}")
        return list(range(depth - indices, depth))
    taken = [i + depth if i < 0 else i for i in indices]
    if not taken or not all(0 <= i < depth for i in taken):
        raise ValueError(f"block indices {list(indices)} are out of range for {depth} blocks (0 to {depth - 1})")
    return taken
