"""Swin3D: a 3-D Swin Transformer on sparse voxels for indoor-scene segmentation, in plain PyTorch.

    >>> from vitkit.models.swin3d import voxelize
    >>> model = vitkit.create_model("swin3d_tiny", num_classes=13)
    >>> logits = model(voxelize(xyz, rgb, normal, voxel_size=model.config.voxel_size))  # [P, 13]

``voxels.py`` (points to voxels), ``sparse.py`` (sparse conv, pooling, k-NN), ``windows.py`` (grouping voxels
into windows), ``crse.py`` (the relative signal encoding), ``attention.py``, ``blocks.py`` and ``model.py``.
"""

from .config import SWIN3D_L, SWIN3D_L_RGBN, SWIN3D_S, SWIN3D_S_RGBN, SWIN3D_TINY, Swin3DConfig
from .model import Swin3DUNet
from .voxels import VoxelInput, Voxels, voxelize

__all__ = ["SWIN3D_L", "SWIN3D_L_RGBN", "SWIN3D_S", "SWIN3D_S_RGBN", "SWIN3D_TINY", "Swin3DConfig", "Swin3DUNet", "VoxelInput", "Voxels", "voxelize"]
