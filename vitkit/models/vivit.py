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
from .heads import Pool
from .layers import Attention, Block, ClassToken, DropPath, Mlp, PositionEmbedding, init_weights, readout_queries
from .vivit_config import ViViTConfig


def space_major(tokens: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T N, D] (frame-major order) -> [B T, N, D]: one sequence per frame."""
    batch, length, dim = tokens.shape
    return tokens.reshape(batch * frames, length // frames, dim)


def time_major(tokens: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T N, D] -> [B N, T, D]: one sequence per spatial position, across the frames."""
    batch, length, dim = tokens.shape
    return tokens.reshape(batch, frames, length // frames, dim).transpose(1, 2).reshape(-1, frames, dim)


def from_time_major(tokens: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of :func:`time_major`: [B N, T, D] -> [B, T N, D]."""
    _, frames, dim = tokens.shape
    return tokens.reshape(batch, -1, frames, dim).transpose(1, 2).reshape(batch, -1, dim)


def frames_to_tokens(maps: torch.Tensor) -> torch.Tensor:
    """Attention within each frame, [..., T, N, N] -> the same attention over all T N tokens of the clip,
    [..., T N, T N] in frame-major order: zero between tokens of different frames."""
    frames, patches = maps.shape[-3], maps.shape[-1]
    eye = torch.eye(frames, dtype=maps.dtype, device=maps.device)
    full = torch.einsum("...tnm,tu->...tnum", maps, eye)
    return full.reshape(*maps.shape[:-3], frames * patches, frames * patches)


def positions_to_tokens(maps: torch.Tensor) -> torch.Tensor:
    """Attention across frames at each spatial position, [..., N, T, T] -> [..., T N, T N] over all tokens of
    the clip (frame-major): zero between tokens of different positions."""
    patches, frames = maps.shape[-3], maps.shape[-1]
    eye = torch.eye(patches, dtype=maps.dtype, device=maps.device)
    full = torch.einsum("...ntu,nm->...tnum", maps, eye)
    return full.reshape(*maps.shape[:-3], frames * patches, frames * patches)


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


class FactorisedSelfAttentionBlock(nn.Module):
    """Model 3's block: attention within each frame, then across frames at each position, then the MLP.

    ``norm1``, ``attn``, ``norm2`` and ``mlp`` are named as in :class:`layers.Block`, so an image ViT's block
    loads into them; ``temporal_norm`` and ``temporal_attn`` are the new temporal step.
    """

    def __init__(self, config: ViViTConfig, drop_path: float) -> None:
        super().__init__()
        c = config
        self.frames = c.temporal_tokens
        self.norm1 = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.attn = Attention(c.dim, c.heads, c.qkv_bias, c.attn_dropout, c.dropout)
        self.temporal_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.temporal_attn = Attention(c.dim, c.heads, c.qkv_bias, c.attn_dropout, c.dropout)
        self.norm2 = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.mlp = Mlp(c.dim, c.hidden_dim, c.dropout)
        self.drop_path = DropPath(drop_path)

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
    return Block(c.dim, c.heads, c.hidden_dim, qkv_bias=c.qkv_bias, dropout=c.dropout, attn_dropout=c.attn_dropout,
                 drop_path=drop_path, norm_eps=c.norm_eps)


def _stack(config: ViViTConfig, depth: int) -> nn.Sequential:
    return block_stack(lambda rate: _block(config, rate), depth, config.drop_path)


class VideoVisionTransformer(TransformerModel):
    """A ViViT built from a :class:`ViViTConfig`. ``forward(clips)`` takes [B, C, T, H, W] and returns logits,
    or pooled features if ``num_classes == 0``."""

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
        first_tokens = c.spatial_tokens if self.factorised_encoder else c.num_patches
        self.pos_embed = PositionEmbedding(first_tokens + int(has_cls), c.dim)
        self.pos_drop = nn.Dropout(c.dropout)
        if self.factorised_encoder:
            self.spatial_blocks = _stack(c, c.depth)
            self.spatial_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
            self.frame_pool = FramePool(c.pool, self.num_prefix_tokens, c.temporal_tokens)
            self.temporal_cls_token = ClassToken(c.dim) if has_cls else None
            self.temporal_pos_embed = PositionEmbedding(c.temporal_tokens + int(has_cls), c.dim)
            self.temporal_blocks = _stack(c, c.temporal_depth)
        else:
            self.blocks = _stack(c, c.depth)
        # The paper's code (Scenic) normalises all tokens, then pools; unlike the image ViT's mean pooling.
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.pool = Pool(c.pool, self.num_prefix_tokens)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(init_weights)

    def block_stacks(self) -> list[nn.Sequential]:
        if self.factorised_encoder:
            return [self.spatial_blocks, self.temporal_blocks]
        return [self.blocks]

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """Normalised encoder output tokens: [B, prefix + T'N, D], or [B, prefix + T', D] for Model 2."""
        return self._encode(clips, prune=False)

    def _encode(self, clips: torch.Tensor, prune: bool) -> torch.Tensor:
        if not self.factorised_encoder:
            x = self._embed(self._patches(clips), self.cls_token, self.pos_embed)
            return self.norm(self.run_stack(self.blocks, self.pos_drop(x), self._queries(self.blocks, prune)))
        x = self._embed(self._encode_frames(clips, prune), self.temporal_cls_token, self.temporal_pos_embed)
        return self.norm(self.run_stack(self.temporal_blocks, x, self._queries(self.temporal_blocks, prune)))

    def forward_frames(self, clips: torch.Tensor) -> torch.Tensor:
        """Model 2 only: the spatial encoder's output, one vector per frame, [B, T', D]."""
        if not self.factorised_encoder:
            raise ValueError("forward_frames is only defined for the factorised encoder (Model 2)")
        return self._encode_frames(clips, prune=False)

    def _encode_frames(self, clips: torch.Tensor, prune: bool) -> torch.Tensor:
        x = self._embed(self._patches(clips), self.cls_token, self.pos_embed)
        x = self.run_stack(self.spatial_blocks, self.pos_drop(x), self._queries(self.spatial_blocks, prune))
        return self.frame_pool(self.spatial_norm(x))

    def _patches(self, clips: torch.Tensor) -> torch.Tensor:
        self.check_input(clips)
        return self.patch_embed(clips)

    def _queries(self, blocks: nn.Sequential, prune: bool) -> int | None:
        if not (prune and self.prune_readout):
            return None
        return readout_queries(blocks, self.num_prefix_tokens, self.config.pool)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool the encoder tokens and classify."""
        return self.head(self.pool(tokens))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self._encode(clips, prune=True))

    @staticmethod
    def _embed(tokens: torch.Tensor, cls_token: ClassToken | None, pos_embed: PositionEmbedding) -> torch.Tensor:
        # [CLS] first, so that the position embedding covers it (as in the paper's ViT and in transformers).
        return pos_embed(cls_token(tokens) if cls_token is not None else tokens)
