"""The layers of a Swin3D U-Net: the transformer block, a stage of blocks, k-NN down-sampling and up-sampling."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import DropPath, Mlp
from .attention import WindowAttention
from .crse import voxel_signals
from .sparse import downsample_voxels, knn
from .voxels import Voxels
from .windows import WindowPlan, plan_windows


class Swin3DBlock(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + MLP(LN(x)); stochastic depth drops single voxels' branches."""

    def __init__(self, dim: int, heads: int, window_size: int, quant_size: int, signals: tuple[str, ...],
                 mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window_size, quant_size, signals)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, feats: torch.Tensor, plan: WindowPlan, signals: torch.Tensor) -> torch.Tensor:
        feats = feats + self.drop_path(self.attn(self.norm1(feats), plan, signals))
        return feats + self.drop_path(self.mlp(self.norm2(feats)))


class Swin3DStage(nn.Module):
    """Blocks on one voxel grid; even blocks use regular windows, odd blocks windows shifted by half a window."""

    def __init__(self, dim: int, depth: int, heads: int, window_size: int, quant_size: int,
                 signals: tuple[str, ...], mlp_ratio: float, drop_path: list[float]) -> None:
        super().__init__()
        self.window_size = window_size
        self.quant_size = quant_size
        self.signals = signals
        self.blocks = nn.ModuleList(
            Swin3DBlock(dim, heads, window_size, quant_size, signals, mlp_ratio, drop_path[i]) for i in range(depth))

    def plans(self, voxels: Voxels) -> list[tuple[WindowPlan, torch.Tensor]]:
        """The regular and (for two blocks or more) the shifted windows of ``voxels``, with cRSE signals."""
        out = []
        for shift in (0, self.window_size // 2)[: min(2, len(self.blocks))]:
            plan = plan_windows(voxels, self.window_size, shift)
            out.append((plan, voxel_signals(voxels, self.signals, plan.local, self.quant_size)))
        return out

    def forward(self, feats: torch.Tensor, voxels: Voxels) -> torch.Tensor:
        plans = self.plans(voxels)
        for i, block in enumerate(self.blocks):
            plan, signals = plans[i % 2]
            feats = block(feats, plan, signals)
        return feats


class KNNDownsample(nn.Module):
    """Grid pooling by ``stride``; each coarse voxel max-pools LN + Linear of its k nearest fine voxels
    (the official ``GridKNNDownsample``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, k: int = 16) -> None:
        super().__init__()
        self.stride = stride
        self.k = k
        self.norm = nn.LayerNorm(in_channels)
        self.linear = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, feats: torch.Tensor, voxels: Voxels) -> tuple[torch.Tensor, Voxels]:
        coarse, _ = downsample_voxels(voxels, self.stride)
        index, _ = knn(coarse.xyz, coarse.batch, voxels.xyz, voxels.batch, self.k, cell=coarse.stride)
        projected = self.linear(self.norm(feats))
        return projected[index].amax(dim=1), coarse


class Upsample(nn.Module):
    """Decoder step: LN + Linear of the skip features plus inverse-distance interpolation (k nearest coarse
    voxels) of LN + Linear of the coarse features, then optionally one Swin3D block on the fine grid."""

    def __init__(self, in_channels: int, out_channels: int, heads: int, window_size: int, quant_size: int,
                 signals: tuple[str, ...], attention: bool = True, k: int = 3, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.k = k
        self.linear1 = nn.Sequential(nn.LayerNorm(out_channels), nn.Linear(out_channels, out_channels))
        self.linear2 = nn.Sequential(nn.LayerNorm(in_channels), nn.Linear(in_channels, out_channels))
        # The official code gives this block a fixed stochastic depth of 0.1.
        self.block = (Swin3DStage(out_channels, 1, heads, window_size, quant_size, signals, mlp_ratio, [0.1])
                      if attention else None)

    def forward(self, feats: torch.Tensor, voxels: Voxels, skip: torch.Tensor, fine: Voxels) -> torch.Tensor:
        index, dist = knn(fine.xyz, fine.batch, voxels.xyz, voxels.batch, self.k, cell=voxels.stride)
        weight = 1.0 / (dist + 1e-8)
        weight = weight / weight.sum(dim=1, keepdim=True)
        coarse = self.linear2(feats)
        out = self.linear1(skip) + (coarse[index] * weight[:, :, None]).sum(dim=1)
        return self.block(out, fine) if self.block is not None else out
