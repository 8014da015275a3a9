"""Sparse-voxel operations in plain PyTorch: a 3x3x3 convolution, grid pooling and k-nearest neighbours.

They stand in for MinkowskiEngine and the official CUDA k-NN: voxels are found through sorted int64 keys and
``torch.searchsorted``, neighbours through chunked distance matrices, so memory stays linear in the voxel count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .voxels import Voxels, pack, unpack


class SubmanifoldConv3d(nn.Module):
    """A 3x3x3 sparse convolution whose outputs sit on the input voxels (MinkowskiConvolution, stride 1, no bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(kernel_size**3, in_channels, out_channels))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(kernel_size**3 * in_channels))

    def forward(self, feats: torch.Tensor, voxels: Voxels) -> torch.Tensor:
        radius = self.kernel_size // 2
        keys = pack(voxels.batch, voxels.coords + radius)  # shifted so that every neighbour is >= 0
        sorted_keys, order = torch.sort(keys)
        out = feats.new_zeros(feats.shape[0], self.weight.shape[2])
        span = torch.arange(-radius, radius + 1, device=feats.device)
        offsets = torch.cartesian_prod(span, span, span)
        for k, offset in enumerate(offsets):
            wanted = pack(voxels.batch, voxels.coords + radius + offset)
            pos = torch.searchsorted(sorted_keys, wanted).clamp_(max=keys.shape[0] - 1)
            found = sorted_keys[pos] == wanted
            src = order[pos]
            out = out + torch.where(found[:, None], feats[src], 0.0) @ self.weight[k]
        return out


