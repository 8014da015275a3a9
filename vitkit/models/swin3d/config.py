"""The configuration of a Swin3D U-Net: one dataclass, plain data, serialisable to JSON.

The defaults are Swin3D-S as the official code builds it for ScanNet (microsoft/Swin3D ``examples/segmentation.py``
and Swin3D_Task ``config/scannetv2/swin3D_RGBN_S.yaml``): five stages, stem at 2 cm voxels, a first
down-sampling by 3 and then by 2, windows of 5 then 7 voxels, cRSE on position, colour and normal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigError

SIGNALS = ("xyz", "rgb", "norm")
"""The signals cRSE can encode, in the order the official kernels concatenate them."""


FEATURE_COLUMNS = {10: tuple(range(10)), 9: tuple(range(9)), 6: (0, 1, 2, 6, 7, 8), 3: (0, 1, 2)}
"""Input features by ``in_channels``, as columns of RGB (0-2), normal (3-5), offset in the voxel (6-8) and height
above the scan's lowest point in metres (9)."""


@dataclass
class Swin3DConfig:
    """Every option of :class:`vitkit.models.swin3d.Swin3DUNet`."""

    depths: tuple[int, ...] = (2, 4, 9, 4, 4)
    """Swin3D blocks per stage; blocks alternate regular and shifted windows."""
    channels: tuple[int, ...] = (48, 96, 192, 384, 384)
    heads: tuple[int, ...] = (6, 6, 12, 24, 24)
    window_sizes: tuple[int, ...] = (5, 7, 7, 7, 7)
    """Window edge per stage, in voxels of that stage."""
    quant_size: int = 4
    """cRSE table cells per voxel for XYZ; colour and normal use twice as many per unit."""
    down_stride: int = 3
    """Stride of the first down-sampling (the later ones use 2)."""
    knn_k: int = 16
    """Neighbours max-pooled by each down-sampled voxel."""
    up_k: int = 3
    """Neighbours interpolated (inverse distance) by the decoder."""
    up_attention: bool = True
    """One Swin3D block after each up-sampling (the official ``upsample='linear_attn'``)."""
    crse: tuple[str, ...] = SIGNALS
    """Signals of the contextual relative signal encoding: a subset of ``xyz``, ``rgb``, ``norm``."""
    in_channels: int = 9
    """Voxel input features: 9 = RGB in [-1, 1], normal, offset of the point inside its voxel; 10 = those and the
    height above the scan's lowest point (cRSE sees only differences, so without it a model must infer from
    context whether a horizontal surface is a floor, a seat or a table top); 6 = RGB and offset; 3 = RGB."""
    num_classes: int = 13
    mlp_ratio: float = 4.0
    drop_path: float = 0.3
    """Stochastic depth of the last encoder block, rising linearly from 0."""
    voxel_size: float = 0.02
    """Edge of a stem voxel in metres (the official 2 cm for ScanNet, 4 cm for S3DIS)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata; not used by the model."""

    def __post_init__(self) -> None:
        for name in ("depths", "channels", "heads", "window_sizes", "crse"):
            setattr(self, name, tuple(getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        stages = len(self.depths)
        for name in ("channels", "heads", "window_sizes"):
            if len(getattr(self, name)) != stages:
                raise ConfigError(f"{name} has {len(getattr(self, name))} entries but depths has {stages}")
        for dim, heads in zip(self.channels, self.heads):
            if heads <= 0 or dim % heads:
                raise ConfigError(f"channels {dim} is not divisible by heads {heads}")
        if min(self.depths) <= 0 or min(self.window_sizes) < 2:
            raise ConfigError("every stage needs depth >= 1 and window size >= 2")
        if not self.crse or set(self.crse) - set(SIGNALS) or list(self.crse) != [s for s in SIGNALS if s in self.crse]:
            raise ConfigError(f"crse must be a non-empty ordered subset of {SIGNALS}, got {self.crse}")
        if self.in_channels not in FEATURE_COLUMNS:
            raise ConfigError(f"in_channels must be one of {sorted(FEATURE_COLUMNS)} (see FEATURE_COLUMNS), "
                              f"got {self.in_channels}")
        if self.voxel_size <= 0 or self.quant_size <= 0 or self.knn_k <= 0 or self.up_k <= 0:
            raise ConfigError("voxel_size, quant_size, knn_k and up_k must be positive")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"drop_path must be in [0, 1), got {self.drop_path}")

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def strides(self) -> tuple[int, ...]:
        """Voxel edge of each stage in stem voxels: 1, then x down_stride, then x2."""
        out = [1]
        for i in range(1, self.num_stages):
            out.append(out[-1] * (self.down_stride if i == 1 else 2))
        return tuple(out)

    def replace(self, **overrides: Any) -> "Swin3DConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown Swin3D option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("depths", "channels", "heads", "window_sizes", "crse"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Swin3DConfig":
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown Swin3D option(s) in config: {', '.join(sorted(unknown))}")
        return cls(**data)


# The paper's two sizes. ``_RGBN`` are the ScanNet fine-tuning models of Swin3D_Task (cRSE on XYZ, RGB and NORM,
# 9 inputs, a Swin3D block after each up-sampling: 28.23 M / 71.13 M parameters with 13 classes). The plain
# names are the models whose counts the official README lists (23.57 M / 60.75 M): the Structured3D-pretrained
# backbones with cRSE on XYZ and RGB, RGB inputs and the plain interpolating decoder (README: Results, Swin3D).
SWIN3D_S_RGBN = Swin3DConfig()
SWIN3D_L_RGBN = Swin3DConfig(channels=(80, 160, 320, 640, 640), heads=(10, 10, 20, 40, 40))
SWIN3D_S = SWIN3D_S_RGBN.replace(crse=("xyz", "rgb"), in_channels=3, up_attention=False)
SWIN3D_L = SWIN3D_L_RGBN.replace(crse=("xyz", "rgb"), in_channels=3, up_attention=False)
SWIN3D_TINY = Swin3DConfig(depths=(1, 1, 2, 1, 1), channels=(16, 32, 64, 64, 64), heads=(2, 2, 4, 4, 4),
                           window_sizes=(5, 5, 5, 5, 5), down_stride=2, drop_path=0.1, voxel_size=0.1,
                           in_channels=10)
