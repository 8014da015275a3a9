"""Resampling a learned position embedding to another patch grid, so a checkpoint runs at a new resolution.

The patch part of the embedding is a [grid_h, grid_w] image with ``dim`` channels: interpolate it like one.
Prefix tokens ([CLS]) have no position on the grid and are carried over unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import VitkitError


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    *,
    mode: str = "bicubic",
    antialias: bool = True,
    align_corners: bool = False,
) -> torch.Tensor:
    """Resample a [1, prefix + H * W, D] position embedding to ``new_grid``; ``old_grid`` defaults to square.

    The defaults (bicubic, antialiased, corners not aligned) are timm's, so a resampled vitkit model equals a
    timm model resampled by timm. (Antialiasing also changes the bicubic kernel when upsampling: PyTorch then
    uses PIL's a = -0.5 instead of -0.75.)
    """
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise VitkitError(f"a position embedding has shape [1, L, D], got {list(pos_embed.shape)}")
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old_grid = tuple(old_grid) if old_grid is not None else square_grid(patches.shape[1])
    new_grid = tuple(new_grid)
    if old_grid[0] * old_grid[1] != patches.shape[1]:
        raise VitkitError(
            f"a {old_grid[0]}x{old_grid[1]} grid has {old_grid[0] * old_grid[1]} positions but the embedding has "
            f"{patches.shape[1]} (after {num_prefix_tokens} prefix token(s)); pass the checkpoint's image size"
        )
    if old_grid == new_grid:
        return pos_embed
    dim = patches.shape[-1]
    # Interpolation needs float32 (bfloat16 / float16 checkpoints are cast back afterwards).
    grid = patches.float().reshape(1, *old_grid, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode=mode, antialias=antialias, align_corners=align_corners)
    patches = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)


def square_grid(num_positions: int) -> tuple[int, int]:
    """The square grid with ``num_positions`` cells, or a one-line error if there is none."""
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise VitkitError(
            f"{num_positions} positions do not form a square grid; pass image_size= with the checkpoint's size"
        )
    return (side, side)
