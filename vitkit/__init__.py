"""vitkit: Vision Transformers for images (ViT) and video (ViViT) in PyTorch.

    >>> import vitkit
    >>> model = vitkit.create_model("vit_s16", num_classes=2)
    >>> print(vitkit.summarize_model("seed").to_table())
"""

from __future__ import annotations

from ._version import __version__
from .analysis import Summary, summarize
from .analysis.summary import input_overrides, summarize_model
from .errors import ConfigError, VitkitError
from .interop.load import load
from .models import (
    VideoVisionTransformer, ViTConfig, ViViTConfig, VisionTransformer, build_model, create_model, get_config,
    list_models,
)


__all__ = [
    "ConfigError", "Summary", "VideoVisionTransformer", "ViTConfig", "ViViTConfig", "VisionTransformer", "VitkitError",
    "build_model", "create_model", "get_config", "list_models", "load", "summarize", "summarize_model", "__version__",
]
