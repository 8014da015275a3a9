"""Grouping sparse voxels into 3-D windows, padded by size class so that memory stays linear.

A window of edge ``w`` voxels holds between 1 and w**3 occupied voxels. Windows are sorted into size classes
(capacities 4, 8, 16, ... up to the largest window) and each class is one dense [windows, capacity] index
matrix: padding wastes at most a factor 4 on one-voxel windows and 2 elsewhere, and attention costs
sum(capacity**2) per class, never (number of voxels)**2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .voxels import Voxels, pack


@dataclass
class WindowBucket:
    """Windows of one size class: ``index[w, i]`` is the i-th voxel of window w (``mask`` False on padding)."""

    index: torch.Tensor
    mask: torch.Tensor

    @property
    def capacity(self) -> int:
        return self.index.shape[1]


@dataclass
class WindowPlan:
    """Every voxel of a stage in exactly one window of edge ``size`` shifted by ``shift`` voxels."""

    size: int
    shift: int
    window_of: torch.Tensor
    """int64 [V]: the window of each voxel (windows numbered in (scan, x, y, z) order)."""
    local: torch.Tensor
    """int64 [V, 3]: the voxel's position inside its window, 0 .. size-1."""
    buckets: list[WindowBucket]

    @property
    def num_windows(self) -> int:
        return int(self.window_of.max()) + 1 if self.window_of.numel() else 0


def plan_windows(voxels: Voxels, size: int, shift: int = 0, min_capacity: int = 4) -> WindowPlan:
    """Windows of ``size`` voxels, moved by ``shift`` voxels (Swin's shifted windows use ``size // 2``).

    As the official code, shifting adds ``shift`` to every voxel coordinate before cutting the grid into
    windows, so window boundaries fall at ``k * size - shift``.
    """
    moved = voxels.coords + shift
    corner = torch.div(moved, size, rounding_mode="floor")
    local = moved - corner * size
    _, window_of, counts = torch.unique(pack(voxels.batch, corner), return_inverse=True, return_counts=True)
    order = torch.argsort(window_of, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device) - starts[window_of[order]]
    buckets = []
    low, capacity = 0, min_capacity
    largest = int(counts.max()) if counts.numel() else 0
    while low < largest:
        chosen = torch.nonzero((counts > low) & (counts <= capacity)).squeeze(1)
        if chosen.numel():
            row_of = torch.full_like(counts, -1)
            row_of[chosen] = torch.arange(chosen.shape[0], device=counts.device)
            members = torch.nonzero(row_of[window_of] >= 0).squeeze(1)
            index = torch.zeros(chosen.shape[0], capacity, dtype=torch.long, device=counts.device)
            mask = torch.zeros(chosen.shape[0], capacity, dtype=torch.bool, device=counts.device)
            index[row_of[window_of[members]], rank[members]] = members
            mask[row_of[window_of[members]], rank[members]] = True
            buckets.append(WindowBucket(index, mask))
        low, capacity = capacity, capacity * 2
    return WindowPlan(size, shift, window_of, local, buckets)
