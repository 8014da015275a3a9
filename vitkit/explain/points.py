"""Explaining a Swin3D segmentation: which voxels one point attended to. The point's voxel sits in exactly one
window of each block; the softmax row of that voxel (mean over heads, or one head) is spread back onto the points
of each attended voxel and drawn as a coloured point cloud from a few viewpoints, the rest of the scan grey.

    vitkit explain runs/indoor-rooms-swin3d_tiny room.ply --point 1234 --layer -1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.points.cloud import PointCloud
from ..errors import VitkitError

VIEWS = ((30, -60), (30, 30), (90, -90))
"""(elevation, azimuth) of the rendered viewpoints: two obliques and the top."""
ZOOM = 1.5
"""Half the rendered cube's edge, in multiples of the window's largest extent."""
MIN_REACH_M = 0.5


@dataclass
class PointAttention:
    """One point's window attention: ``weights[p]`` for each point of the scan (NaN outside the window)."""

    point: int
    weights: np.ndarray
    predicted: int
    block: int
    window_voxels: int


def window_attention(model: torch.nn.Module, scan: PointCloud, voxel_size: float, point: int, layer: int = -1,
                     head: int | None = None) -> PointAttention:
    """The attention of ``point``'s voxel in block ``layer`` of the first stage (the finest voxels)."""
    from ..data.points.pipeline import make_batch

    if not hasattr(model, "stages"):
        raise VitkitError(f"{type(model).__name__} has no window attention to draw; explain needs a Swin3D run")
    if not 0 <= point < len(scan):
        raise VitkitError(f"--point {point} is outside the scan (0 .. {len(scan) - 1})")
    blocks = model.stages[0].blocks
    if not -len(blocks) <= layer < len(blocks):
        raise VitkitError(f"--layer {layer}: the first stage has {len(blocks)} blocks (0 .. {len(blocks) - 1})")
    attention = blocks[layer].attn
    if head is not None and not 0 <= head < attention.heads:
        raise VitkitError(f"--head {head}: the first stage has {attention.heads} heads (0 .. {attention.heads - 1})")
    batch = make_batch([scan], voxel_size)
    attention.recorded = []
    try:
        with torch.no_grad():
            predicted = int(model(batch.inputs)[point].argmax())
        recorded = attention.recorded
    finally:
        attention.recorded = None
    voxel = int(batch.inputs.point_to_voxel[point])
    for index, mask, weights in recorded:
        hits = torch.nonzero((index == voxel) & mask)
        if len(hits):
            window, row = (int(v) for v in hits[0])
            row_weights = weights[window, :, row] if head is None else weights[window, head : head + 1, row]
            members = index[window][mask[window]]
            per_voxel = torch.full((batch.inputs.voxels.coords.shape[0],), float("nan"))
            per_voxel[members] = row_weights.mean(0)[mask[window]].float()
            per_point = per_voxel[batch.inputs.point_to_voxel].numpy()
            return PointAttention(point, per_point, predicted, layer % len(blocks), len(members))
    raise VitkitError(f"point {point}: its voxel is in no window (a bug in vitkit: please report it)")


def render(path: Path, scan: PointCloud, found: PointAttention, title: str) -> None:
    """A PNG from :data:`VIEWS` around the window: attended points coloured by weight, the scan around them grey,
    the point a red star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inside = ~np.isnan(found.weights)
    xyz = scan.xyz
    # A window is tens of centimetres in a room of metres: zoom on it, with the scan around it as context.
    low, high = xyz[inside].min(0), xyz[inside].max(0)
    centre, reach = (low + high) / 2, max(float((high - low).max()) * ZOOM, MIN_REACH_M)
    near = np.all(np.abs(xyz - centre) <= reach, axis=1) & ~inside
    figure = plt.figure(figsize=(5 * len(VIEWS), 5.4))
    for column, (elevation, azimuth) in enumerate(VIEWS, 1):
        axes = figure.add_subplot(1, len(VIEWS), column, projection="3d")
        axes.scatter(*xyz[near].T, s=1, c="lightgrey", alpha=0.4, depthshade=False)
        shown = axes.scatter(*xyz[inside].T, s=6, c=found.weights[inside], cmap="viridis", depthshade=False)
        axes.scatter(*xyz[found.point], s=150, c="red", marker="*", depthshade=False)
        for axis, middle in zip("xyz", centre):
            getattr(axes, f"set_{axis}lim")(middle - reach, middle + reach)
        axes.view_init(elev=elevation, azim=azimuth)
        axes.set_axis_off()
    figure.colorbar(shown, ax=figure.axes, shrink=0.6, label="attention weight")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
