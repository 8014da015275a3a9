"""The Video Vision Transformer (Arnab et al. 2021, "ViViT"), its four models in one configurable class.

    clip [B, C, T, H, W]
      -> patch_embed      [B, T'N, D]     tubelets of t x h x w: T' = T / t, N = (H / h) * (W / w)
      -> cls_token        [B, T'N + 1, D] (Model 1 with pool="cls")
      -> pos_embed        same shape      learned, one per token of the clip
      -> blocks           same shape      Model 1: joint attention over all tokens; Model 3: attention within
                                          each frame, then across frames; Model 4: half the heads each way
      -> norm, pool, head [B, classes]

Model 2 (factorised encoder) runs a ViT on each frame, then a second Transformer over the frames:

    patch_embed [B T', N, D] -> cls_token, pos_embed, spatial_blocks, spatial_norm -> frame_pool [B, T', D]
      -> temporal_cls_token, temporal_pos_embed, temporal_blocks, norm, pool, head

Block, Attention and Mlp are the image ViT's (``layers.py``), so an image ViT's weights fit (``inflate.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import TransformerModel, block_stack
from .clip_tokens import frames_to_tokens, from_time_major, positions_to_tokens, space_major, time_major
from .divided import (DividedSpaceTimeBlock, TwoAttentionBlock, attention_class, divided_position_tables,
                      embed_divided)
from .heads import Pool
from .layers import Attention, Block, ClassToken, init_weights, readout_queries
from .video_intermediates import video_intermediates
from .video_positions import VideoPositionEmbedding
from .vivit_config import ViViTConfig



class TubeletEmbed(nn.Module):
    """Cut a clip into t x h x w tubelets and project each to ``dim`` (a Conv3d whose kernel is its stride).

    Output [B, T' N, D] in frame-major order, or [B T', N, D] with ``per_frame=True`` (Model 2).
    """

    def __init__(self, tubelet_size: tuple[int, int, int], in_channels: int, dim: int, per_frame: bool = False):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=tubelet_size, stride=tubelet_size)
        self.per_frame = per_frame

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.proj(clips).flatten(3)  # [B, D, T', N]
        if self.per_frame:
            return x.permute(0, 2, 3, 1).flatten(0, 1)
        return x.flatten(2).transpose(1, 2)

    def stage_label(self) -> str:
        t, h, w = self.proj.kernel_size
        return f"tubelet embedding {t}x{h}x{w}" + (" (tokens per frame)" if self.per_frame else "")


class FramePool(Pool):
    """Model 2: reduce each frame's spatial tokens to one vector, giving the temporal sequence [B, T', D]."""

    def __init__(self, mode: str, num_prefix_tokens: int, frames: int) -> None:
        super().__init__(mode, num_prefix_tokens)
        self.frames = frames

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = super().forward(tokens)
        return pooled.reshape(-1, self.frames, pooled.shape[-1])

    def stage_label(self) -> str:
        how = "[CLS]" if self.mode == "cls" else "mean"
        return f"frame tokens ({how} of each frame)"


class FactorisedSelfAttentionBlock(TwoAttentionBlock):
    """Model 3's block: attention within each frame, then across frames at each position, then the MLP.

    ``norm1``, ``attn``, ``norm2`` and ``mlp`` are named as in :class:`layers.Block`, so an image ViT's block
    loads into them; ``temporal_norm`` and ``temporal_attn`` are the new temporal step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        x = space_major(x, self.frames)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = time_major(x.reshape(batch, length, dim), self.frames)
        x = x + self.drop_path(self.temporal_attn(self.temporal_norm(x)))
        x = from_time_major(x, batch)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def stage_label(self) -> str:
        return "factorised block (space, then time)"