def grid_cells(voxels: Voxels, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The occupied cells of a grid ``stride`` times coarser: ``(batch, coords, cell of each voxel)``."""
    keys, inverse = torch.unique(pack(voxels.batch, torch.div(voxels.coords, stride, rounding_mode="floor")),
                                 return_inverse=True)
    batch, coords = unpack(keys)
    return batch, coords, inverse


def downsample_voxels(voxels: Voxels, stride: int) -> tuple[Voxels, torch.Tensor]:
    """Voxels ``stride`` times coarser, and for each the index of its representative child.

    As the official ``GridCoordsDown``: the representative is the child nearest to the mean of the cell's
    children, in the joint space of position (voxel units), colour and normal; ties go to the lowest index.
    """
    batch, coords, cell = grid_cells(voxels, stride)
    cells = batch.shape[0]
    signals = torch.cat([voxels.xyz, voxels.rgb, voxels.normal], dim=1)
    counts = torch.bincount(cell, minlength=cells).to(signals.dtype)
    mean = signals.new_zeros(cells, signals.shape[1]).index_add_(0, cell, signals) / counts[:, None]
    dist = (signals - mean[cell]).square().sum(1)
    best = dist.new_full((cells,), math.inf).scatter_reduce(0, cell, dist, "amin")
    index = torch.arange(len(voxels), device=dist.device)
    candidate = torch.where(dist == best[cell], index, len(voxels))
    rep = index.new_full((cells,), len(voxels)).scatter_reduce(0, cell, candidate, "amin")
    down = Voxels(batch, coords, voxels.stride * stride, voxels.xyz[rep], voxels.rgb[rep], voxels.normal[rep])
    return down, rep


def knn(query: torch.Tensor, query_batch: torch.Tensor, source: torch.Tensor, source_batch: torch.Tensor,
        k: int, cell: float = 0.0, budget: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest source points of each query point within its own scan: ``(index [Q, k], distance [Q, k])``.

    Exact. With ``cell`` > 0, candidates come from the 3x3x3 grid cells of edge ``cell`` around each query: a
    k-th candidate no farther than ``cell`` proves the answer, since every point outside the block is farther.
    Queries without that proof try cells twice and four times as large, then (as all queries when ``cell`` is
    0) distance matrices of at most ``budget`` entries at a time. A scan with fewer than ``k`` source points repeats its nearest one.
    """
    index = torch.zeros(query.shape[0], k, dtype=torch.long, device=query.device)
    dist = torch.zeros(query.shape[0], k, dtype=query.dtype, device=query.device)
    todo = torch.arange(query.shape[0], device=query.device)
    for attempt in range(3 if cell > 0 and source.shape[0] >= k else 0):  # cells of edge cell, 2 cell, 4 cell
        if not todo.numel():
            break
        found_index, found_dist, proven = _grid_knn(query[todo], query_batch[todo], source, source_batch, k,
                                                    cell * 2**attempt, budget)
        index[todo[proven]], dist[todo[proven]] = found_index[proven], found_dist[proven]
        todo = todo[~proven]
    for scan in torch.unique(query_batch[todo]).tolist():
        q_idx = todo[query_batch[todo] == scan]
        s_idx = torch.nonzero(source_batch == scan).squeeze(1)
        src = source[s_idx]
        take = min(k, s_idx.shape[0])
        chunk = max(1, budget // max(1, s_idx.shape[0]))
        for start in range(0, q_idx.shape[0], chunk):
            rows = q_idx[start : start + chunk]
            d = torch.cdist(query[rows], src, compute_mode="donot_use_mm_for_euclid_dist")
            best, arg = torch.topk(d, take, dim=1, largest=False)
            if take < k:
                best = torch.cat([best, best[:, :1].expand(-1, k - take)], dim=1)
                arg = torch.cat([arg, arg[:, :1].expand(-1, k - take)], dim=1)
            index[rows] = s_idx[arg]
            dist[rows] = best
    return index, dist


def _grid_knn(query: torch.Tensor, query_batch: torch.Tensor, source: torch.Tensor, source_batch: torch.Tensor,
              k: int, cell: float, budget: int = 1 << 22) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-NN among the sources in the 27 grid cells around each query; ``proven`` marks the exact answers.

    At most about ``budget`` (query, candidate) pairs at a time: a dense scan (real S3DIS rooms hold thousands of
    points per 0.2 m cell) is split into halves of its queries, recursively."""
    src_cell = torch.floor(source / cell).long() + 1  # +1: the neighbour cells of cell 0 stay >= 0
    keys, order = torch.sort(pack(source_batch, src_cell))
    q_cell = torch.floor(query / cell).long() + 1
    span = torch.arange(-1, 2, device=query.device)
    offsets = torch.cartesian_prod(span, span, span)  # [27, 3]
    wanted = pack(query_batch.repeat_interleave(27), (q_cell[:, None, :] + offsets).reshape(-1, 3))
    first = torch.searchsorted(keys, wanted)
    counts = torch.searchsorted(keys, wanted, right=True) - first  # [Q * 27]
    per_query = counts.view(-1, 27).sum(1)
    width = max(k, int(per_query.max()))
    if query.shape[0] > 1 and query.shape[0] * width > budget:
        half = query.shape[0] // 2
        parts = [_grid_knn(query[rows], query_batch[rows], source, source_batch, k, cell, budget)
                 for rows in (slice(0, half), slice(half, None))]
        return tuple(torch.cat(part) for part in zip(*parts))  # type: ignore[return-value]
    pair_query = torch.repeat_interleave(torch.arange(wanted.shape[0], device=query.device) // 27, counts)
    range_start = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    pair_source = order[torch.repeat_interleave(first, counts) + torch.arange(pair_query.shape[0],
                                                                                device=query.device) - range_start]
    query_start = torch.cumsum(per_query, 0) - per_query
    column = torch.arange(pair_query.shape[0], device=query.device) - query_start[pair_query]
    d = torch.full((query.shape[0], width), float("inf"), dtype=query.dtype, device=query.device)
    d[pair_query, column] = (query[pair_query] - source[pair_source]).square().sum(1).sqrt()
    candidates = torch.zeros(query.shape[0], width, dtype=torch.long, device=query.device)
    candidates[pair_query, column] = pair_source
    best, arg = torch.topk(d, k, dim=1, largest=False)
    return candidates.gather(1, arg), best, best[:, -1] <= cell
