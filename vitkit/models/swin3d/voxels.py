"""Point clouds to sparse voxels: the input of a Swin3D model.

A scan is a set of points with position (metres), colour and normal. ``voxelize`` puts each scan of a batch on
its own grid anchored at the scan's lowest corner (so moving a scan by whole voxels changes nothing), merges the
points of each occupied voxel by averaging, and keeps for every point the voxel it fell into, so per-voxel
predictions map back to points. Voxels are ordered by (scan, x, y, z), whatever the order of the points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import VitkitError

_BITS = 20  # bits per coordinate in a packed key: grids up to 2**20 voxels per axis, 2**23 scans


def pack(batch: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """One int64 per voxel that orders voxels by (scan, x, y, z); ``coords`` must be in [0, 2**20)."""
    key = batch.long()
    for axis in range(3):
        key = (key << _BITS) | coords[:, axis].long()
    return key


def unpack(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`pack`: ``(batch, coords)``."""
    mask = (1 << _BITS) - 1
    coords = torch.stack([(key >> (_BITS * (2 - axis))) & mask for axis in range(3)], dim=1)
    return key >> (3 * _BITS), coords


@dataclass
class Voxels:
    """Occupied voxels of one stage, for a batch of scans.

    ``xyz``, ``rgb`` and ``normal`` are the signals cRSE reads: at the stem the mean of the voxel's points, after
    each down-sampling those of one representative child (the official ``GridCoordsDown``).
    """

    batch: torch.Tensor
    """int64 [V]: the scan of each voxel."""
    coords: torch.Tensor
    """int64 [V, 3]: voxel index at this stage's stride (stem voxel index // stride)."""
    stride: int
    """Voxel edge in stem voxels."""
    xyz: torch.Tensor
    """float [V, 3]: position in stem-voxel units from the scan's grid origin."""
    rgb: torch.Tensor
    """float [V, 3]: colour in [-1, 1]."""
    normal: torch.Tensor
    """float [V, 3]: unit normal (zero when unknown)."""

    def __len__(self) -> int:
        return self.batch.shape[0]

    @property
    def num_scans(self) -> int:
        return int(self.batch.max()) + 1 if len(self) else 0


@dataclass
class VoxelInput:
    """What a Swin3D model eats: stem voxels, their input features and the point-to-voxel map."""

    voxels: Voxels
    features: torch.Tensor
    """float [V, 10]: RGB, normal, offset of the voxel's mean point inside the voxel (the official ``use_offset``),
    height of that point above the scan's lowest voxel boundary in metres."""
    point_to_voxel: torch.Tensor
    """int64 [P]: the voxel of each input point."""

    def to(self, device: torch.device | str) -> "VoxelInput":
        v = self.voxels
        moved = Voxels(v.batch.to(device), v.coords.to(device), v.stride, v.xyz.to(device), v.rgb.to(device),
                       v.normal.to(device))
        return VoxelInput(moved, self.features.to(device), self.point_to_voxel.to(device))


def _scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int, counts: torch.Tensor) -> torch.Tensor:
    total = values.new_zeros(size, values.shape[1]).index_add_(0, index, values)
    return total / counts[:, None].to(values.dtype)


def voxelize(xyz: torch.Tensor, rgb: torch.Tensor, normal: torch.Tensor | None = None,
             batch: torch.Tensor | None = None, *, voxel_size: float) -> VoxelInput:
    """Sparse stem voxels of a batch of point clouds.

    ``xyz`` [P, 3] in metres, ``rgb`` [P, 3] in [-1, 1], ``normal`` [P, 3] (None: zeros), ``batch`` [P] the scan
    of each point (None: one scan).
    """
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise VitkitError(f"points must be [P, 3] positions and [P, 3] colours, got {tuple(xyz.shape)} and "
                          f"{tuple(rgb.shape)}")
    if xyz.shape[0] == 0:
        raise VitkitError("the point cloud is empty; give at least one point")
    if not torch.isfinite(xyz).all():
        raise VitkitError("the point cloud has NaN or infinite positions; drop those points first")
    normal = torch.zeros_like(xyz) if normal is None else normal
    batch = torch.zeros(xyz.shape[0], dtype=torch.long, device=xyz.device) if batch is None else batch.long()
    scaled = xyz.double() / voxel_size
    cell = torch.floor(scaled).long()
    num_scans = int(batch.max()) + 1
    origin = cell.new_full((num_scans, 3), torch.iinfo(torch.long).max)
    origin = origin.scatter_reduce(0, batch[:, None].expand(-1, 3), cell, "amin")
    cell = cell - origin[batch]
    if int(cell.max()) >= 1 << _BITS:
        raise VitkitError(f"a scan spans more than {1 << _BITS} voxels of {voxel_size} m; use a larger voxel size")
    position = (scaled - origin[batch].double())
    keys, point_to_voxel, counts = torch.unique(pack(batch, cell), return_inverse=True, return_counts=True)
    size = keys.shape[0]
    voxel_batch, coords = unpack(keys)
    mean_xyz = _scatter_mean(position, point_to_voxel, size, counts)
    offset = (mean_xyz - coords.double()).to(xyz.dtype)
    signals = torch.cat([rgb, normal], dim=1).to(xyz.dtype)
    mean_signals = _scatter_mean(signals, point_to_voxel, size, counts)
    voxels = Voxels(voxel_batch, coords, 1, mean_xyz.to(xyz.dtype), mean_signals[:, :3], mean_signals[:, 3:])
    height = (mean_xyz[:, 2:] * voxel_size).to(xyz.dtype)
    features = torch.cat([mean_signals, offset, height], dim=1)
    return VoxelInput(voxels, features, point_to_voxel)
