"""From scans to model batches: loading a ``--data`` source, augmentation, cropping and voxelisation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import VitkitError
from ...models.swin3d.voxels import VoxelInput, voxelize
from . import indoor_rooms
from .cloud import PointCloud, estimate_normals
from .readers import find_scans, read_scan


def load_scans(data: str, train_count: int = 32, val_count: int = 6, density: float = 300.0
               ) -> tuple[list[PointCloud], list[PointCloud]]:
    """Train and val scans of ``data``: ``indoor-rooms`` (generated) or a folder of S3DIS / ScanNet / PLY scans.

    A folder splits by name: S3DIS ``Area_5`` (the usual held-out area) or ScanNet scenes under ``val/`` are
    val; otherwise the last fifth of the scans (at least one) is val. Scans without normals get estimated ones.
    """
    if data == indoor_rooms.NAME:
        train = [_cached_room(i, density) for i in range(train_count)]
        val = [_cached_room(indoor_rooms.VAL_SEED + i, density) for i in range(val_count)]
    else:
        paths = find_scans(Path(data))
        held = [p for p in paths if "Area_5" in p.parts or "val" in p.parts]
        if not held or len(held) == len(paths):
            cut = max(1, len(paths) // 5) if len(paths) > 1 else 0
            held = paths[len(paths) - cut :] if cut else paths
        rest = [p for p in paths if p not in held] or held
        train, val = [read_scan(p) for p in rest], [read_scan(p) for p in held]
    for cloud in train + val:
        if cloud.normal is None:
            cloud.normal = estimate_normals(cloud.xyz)
        if cloud.labels is None:
            raise VitkitError(f"{cloud.name}: the scan has no labels; training and evaluation need labelled scans")
    return train, val


def _cached_room(seed: int, density: float) -> PointCloud:
    """A generated room with estimated normals, kept in ``$VITKIT_CACHE/indoor-rooms`` (default ~/.cache/vitkit)."""
    root = Path(os.environ.get("VITKIT_CACHE", Path.home() / ".cache" / "vitkit")) / indoor_rooms.NAME
    path = root / f"v1-{seed}-{density:g}.npz"
    if path.exists():
        with np.load(path) as f:
            return PointCloud(f["xyz"], f["rgb"], f["normal"], f["labels"], name=f"{indoor_rooms.NAME}/{seed}")
    room = indoor_rooms.generate_room(seed, density)
    room.normal = estimate_normals(room.xyz)
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
    np.savez(tmp, xyz=room.xyz, rgb=room.rgb, normal=room.normal, labels=room.labels)
    os.replace(tmp, path)
    return room


@dataclass
class Augment:
    """Training augmentation (the usual indoor-segmentation recipe)."""

    rotate: bool = True
    """A random rotation about the vertical axis."""
    scale: tuple[float, float] = (0.9, 1.1)
    jitter: float = 0.005
    """Standard deviation (metres) of per-point noise, clipped at 4x."""
    color_jitter: float = 0.05
    """Brightness and contrast changes, and per-point colour noise, as a fraction of the range."""
    dropout: float = 0.1
    """Fraction of points removed."""

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        keep = rng.random(len(cloud)) >= self.dropout
        cloud = cloud.subset(np.nonzero(keep)[0] if keep.any() else np.arange(len(cloud)))
        xyz, normal = cloud.xyz.astype(np.float32), cloud.normal
        if self.rotate:
            angle = rng.uniform(0, 2 * np.pi)
            c, s = np.cos(angle), np.sin(angle)
            rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)
            xyz, normal = xyz @ rot.T, normal @ rot.T
        xyz = xyz * rng.uniform(*self.scale)
        xyz = xyz + np.clip(rng.normal(0, self.jitter, xyz.shape), -4 * self.jitter, 4 * self.jitter)
        rgb = cloud.rgb.astype(np.float32)
        rgb = (rgb - 128) * rng.uniform(1 - self.color_jitter * 2, 1 + self.color_jitter * 2) + 128
        rgb = rgb + rng.uniform(-1, 1) * 255 * self.color_jitter + rng.normal(0, 255 * self.color_jitter / 2, rgb.shape)
        return PointCloud(xyz.astype(np.float32), np.clip(rgb, 0, 255).astype(np.uint8), normal.astype(np.float32),
                          cloud.labels, cloud.class_names, cloud.name)


def crop(cloud: PointCloud, size: float, rng: np.random.Generator, min_points: int = 100) -> PointCloud:
    """A random vertical column of ``size`` x ``size`` metres (all heights), centred on a random point."""
    if size <= 0:
        return cloud
    for _ in range(10):
        centre = cloud.xyz[rng.integers(len(cloud)), :2]
        inside = np.all(np.abs(cloud.xyz[:, :2] - centre) <= size / 2, axis=1)
        if inside.sum() >= min_points:
            return cloud.subset(np.nonzero(inside)[0])
    return cloud


@dataclass
class PointBatch:
    """Scans batched for a model: stem voxels for Swin3D, per-point features for the per-point baseline."""

    inputs: VoxelInput
    point_features: torch.Tensor
    """float [P, 7]: RGB in [-1, 1], normal, height above the scan's lowest point."""
    labels: torch.Tensor
    """int64 [P]; -1 is ignored."""

    def to(self, device: torch.device | str) -> "PointBatch":
        return PointBatch(self.inputs.to(device), self.point_features.to(device), self.labels.to(device))


def make_batch(clouds: list[PointCloud], voxel_size: float) -> PointBatch:
    """Concatenate ``clouds`` into one batch (the scan index of each point is its batch index)."""
    xyz = torch.from_numpy(np.concatenate([c.xyz for c in clouds]).astype(np.float32))
    rgb = torch.from_numpy(np.concatenate([c.rgb for c in clouds]).astype(np.float32) / 127.5 - 1)
    normal = torch.from_numpy(np.concatenate([c.normal for c in clouds]).astype(np.float32))
    batch = torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(clouds)])
    labels = torch.from_numpy(np.concatenate([c.labels if c.labels is not None else np.full(len(c), -1)
                                              for c in clouds]).astype(np.int64))  # -1: unknown (predict, explain)
    height = torch.from_numpy(np.concatenate([c.xyz[:, 2] - c.xyz[:, 2].min() for c in clouds]).astype(np.float32))
    features = torch.cat([rgb, normal, height[:, None]], dim=1)
    return PointBatch(voxelize(xyz, rgb, normal, batch, voxel_size=voxel_size), features, labels)
