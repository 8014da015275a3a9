"""A labelled point cloud, and the S3DIS class names used by every reader and by the generated rooms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                 "bookcase", "board", "clutter")
"""The 13 classes of S3DIS, in the order of its benchmark."""


@dataclass
class PointCloud:
    """One scan: positions in metres, colours in 0..255, optional normals and per-point class indices."""

    xyz: np.ndarray
    """float32 [P, 3]."""
    rgb: np.ndarray
    """uint8 [P, 3]."""
    normal: np.ndarray | None = None
    """float32 [P, 3] unit normals, or None when the scan has none (``estimate_normals`` fills them)."""
    labels: np.ndarray | None = None
    """int64 [P] indices into ``class_names``; -1 marks unlabelled points."""
    class_names: tuple[str, ...] = S3DIS_CLASSES
    name: str = ""

    def __len__(self) -> int:
        return self.xyz.shape[0]

    def subset(self, index: np.ndarray) -> "PointCloud":
        pick = (lambda a: None if a is None else a[index])
        return PointCloud(self.xyz[index], self.rgb[index], pick(self.normal), pick(self.labels), self.class_names,
                          self.name)


def estimate_normals(xyz: np.ndarray, k: int = 16, cell: float = 0.2) -> np.ndarray:
    """float32 [P, 3]: unit normals from the covariance of each point's k nearest neighbours, oriented towards
    the scan's centre (a scanner inside the room sees surfaces from the inside)."""
    from ...models.swin3d.sparse import knn

    points = torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))
    batch = torch.zeros(points.shape[0], dtype=torch.long)
    index, _ = knn(points, batch, points, batch, min(k, points.shape[0]), cell=cell)
    neighbours = points[index]  # [P, k, 3]
    centred = neighbours - neighbours.mean(1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred
    _, vectors = torch.linalg.eigh(cov)
    normal = vectors[:, :, 0].float()
    towards = points.mean(0) - points
    normal = torch.where(((normal * towards).sum(1, keepdim=True) < 0), -normal, normal)
    return normal.numpy()
