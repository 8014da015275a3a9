"""The model a run trains: ``--model`` with ``--model-arg`` overrides, started from scratch or from ``--init``
weights (an image ViT starting a video model is inflated into it)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..errors import VitkitError
from ..models import create_model
from .config import TrainConfig


def probe_model(config: TrainConfig) -> nn.Module:
    """``--model`` on the meta device (no memory): its config tells the data pipeline the input size."""
    try:
        return create_model(config.model, device="meta", **config.model_args)
    except (TypeError, ValueError) as error:  # e.g. --model-arg depth=x: a string where a number belongs
        if isinstance(error, VitkitError):
            raise
        raise VitkitError(f"--model-arg {config.model_args} does not fit {config.model} ({error}); "
                          "check the names and types of the values") from None


def build_model(config: TrainConfig, overrides: dict[str, Any], video: bool, device: torch.device,
                log: Callable[[str], None]) -> nn.Module:
    """The model to train on ``device``: fresh, or from ``config.init``; ``overrides`` are config fields (the
    classes and input size of the data)."""
    model = _pretrained(config, overrides, video, log) if config.init else create_model(config.model, **overrides)
    model.grad_checkpointing = config.grad_checkpointing
    if config.precision == "bf16" and device.type == "cpu":
        from ..fast import use_matmul_attention  # faster than the fused kernel in bf16 on CPU (see fast/swap.py)

        use_matmul_attention(model)
    return model.to(device)


def _pretrained(config: TrainConfig, overrides: dict[str, Any], video: bool, log: Callable[[str], None]) -> nn.Module:
    """``--init``: the weights of a run or any source ``vitkit.load`` reads; an image ViT starting a video
    model is inflated into it (the ViViT paper's initialisation, see models/inflate.py)."""
    from ..interop.load import load as load_pretrained  # lazy: the interop layer is optional here
    from ..models.inflate import inflate_from_image
    from ..models.vit import VisionTransformer

    source = load_pretrained(config.init, num_classes=overrides["num_classes"], image_size=overrides["image_size"])
    frames = overrides.get("num_frames")
    if video and frames and getattr(source.config, "num_frames", frames) != frames:  # a video model: its clip length
        source = load_pretrained(config.init, num_classes=overrides["num_classes"], image_size=overrides["image_size"],
                                 num_frames=frames)
    if not video or not isinstance(source, VisionTransformer):
        return source
    target = create_model(config.model, **overrides)
    fresh = inflate_from_image(target, source, config.inflate)  # type: ignore[arg-type]
    log(f"initialised {config.model} from the image ViT {config.init} ({config.inflate.replace('_', ' ')} "
        f"inflation); {len(fresh)} tensors have no image counterpart and keep their fresh initialisation")
    return target
