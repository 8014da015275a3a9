"""The registered Swin3D names (``vitkit.create_model("swin3d_s", num_classes=13)``)."""

from __future__ import annotations

from typing import Any, Callable

from .config import SWIN3D_L, SWIN3D_L_RGBN, SWIN3D_S, SWIN3D_S_RGBN, SWIN3D_TINY
from .model import Swin3DUNet

MODELS = {
    "swin3d_s": (SWIN3D_S, "Swin3D-S as the official README counts it (23.57 M): cRSE XYZ+RGB, RGB input"),
    "swin3d_l": (SWIN3D_L, "Swin3D-L as the official README counts it (60.75 M): cRSE XYZ+RGB, RGB input"),
    "swin3d_s_rgbn": (SWIN3D_S_RGBN, "Swin3D-S for ScanNet: cRSE XYZ+RGB+NORM, 9 inputs, attention decoder"),
    "swin3d_l_rgbn": (SWIN3D_L_RGBN, "Swin3D-L for ScanNet: cRSE XYZ+RGB+NORM, 9 inputs, attention decoder"),
    "swin3d_tiny": (SWIN3D_TINY, "a CPU-sized Swin3D (0.8 M): 10 cm voxels, windows of 5, for the indoor-rooms demo"),
}


def register_swin3d(register: Callable[[str, Any, Callable, str], None]) -> None:
    """Add the Swin3D names through the model registry's ``register``."""
    for name, (config, description) in MODELS.items():
        register(name, config, Swin3DUNet, description)
