"""The Swin3D U-Net (Yang et al. 2023, arXiv 2304.06906) for per-point semantic segmentation.

stem (3x3x3 sparse conv + BN + ReLU) -> five stages of Swin3D blocks, each but the last followed by k-NN grid
down-sampling -> four up-sampling steps with skip links -> a per-voxel head, mapped back to the points.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import init_weights
from .blocks import KNNDownsample, Swin3DStage, Upsample
from .config import FEATURE_COLUMNS, Swin3DConfig
from .sparse import SubmanifoldConv3d
from .voxels import VoxelInput, Voxels


class Stem(nn.Module):
    """The official ``MinkConvBNRelu``: 3x3x3 sparse convolution without bias, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = SubmanifoldConv3d(in_channels, out_channels)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, feats: torch.Tensor, voxels: Voxels) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(feats, voxels)))


class Swin3DUNet(nn.Module):
    """Swin3D backbone + decoder + head; ``forward`` returns per-point logits [P, num_classes]."""

    def __init__(self, config: Swin3DConfig) -> None:
        super().__init__()
        self.config = c = config
        total = sum(c.depths)
        rates = [c.drop_path * i / max(1, total - 1) for i in range(total)]  # no tensor: builds on meta too
        self.stem = Stem(c.in_channels, c.channels[0])
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for i in range(c.num_stages):
            first = sum(c.depths[:i])
            self.stages.append(Swin3DStage(c.channels[i], c.depths[i], c.heads[i], c.window_sizes[i], c.quant_size,
                                           c.crse, c.mlp_ratio, rates[first : first + c.depths[i]]))
            if i < c.num_stages - 1:
                self.downsamples.append(KNNDownsample(c.channels[i], c.channels[i + 1],
                                                      c.down_stride if i == 0 else 2, c.knn_k))
        self.upsamples = nn.ModuleList(
            Upsample(c.channels[i], c.channels[i - 1], c.heads[i - 1], c.window_sizes[i - 1], c.quant_size, c.crse,
                     c.up_attention, c.up_k, c.mlp_ratio)
            for i in range(c.num_stages - 1, 0, -1))
        self.classifier = nn.Sequential(nn.Linear(c.channels[0], c.channels[0]), nn.BatchNorm1d(c.channels[0]),
                                        nn.ReLU(inplace=True), nn.Linear(c.channels[0], c.num_classes))
        # As the official ``init_weights``: truncated-normal Linear weights (std 0.02), zero biases; the norms keep
        # PyTorch's unit weights and zero biases. (The sparse convolutions and cRSE tables initialise themselves.)
        self.apply(init_weights)

    def forward_voxels(self, inputs: VoxelInput) -> torch.Tensor:
        """Per-voxel logits [V, num_classes] of the stem voxels."""
        voxels = inputs.voxels
        columns = FEATURE_COLUMNS[self.config.in_channels]
        features = inputs.features if len(columns) == inputs.features.shape[1] else inputs.features[:, columns]
        feats = self.stem(features, voxels)
        skips: list[tuple[torch.Tensor, Voxels]] = []
        for i, stage in enumerate(self.stages):
            feats = stage(feats, voxels)
            if i < len(self.downsamples):
                skips.append((feats, voxels))
                feats, voxels = self.downsamples[i](feats, voxels)
        for upsample in self.upsamples:
            skip, fine = skips.pop()
            feats = upsample(feats, voxels, skip, fine)
            voxels = fine
        return self.classifier(feats)

    def forward(self, inputs: VoxelInput) -> torch.Tensor:
        return self.forward_voxels(inputs)[inputs.point_to_voxel]