class FactorisedDotProductAttention(Attention):
    """Model 4's attention: the first ``spatial_heads`` heads attend within the frame, the others across the
    frames at the same position; their outputs are concatenated and projected as in ordinary attention.

    The parameters are exactly those of :class:`layers.Attention` (one qkv and one output projection).

    With ``keep_weights`` (explain), each head's attention is formed as one [T'N, T'N] map over the clip's tokens
    (zero between tokens the head cannot see) and applied as such, so ``weights`` is [B, heads, T'N, T'N] like
    any other layer's, and gradients of the output reach it (grad-rollout). The fused path stays the default.
    """

    def __init__(self, config: ViViTConfig) -> None:
        c = config
        super().__init__(c.dim, c.heads, c.qkv_bias, c.attn_dropout, c.dropout)
        self.frames = c.temporal_tokens
        self.spatial_heads = c.spatial_heads

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.keep_weights:
            return self._explicit_tokens(q, k, v)
        batch, heads, length, head_dim = q.shape
        s = self.spatial_heads
        grid = (self.frames, length // self.frames, head_dim)
        # Extra leading dims act as batch dims of the attention: [B, h, T', N, d] attends over N (space),
        # its transpose [B, h, N, T', d] over T' (time).
        spatial = super().attend(*(z[:, :s].reshape(batch, s, *grid) for z in (q, k, v)))
        temporal = super().attend(*(z[:, s:].reshape(batch, heads - s, *grid).transpose(2, 3) for z in (q, k, v)))
        temporal = temporal.transpose(2, 3)
        return torch.cat([spatial, temporal], dim=1).reshape(batch, heads, length, head_dim)

    def _explicit_tokens(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The same attention through explicit [B, heads, T'N, T'N] weights, kept in ``self.weights``."""
        batch, heads, length, head_dim = q.shape
        s = self.spatial_heads
        grid = (self.frames, length // self.frames, head_dim)
        qs, ks = (z[:, :s].reshape(batch, s, *grid) for z in (q, k))  # [B, s, T', N, d]
        qt, kt = (z[:, s:].reshape(batch, heads - s, *grid).transpose(2, 3) for z in (q, k))  # [B, h-s, N, T', d]
        spatial = (qs @ ks.transpose(-2, -1) * head_dim**-0.5).softmax(dim=-1)
        temporal = (qt @ kt.transpose(-2, -1) * head_dim**-0.5).softmax(dim=-1)
        self.weights = torch.cat([frames_to_tokens(spatial), positions_to_tokens(temporal)], dim=1)
        dropout = self.attn_dropout if self.training else 0.0
        return F.dropout(self.weights, dropout, self.training) @ v


class FactorisedDotProductBlock(Block):
    """Model 4's block: an image ViT block whose attention is :class:`FactorisedDotProductAttention`."""

    def __init__(self, config: ViViTConfig, drop_path: float) -> None:
        c = config
        super().__init__(c.dim, c.heads, c.hidden_dim, qkv_bias=c.qkv_bias, dropout=c.dropout,
                         attn_dropout=c.attn_dropout, drop_path=drop_path, norm_eps=c.norm_eps)
        self.attn = FactorisedDotProductAttention(c)

    def stage_label(self) -> str:
        return "factorised dot-product block"


def _block(config: ViViTConfig, drop_path: float) -> nn.Module:
    c = config
    if c.variant == "factorised_self_attention":
        return FactorisedSelfAttentionBlock(c, drop_path)
    if c.variant == "factorised_dot_product":
        return FactorisedDotProductBlock(c, drop_path)
    if c.variant == "divided_space_time":
        return DividedSpaceTimeBlock(c, drop_path)
    return Block(c.dim, c.heads, c.hidden_dim, qkv_bias=c.qkv_bias, dropout=c.dropout, attn_dropout=c.attn_dropout,
                 drop_path=drop_path, norm_eps=c.norm_eps, attention=attention_class(c))


def _stack(config: ViViTConfig, depth: int) -> nn.Sequential:
    return block_stack(lambda rate: _block(config, rate), depth, config.drop_path)


class VideoVisionTransformer(TransformerModel):
    """A ViViT built from a :class:`ViViTConfig`. ``forward(clips)`` takes [B, C, T, H, W] and returns logits,
    or pooled features if ``num_classes == 0``; :meth:`forward_intermediates` returns chosen blocks' patch
    tokens as [B, D, T', H', W'] maps."""

    input_name = "clips"
    input_axes = "batch, channels, frames, height, width"

    def __init__(self, config: ViViTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.factorised_encoder = c.variant == "factorised_encoder"
        has_cls = c.pool == "cls"
        self.num_prefix_tokens = int(has_cls)
        self.patch_embed = TubeletEmbed(c.tubelet_size, c.in_channels, c.dim, per_frame=self.factorised_encoder)
        self.cls_token = ClassToken(c.dim) if has_cls else None
        frames, height, width = c.grid_size
        if c.variant == "divided_space_time":
            self.pos_embed, self.temporal_pos_embed = divided_position_tables(c)
        else:
            grid = (1, height, width) if self.factorised_encoder else c.grid_size
            self.pos_embed = VideoPositionEmbedding(grid, c.dim, int(has_cls), sinusoid=c.pos_embed == "sincos")
        self.pos_drop = nn.Dropout(c.dropout)
        if self.factorised_encoder:
            self.spatial_blocks = _stack(c, c.depth)
            self.spatial_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
            self.frame_pool = FramePool(c.pool, self.num_prefix_tokens, c.temporal_tokens)
            self.temporal_cls_token = ClassToken(c.dim) if has_cls else None
            self.temporal_pos_embed = VideoPositionEmbedding((frames, 1, 1), c.dim, int(has_cls))
            self.temporal_blocks = _stack(c, c.temporal_depth)
        else:
            self.blocks = _stack(c, c.depth)
        # The paper's code (Scenic) normalises all tokens, then pools; VideoMAE pools, then normalises (fc_norm).
        self.norm = nn.LayerNorm(c.dim, eps=c.fc_norm_eps if c.fc_norm and c.fc_norm_eps else c.norm_eps)
        self.pool = Pool(c.pool, self.num_prefix_tokens)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(init_weights)
        self._run_frames = frames

    def block_stacks(self) -> list[nn.Sequential]:
        if self.factorised_encoder:
            return [self.spatial_blocks, self.temporal_blocks]
        return [self.blocks]

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """Encoder output tokens: [B, prefix + T'N, D], or [B, prefix + T', D] for Model 2; normalised unless
        ``fc_norm`` (then the norm applies to the pooled vector, in :meth:`forward_head`)."""
        return self._encode(clips, prune=False)

    def _encode(self, clips: torch.Tensor, prune: bool) -> torch.Tensor:
        grid = self._run_grid(clips)
        if self.factorised_encoder:
            return self._encode_time(self._encode_frames(clips, prune, grid), prune, grid)
        x = self._embed_clip(clips, grid)
        return self._final_norm(self.run_stack(self.blocks, x, self._queries(self.blocks, prune)))

    def _embed_clip(self, clips: torch.Tensor, grid: tuple[int, int, int] | None) -> torch.Tensor:
        """The tokens the first block reads: [B, prefix + T'N, D] (Model 2: [B T', prefix + N, D])."""
        tokens = self.patch_embed(clips)
        if self.config.variant == "divided_space_time":
            x = embed_divided(tokens, self.cls_token, self.pos_embed, self.temporal_pos_embed, grid)
        else:
            spatial = grid and (1, *grid[1:]) if self.factorised_encoder else grid
            x = self._embed(tokens, self.cls_token, self.pos_embed, spatial)
        return self.pos_drop(x)

    def _encode_time(self, frames: torch.Tensor, prune: bool, grid: tuple[int, int, int] | None) -> torch.Tensor:
        """Model 2's temporal encoder on the frame tokens [B, T', D]."""
        x = self._embed(frames, self.temporal_cls_token, self.temporal_pos_embed, grid and (grid[0], 1, 1))
        return self._final_norm(self.run_stack(self.temporal_blocks, x, self._queries(self.temporal_blocks, prune)))

    def forward_frames(self, clips: torch.Tensor) -> torch.Tensor:
        """Model 2 only: the spatial encoder's output, one vector per frame, [B, T', D]."""
        if not self.factorised_encoder:
            raise ValueError("forward_frames is only defined for the factorised encoder (Model 2)")
        return self._encode_frames(clips, prune=False, grid=self._run_grid(clips))

    def _encode_frames(self, clips: torch.Tensor, prune: bool, grid: tuple[int, int, int] | None) -> torch.Tensor:
        x = self._embed_clip(clips, grid)
        x = self.run_stack(self.spatial_blocks, x, self._queries(self.spatial_blocks, prune))
        return self.frame_pool(self.spatial_norm(x))

    def _run_grid(self, clips: torch.Tensor) -> tuple[int, int, int] | None:
        """Check the clip; with ``dynamic_img_size`` its (T', H', W') (the blocks told its T'), else None."""
        self.check_input(clips)
        if not self.config.dynamic_img_size:
            return None
        grid = self.token_grid(clips)
        if grid[0] != self._run_frames:
            for module in self.modules():
                if module is not self and hasattr(module, "frames"):
                    module.frames = grid[0]
            self._run_frames = grid[0]
        return grid

    def _final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens if self.config.fc_norm else self.norm(tokens)

    def _queries(self, blocks: nn.Sequential, prune: bool) -> int | None:
        if not (prune and self.prune_readout):
            return None
        return readout_queries(blocks, self.num_prefix_tokens, self.config.pool)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool the encoder tokens (then normalise, with ``fc_norm``) and classify."""
        pooled = self.pool(tokens)
        return self.head(self.norm(pooled) if self.config.fc_norm else pooled)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self._encode(clips, prune=True))

    @staticmethod
    def _embed(tokens: torch.Tensor, cls_token: ClassToken | None, pos_embed: VideoPositionEmbedding,
               grid: tuple[int, int, int] | None) -> torch.Tensor:
        # [CLS] first, so that the position embedding covers it (as in the paper's ViT and in transformers).
        return pos_embed(cls_token(tokens) if cls_token is not None else tokens, grid)

    def token_grid(self, clips: torch.Tensor) -> tuple[int, int, int]:
        """The tubelet grid of ``clips``: (T / t, H / h, W / w)."""
        return tuple(size // step for size, step in zip(clips.shape[2:], self.config.tubelet_size))  # type: ignore[return-value]

    def check_input(self, clips: torch.Tensor) -> None:
        """With ``dynamic_img_size``: any [B, C, T, H, W] whose T, H and W are multiples of the tubelet; else
        the config's shape."""
        c = self.config
        if not c.dynamic_img_size:
            return super().check_input(clips)
        if clips.ndim != 5 or clips.shape[1] != c.in_channels or not all(
                size > 0 and size % step == 0 for size, step in zip(clips.shape[2:], c.tubelet_size)):
            got = "x".join(map(str, clips.shape))
            raise ValueError(f"expected clips of shape Bx{c.in_channels}xTxHxW with T, H, W multiples of the "
                             f"tubelet {'x'.join(map(str, c.tubelet_size))}, got {got}")

    forward_intermediates = video_intermediates
