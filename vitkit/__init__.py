"""vitkit: Vision Transformers for images (ViT) and video (ViViT) in PyTorch.

    >>> import vitkit
    >>> model = vitkit.create_model("vit_s16", num_classes=2)
    >>> print(vitkit.summarize_model("seed").to_table())
"""

from __future__ import annotations

from .analysis import Summary, summarize
from .errors import ConfigError, VitkitError
from .interop.load import load
from .models import (
    VideoVisionTransformer, ViTConfig, ViViTConfig, VisionTransformer, build_model, create_model, get_config,
    list_models,
)

__version__ = "0.1.0"


def summarize_model(name: str, input_size: tuple[int, ...] | None = None, batch: int = 1, **overrides) -> Summary:
    """The layer-by-layer dry run of a named model; ``input_size`` is (C, H, W), or (C, T, H, W) for video
    models, and sets the model's input size."""
    if input_size is not None:
        overrides = {**overrides, **input_overrides(get_config(name), input_size)}
    model = create_model(name, device="meta", **overrides)
    return summarize(model, (batch, *model.config.input_shape), name=name)


def input_overrides(config: ViTConfig | ViViTConfig, input_size: tuple[int, ...]) -> dict:
    """Config overrides that make a model accept inputs of ``input_size`` = (C, H, W), or (C, T, H, W) for video."""
    text = "x".join(map(str, input_size))
    if isinstance(config, ViViTConfig):
        if len(input_size) != 4:
            raise ConfigError(f"a video input size is C x T x H x W (e.g. 3x32x224x224), got {text}")
        channels, frames, height, width = input_size
        return {"in_channels": channels, "num_frames": frames, "image_size": (height, width)}
    if len(input_size) != 3:
        raise ConfigError(f"an image input size is C x H x W, got {text}")
    channels, height, width = input_size
    return {"in_channels": channels, "image_size": (height, width)}


__all__ = [
    "ConfigError", "Summary", "VideoVisionTransformer", "ViTConfig", "ViViTConfig", "VisionTransformer", "VitkitError",
    "build_model", "create_model", "get_config", "list_models", "load", "summarize", "summarize_model", "__version__",
]
