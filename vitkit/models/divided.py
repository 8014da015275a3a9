"""TimeSformer's divided space-time attention (Bertasius et al. 2021, "Is Space-Time Attention All You Need for
Video Understanding?"): ViViT Model 3's sibling, as the ``divided_space_time`` variant of :class:`ViViTConfig`.

    tokens [B, 1 + T'N, D] ([CLS], then frame-major patches)
      -> temporal: each spatial position attends across the T' frames (no [CLS]), then an extra Linear
         (``temporal_fc``), added to the patches
      -> spatial: each frame's patches attend within the frame together with a copy of [CLS]; the [CLS] outputs
         of the T' frames are averaged
      -> MLP

Positions: a learned table for [CLS] and the N patches of a frame (``pos_embed``, added in every frame) plus a
learned one per frame (``temporal_pos_embed``), as the paper's code and transformers do.
"""

from __future__ import annotations

import torch
from torch import nn

from .clip_tokens import from_time_major, space_major, time_major
from .layers import Attention, ClassToken, DropPath, Mlp, QVBiasAttention
from .video_positions import VideoPositionEmbedding
from .vivit_config import ViViTConfig


def attention_class(config: ViViTConfig) -> type[Attention]:
    """The attention of a video model's blocks: without a key bias for ``key_bias=False`` (VideoMAE)."""
    return Attention if config.key_bias else QVBiasAttention


class TwoAttentionBlock(nn.Module):
    """What ViViT Model 3's block and TimeSformer's share: an image ViT block's ``norm1``, ``attn`` (within the
    frame), ``norm2`` and ``mlp``, plus ``temporal_norm`` and ``temporal_attn`` (across the frames)."""

    def __init__(self, config: ViViTConfig, drop_path: float) -> None:
        super().__init__()
        c = config
        self.frames = c.temporal_tokens
        """T'; a model with ``dynamic_img_size`` sets it for each clip."""
        attention = attention_class(c)
        self.norm1 = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.attn = attention(c.dim, c.heads, c.qkv_bias, c.attn_dropout, c.dropout)
        self.temporal_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.temporal_attn = attention(c.dim, c.heads, c.qkv_bias, c.attn_dropout, c.dropout)
        self.norm2 = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.mlp = Mlp(c.dim, c.hidden_dim, c.dropout)
        self.drop_path = DropPath(drop_path)


class DividedSpaceTimeBlock(TwoAttentionBlock):
    """One TimeSformer block (see the module doc): the shared parts and ``temporal_fc``, the Linear after the
    temporal attention."""

    def __init__(self, config: ViViTConfig, drop_path: float) -> None:
        super().__init__(config, drop_path)
        self.temporal_fc = nn.Linear(config.dim, config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, dim = x.shape
        frames = self.frames
        cls, patches = x[:, :1], x[:, 1:]
        temporal = self.drop_path(self.temporal_attn(self.temporal_norm(time_major(patches, frames))))
        patches = patches + self.temporal_fc(from_time_major(temporal, batch))
        per_frame_cls = cls.expand(batch, frames, dim).reshape(batch * frames, 1, dim)
        spatial = torch.cat([per_frame_cls, space_major(patches, frames)], dim=1)  # [B T', 1 + N, D]
        spatial = self.drop_path(self.attn(self.norm1(spatial)))
        cls_update = spatial[:, 0].reshape(batch, frames, dim).mean(dim=1, keepdim=True)
        x = torch.cat([cls, patches], dim=1) + torch.cat([cls_update, spatial[:, 1:].reshape(batch, -1, dim)], dim=1)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def stage_label(self) -> str:
        return "divided space-time block (time, then space)"


def divided_position_tables(config: ViViTConfig) -> tuple[VideoPositionEmbedding, VideoPositionEmbedding]:
    """TimeSformer's ``pos_embed`` ([CLS] and one frame's patches) and ``temporal_pos_embed`` (one per frame),
    resampled ``nearest`` at run-time sizes as transformers' TimeSformer does."""
    frames, height, width = config.grid_size
    return (VideoPositionEmbedding((1, height, width), config.dim, prefix_tokens=1, mode="nearest"),
            VideoPositionEmbedding((frames, 1, 1), config.dim, mode="nearest"))


def embed_divided(tokens: torch.Tensor, cls_token: ClassToken, pos_embed: VideoPositionEmbedding,
                  temporal_pos_embed: VideoPositionEmbedding, grid: tuple[int, int, int] | None) -> torch.Tensor:
    """Patch tokens [B, T'N, D] -> [B, 1 + T'N, D]: [CLS] and the spatial table added within every frame (as
    TimeSformer does, [CLS] once per frame), then the frame's table added to its patches. ``grid``: the clip's
    (T', H', W') when it is not the configured one."""
    batch, _, dim = tokens.shape
    frames = grid[0] if grid else temporal_pos_embed.grid[0]  # type: ignore[index]
    spatial_grid = (1, *grid[1:]) if grid else None
    framed = pos_embed(cls_token(space_major(tokens, frames)), spatial_grid)  # [B T', 1 + N, D]
    cls = framed[::frames, :1]  # the same in every frame: [CLS] + its position
    patches = time_major(framed[:, 1:].reshape(batch, -1, dim), frames)
    patches = temporal_pos_embed(patches, (frames, 1, 1) if grid else None)
    return torch.cat([cls, from_time_major(patches, batch)], dim=1)
