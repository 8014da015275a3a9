"""The dry run of a point-cloud model (``vitkit summary swin3d_s --points 100000``).

A Swin3D model's shapes depend on where the points are (which voxels and windows are occupied), so the meta
device alone cannot tell them. The weights are built on the meta device (no memory); the voxel structure comes
from a synthetic scan of the requested size on the CPU: a generated room of ``indoor-rooms`` sampled densely
enough. Voxels, windows and window sizes are measured on it; FLOPs are counted from those shapes (matmuls,
attention with cRSE and the stem convolution; a multiply-add counts 2, as in ``summary.py``), with attention
counted over the padded windows the implementation actually computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.registry import create_model
from ..models.swin3d.crse import table_lengths
from ..models.swin3d.model import Swin3DUNet
from ..models.swin3d.sparse import downsample_voxels
from ..models.swin3d.voxels import Voxels, voxelize
from ..models.swin3d.windows import WindowPlan, plan_windows
from .summary import DryRun, render_table


@dataclass
class PointStage:
    name: str
    voxels: int
    voxel_edge_m: float
    windows: str
    """Regular / shifted window counts."""
    largest_window: int
    channels: int
    params: int
    flops: int


@dataclass
class PointSummary(DryRun):
    model: str
    points: int
    stages: list[PointStage] = field(default_factory=list)

    def to_table(self) -> str:
        head = ("stage", "voxels", "voxel", "windows (reg/shift)", "largest", "channels", "params", "GFLOPs")
        rows = [head] + [(s.name, f"{s.voxels:,}", f"{s.voxel_edge_m * 100:g} cm", s.windows,
                          str(s.largest_window or ""), str(s.channels), f"{s.params:,}", f"{s.flops / 1e9:.2f}")
                         for s in self.stages]
        rows.append(("total", "", "", "", "", "", f"{self.total_params:,}", f"{self.total_flops / 1e9:.2f}"))
        return render_table(f"{self.model}: dry run, weights on the meta device, voxels of a synthetic "
                            f"{self.points:,}-point room (indoor-rooms) on the CPU", rows, 1,
                            "FLOPs count a multiply-add as 2 (linear layers, stem convolution over 27 offsets, "
                            "window attention and cRSE over padded windows).")


def synthetic_scan(points: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A generated room with about ``points`` points: (xyz, rgb in [-1, 1], zero normals)."""
    from ..data.points.indoor_rooms import generate_room

    probe = len(generate_room(seed, density=300.0))
    room = generate_room(seed, density=300.0 * points / max(1, probe))
    xyz = torch.from_numpy(room.xyz)[:points]
    rgb = torch.from_numpy(room.rgb[:points]).float() / 127.5 - 1
    return xyz, rgb, torch.zeros_like(xyz)


def _attention_flops(plan: WindowPlan, dim: int, signals_length: int) -> int:
    flops = 0
    for bucket in plan.buckets:
        windows, k = bucket.index.shape
        flops += 4 * windows * k * k * dim  # q k^T and weights @ v over all heads
        flops += 6 * windows * k * dim * signals_length  # cRSE: q and k against the tables, binned weights @ table
    return flops


def _block_flops(voxels: int, dim: int, mlp_ratio: float, plan: WindowPlan, signals_length: int) -> int:
    return int(2 * voxels * dim * dim * (4 + 2 * mlp_ratio)) + _attention_flops(plan, dim, signals_length)


def summarize_points(name: str, points: int = 100_000, seed: int = 0, **overrides: Any) -> PointSummary:
    """The stage-by-stage dry run of a registered Swin3D model on a synthetic scan of ``points`` points."""
    model = create_model(name, device="meta", **overrides)
    assert isinstance(model, Swin3DUNet)
    c = model.config
    xyz, rgb, normal = synthetic_scan(points, seed)
    voxels: Voxels = voxelize(xyz, rgb, normal, voxel_size=c.voxel_size).voxels
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    summary = PointSummary(name, xyz.shape[0])
    summary.stages.append(PointStage("stem", len(voxels), c.voxel_size, "", 0, c.channels[0], count(model.stem),
                                     2 * 27 * len(voxels) * c.in_channels * c.channels[0]))
    grids = []
    for i, stage in enumerate(model.stages):
        size = c.window_sizes[i]
        plans = [plan_windows(voxels, size, 0), plan_windows(voxels, size, size // 2)]
        length = sum(table_lengths(c.crse, size, c.quant_size))
        flops = sum(_block_flops(len(voxels), c.channels[i], c.mlp_ratio, plans[b % 2], length)
                    for b in range(c.depths[i]))
        largest = max(b.capacity for p in plans for b in p.buckets)
        summary.stages.append(PointStage(
            f"stage {i + 1} ({c.depths[i]} blocks)", len(voxels), c.voxel_size * voxels.stride,
            f"{plans[0].num_windows:,} / {plans[1].num_windows:,}", largest, c.channels[i], count(stage), flops))
        grids.append((voxels, plans[0], length))
        if i < len(model.downsamples):
            coarse, _ = downsample_voxels(voxels, c.down_stride if i == 0 else 2)
            summary.stages.append(PointStage(f"down {i + 1}", len(coarse), c.voxel_size * coarse.stride, "", 0,
                                             c.channels[i + 1], count(model.downsamples[i]),
                                             2 * len(voxels) * c.channels[i] * c.channels[i + 1]))
            voxels = coarse
    for j, up in enumerate(model.upsamples):
        i = c.num_stages - 2 - j
        fine, plan, length = grids[i]
        flops = 2 * len(fine) * c.channels[i] ** 2 + 2 * len(grids[i + 1][0]) * c.channels[i + 1] * c.channels[i]
        if up.block is not None:
            flops += _block_flops(len(fine), c.channels[i], c.mlp_ratio, plan, length)
        summary.stages.append(PointStage(f"up {j + 1}", len(fine), c.voxel_size * fine.stride, "", 0, c.channels[i],
                                         count(up), flops))
    v0 = len(grids[0][0])
    summary.stages.append(PointStage("head", v0, c.voxel_size, "", 0, c.num_classes, count(model.classifier),
                                     2 * v0 * c.channels[0] * (c.channels[0] + c.num_classes)))
    return summary
