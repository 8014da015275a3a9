"""vitkit: Vision Transformers for images (ViT) and video (ViViT) in PyTorch.

    >>> import vitkit
    >>> model = vitkit.create_model("vit_s16", num_classes=2)
    >>> print(vitkit.summarize_model("seed").to_table())
"""

from __future__ import annotations

from .analysis import Summary, summarize
from .errors import ConfigError, VitkitError
from .models import ViTConfig, VisionTransformer, build_model, create_model, get_config, list_models

__version__ = "0.1.0"


def summarize_model(name: str, input_size: tuple[int, ...] | None = None, batch: int = 1, **overrides) -> Summary:
    """The layer-by-layer dry run of a named model; ``input_size`` is (C, H, W) and sets the model's image size."""
    if input_size is not None:
        overrides = {**overrides, **input_overrides(get_config(name), input_size)}
    model = create_model(name, device="meta", **overrides)
    config = model.config
    return summarize(model, (batch, config.in_channels, *config.image_size), name=name)


def input_overrides(config: ViTConfig, input_size: tuple[int, ...]) -> dict:
    """Config overrides that make a model accept inputs of ``input_size`` = (C, H, W)."""
    if len(input_size) != 3:
        raise ConfigError(f"an image input size is C x H x W, got {'x'.join(map(str, input_size))}")
    channels, height, width = input_size
    return {"in_channels": channels, "image_size": (height, width)}


__all__ = [
    "ConfigError", "Summary", "ViTConfig", "VisionTransformer", "VitkitError", "build_model", "create_model",
    "get_config", "list_models", "summarize", "summarize_model", "__version__",
]
