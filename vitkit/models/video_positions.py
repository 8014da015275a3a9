"""Position embeddings of video models on a (T', H', W') token grid, at the configured size and at run-time sizes.

A table is ``prefix`` rows ([CLS]) then one row per cell of its grid in frame-major order. At another grid
(``dynamic_img_size``) the learned table is resampled as an image ViT's within each frame (bicubic, antialiased:
timm's rule) and linearly along time; TimeSformer's tables are resampled ``nearest`` along both, as its authors'
code and transformers do. VideoMAE's fixed sinusoid table is computed afresh for the new number of tokens, which
is what VideoMAE does when it is built at that size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .layers import PositionEmbedding

Grid3 = tuple[int, int, int]


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """The 1-D sinusoid table of "Attention is all you need" as VideoMAE lays it out, [length, dim]: channel
    ``2i`` is sin(pos / 10000^(2i / dim)), channel ``2i + 1`` the cosine of the same angle (computed in float64)."""
    exponent = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim
    angles = torch.arange(length, dtype=torch.float64)[:, None] / 10000.0**exponent[None, :]
    table = torch.where(torch.arange(dim) % 2 == 0, angles.sin(), angles.cos())
    return table.float()


def resample_grid(table: torch.Tensor, old: Grid3, new: Grid3, mode: str) -> torch.Tensor:
    """A [1, T H W, D] table on grid ``old`` resampled to ``new``: within each frame then along time.

    ``mode="bicubic"``: bicubic and antialiased in space (as timm resamples an image ViT's), linear in time;
    ``"nearest"``: nearest in both (TimeSformer)."""
    dim = table.shape[-1]
    x = table.float().reshape(old[0], old[1], old[2], dim).permute(0, 3, 1, 2)  # [T, D, H, W]
    if old[1:] != new[1:]:
        smooth = mode == "bicubic"
        x = F.interpolate(x, size=new[1:], mode=mode, **({"antialias": True, "align_corners": False}
                                                           if smooth else {}))
    x = x.permute(2, 3, 1, 0).reshape(new[1] * new[2], dim, old[0])  # [H W, D, T]
    if old[0] != new[0]:
        x = F.interpolate(x, size=new[0], mode="linear" if mode == "bicubic" else "nearest",
                          **({"align_corners": False} if mode == "bicubic" else {}))
    return x.permute(2, 0, 1).reshape(1, new[0] * new[1] * new[2], dim).to(table.dtype)


class VideoPositionEmbedding(PositionEmbedding):
    """A position embedding on a (T', H', W') grid after ``prefix_tokens`` rows; learned, or VideoMAE's fixed
    sinusoid table (``sinusoid=True``). ``forward(tokens, grid)`` with another grid adds the table for that grid
    (see the module doc; computed once per grid while the weights do not change, as the image ViT's)."""

    def __init__(self, grid: Grid3, dim: int, prefix_tokens: int = 0, sinusoid: bool = False,
                 mode: str = "bicubic") -> None:
        length = prefix_tokens + grid[0] * grid[1] * grid[2]
        super().__init__(length, dim, fixed=sinusoid_table(length, dim) if sinusoid else None, grid=grid,  # type: ignore[arg-type]
                         prefix_tokens=prefix_tokens)
        self.mode = mode

    def _compute(self, grid: tuple[int, ...]) -> torch.Tensor:
        if self.fixed:
            length = self.prefix_tokens + grid[0] * grid[1] * grid[2]
            return sinusoid_table(length, self.weight.shape[-1]).to(self.weight.device, self.weight.dtype)[None]
        prefix, cells = self.weight[:, : self.prefix_tokens], self.weight[:, self.prefix_tokens :]
        return torch.cat([prefix, resample_grid(cells, self.grid, grid, self.mode)], dim=1)  # type: ignore[arg-type]

    def stage_label(self) -> str:
        return "position embedding" + (" (fixed sinusoid)" if self.fixed else "")


@torch.no_grad()
def resampled_tables(source: torch.nn.Module, target: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The learned position tables of ``source`` (a video model) resampled to the grids of the same tables in
    ``target`` (the same model at another clip size), under their state-dict keys; tables whose grid is the same
    are left out, fixed (sinusoid) ones are the target's own."""
    tables = {}
    for name, module in target.named_modules():
        if isinstance(module, VideoPositionEmbedding) and not module.fixed:
            old = source.get_submodule(name)
            if old.grid != module.grid:
                tables[f"{name}.weight"] = old.table(module.grid).detach().clone()
    return tables
