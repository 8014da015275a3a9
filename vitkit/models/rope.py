"""2-D rotary position embedding (RoPE) on the patch tokens' queries and keys, as EVA-02 applies it.

RoPE (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding") encodes where a token is
by turning its query and key: channel pair (2i, 2i + 1) of a head rotates by the angle ``position * freq_i``.
A rotated query and key then meet at the angle difference, so their dot product depends on the two positions
only through their offset: attention sees relative positions. The axial 2-D form of EVA-02 (Fang et al. 2023,
"EVA-02: A Visual Representation for Neon Genesis") turns the first half of each head's pairs by the patch's
row and the second half by its column, with frequencies ``temperature ** (-j / (head_dim / 4))`` for
j = 0 .. head_dim / 4 - 1 (timm's ``Eva`` with ``use_rot_pos_emb``: ``RotaryEmbeddingCat``, interleaved pairs).
Prefix tokens ([CLS], registers) have no place on the image and are not rotated.

Positions may be rescaled to a reference grid (timm's ``ref_feat_shape``): at a grid of h x w patches, row i has
position ``i * ref_h / h``, so a model fine-tuned at another size sees the angles of its pre-training range.
"""

from __future__ import annotations

import torch
from torch import nn


def rope_angles(grid: tuple[int, int], head_dim: int, ref_grid: tuple[int, int] | None = None,
                temperature: float = 10000.0) -> torch.Tensor:
    """The rotation angle of every channel pair of every patch, [grid_h * grid_w, head_dim // 2] (float64), patches
    in row-major order: the first ``head_dim // 4`` pairs by the row, the others by the column."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head size divisible by 4, got {head_dim}")
    bands = head_dim // 4
    freqs = temperature ** -(torch.arange(bands, dtype=torch.float64, device="cpu") / bands)
    ref = grid if ref_grid is None else ref_grid
    rows = torch.arange(grid[0], dtype=torch.float64, device="cpu") * (ref[0] / grid[0])
    cols = torch.arange(grid[1], dtype=torch.float64, device="cpu") * (ref[1] / grid[1])
    by_row = (rows[:, None] * freqs)[:, None, :].expand(grid[0], grid[1], bands)
    by_col = (cols[:, None] * freqs)[None, :, :].expand(grid[0], grid[1], bands)
    return torch.cat([by_row, by_col], dim=-1).reshape(grid[0] * grid[1], 2 * bands)


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i + 1) of ``x`` [..., N, D] by the angles whose cosines and sines are ``cos`` and
    ``sin`` [N, D / 2]: (a, b) -> (a cos - b sin, b cos + a sin)."""
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)


class RotaryEmbedding2d(nn.Module):
    """Rotate the patch tokens of queries or keys [B, heads, prefix + N, head_dim] by their 2-D positions.

    One instance serves every block of a model: the model calls :meth:`use_grid` with the input's patch grid
    before its blocks run (run-time sizes), and each grid's cosines and sines are computed once per device
    (float32) and kept. It holds no weights and writes nothing to a state dict.
    """

    def __init__(self, head_dim: int, grid: tuple[int, int], ref_grid: tuple[int, int] | None = None,
                 prefix_tokens: int = 0, temperature: float = 10000.0) -> None:
        super().__init__()
        rope_angles((1, 1), head_dim)  # the head-size check, at construction
        self.head_dim = head_dim
        self.grid = grid
        self.ref_grid = ref_grid
        self.prefix_tokens = prefix_tokens
        self.temperature = temperature
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def use_grid(self, grid: tuple[int, int]) -> None:
        """The patch grid of the tokens rotated from now on."""
        self.grid = grid

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosines and sines of the current grid's angles on ``device``, [N, head_dim // 2] each (float32)."""
        key = (self.grid, device)
        if key not in self._tables:
            angles = rope_angles(self.grid, self.head_dim, self.ref_grid, self.temperature)
            self._tables[key] = (angles.cos().float().to(device), angles.sin().float().to(device))
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos, sin = self.tables(x.device)
        n = self.prefix_tokens
        if x.shape[-2] - n != cos.shape[0]:
            raise ValueError(f"RoPE: got {x.shape[-2] - n} patch tokens for a {self.grid[0]}x{self.grid[1]} grid")
        rotated = rotate_pairs(x[..., n:, :].float(), cos, sin).to(x.dtype)
        return torch.cat([x[..., :n, :], rotated], dim=-2) if n else rotated

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, ref_grid={self.ref_grid}, prefix_tokens={self.prefix_tokens}"
