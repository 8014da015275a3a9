"""The token layouts of a clip: [B, T N, D] in frame-major order (every video model's sequence), one sequence
per frame [B T, N, D], or one per spatial position [B N, T, D]; factorised attention moves between them."""

from __future__ import annotations

import torch


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
