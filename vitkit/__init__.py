"""vitkit: Vision Transformers for images (ViT) and video (ViViT) in PyTorch.

    >>> import vitkit
    >>> model = vitkit.create_model("vit_s16", num_classes=2)
    >>> print(vitkit.summarize_model("seed").to_table())
    >>> clf = vitkit.pipeline("runs/pets")              # any run, model folder, checkpoint or model name
    >>> clf(["cat.jpg", pil_image])                     # top classes per input
    >>> opened = vitkit.open("runs/pets", device="auto") # model, preprocessing, class names, image or video
"""

from __future__ import annotations

from ._version import __version__
from .analysis import Summary, summarize
from .analysis.summary import summarize_model
from .errors import ConfigError, VitkitError
from .inference import OpenedModel, pipeline, transforms
from .inference import open_model as open  # noqa: A001 (vitkit.open, as in PIL.Image.open)
from .interop.load import load
from .models import (
    VideoVisionTransformer, ViTConfig, ViViTConfig, VisionTransformer, build_model, create_model, get_config,
    list_models,
)


__all__ = [
    "ConfigError", "OpenedModel", "Summary", "VideoVisionTransformer", "ViTConfig", "ViViTConfig", "VisionTransformer",
    "VitkitError", "build_model", "create_model", "get_config", "list_models", "load", "open", "pipeline", "summarize",
    "summarize_model", "transforms", "__version__",
]
