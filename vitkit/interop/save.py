"""Writing a vitkit ViT in another library's format (``vitkit convert``).

- ``vitkit``: vitkit's model folder (``config.json`` + ``model.safetensors``).
- ``hf``: a transformers folder (``config.json`` + ``model.safetensors``) for ``ViTForImageClassification``
  (``ViTModel`` when the model has no head) ``.from_pretrained``, or for DeiT / DINOv2 / CLIP / SigLIP when the
  config has their options (``hf_family_configs.py``); for a video model, the transformers classifier
  of its kind: ``VivitForVideoClassification`` (Model 1), ``VideoMAEForVideoClassification`` (``pos_embed=
  "sincos"``) or ``TimesformerForVideoClassification`` (``divided_space_time``).
- ``timm`` / ``torchvision``: one weights file for their ``VisionTransformer``; ``.safetensors`` (default)
  or ``.pth``. The vitkit config rides in the safetensors header, so ``vitkit.load`` reads it back exactly.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from ..errors import VitkitError
from ..models.config import ViTConfig
from ..models.vivit_config import ViViTConfig
from ..store import atomic_write, atomic_write_json, save_model
from .detect import BY_NAME, Format
from .hf import hf_image_processor_json
from .hf_family_configs import hf_config_json_any
from .load import CONFIG_METADATA_KEY

TARGETS = ("vitkit", "timm", "hf", "torchvision")


def save_as(model: torch.nn.Module, fmt: str, out: str | os.PathLike, class_names: list[str] | None = None,
            preprocess: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a vitkit ViT or video model) to ``out`` in format ``fmt`` (one of :data:`TARGETS`); returns
    the path of the weights written. ``preprocess`` (a vitkit folder's entry: image_size, short_side, mean, std) is
    what eval / predict / ``--init`` read in a vitkit folder, and becomes an hf folder's
    ``preprocessor_config.json``."""
    out = Path(out)
    config: ViTConfig = model.config
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if fmt == "vitkit":
        metadata = {"class_names": class_names, "preprocess": preprocess}
        return save_model(out, model, **{k: v for k, v in metadata.items() if v}) / "model.safetensors"
    if isinstance(config, ViViTConfig) and fmt in ("timm", "torchvision"):
        raise VitkitError(f"{fmt} has no video models: convert a {config.kind} --to vitkit or --to hf "
                          "(transformers' ViViT, VideoMAE or TimeSformer)")
    if isinstance(config, ViViTConfig) and fmt == "hf":
        video = hf_video_format(config)
        weights = out / "model.safetensors"
        _write_safetensors(weights, video.from_vitkit(state, config), config)  # type: ignore[misc]
        _atomic_json(out / "config.json", video.write_config(config, class_names))  # type: ignore[misc]
        return weights
    target = BY_NAME.get(fmt) if fmt in TARGETS else None
    if target is None or target.from_vitkit is None:
        raise VitkitError(f"unknown format {fmt!r}; choose one of {', '.join(TARGETS)}")
    if target.check is not None:
        target.check(config)
    tensors = target.from_vitkit(state, config)
    if fmt == "hf":
        weights = out / "model.safetensors"
        _write_safetensors(weights, tensors, config)
        _atomic_json(out / "config.json", hf_config_json_any(config, class_names))
        if preprocess:  # what transformers.pipeline / AutoImageProcessor read
            _atomic_json(out / "preprocessor_config.json", hf_image_processor_json(preprocess))
        return weights
    weights = out if out.suffix in (".safetensors", ".pth", ".pt") else out / "model.safetensors"
    if weights.suffix == ".safetensors":
        _write_safetensors(weights, tensors, config)
    else:
        _atomic_torch_save(weights, tensors)
    return weights


def hf_video_format(config: ViViTConfig) -> Format:
    """The transformers video classifier that holds ``config``: TimeSformer for ``divided_space_time``, VideoMAE
    for the sinusoid table, else ViViT (a one-line error naming what it cannot express)."""
    name = {"divided_space_time": "timesformer"}.get(config.variant) or (
        "videomae" if config.pos_embed == "sincos" else "vivit")
    video = BY_NAME[f"transformers-{name}"]
    video.check(config)  # type: ignore[misc]
    return video


def reference_kwargs(fmt: str, config: ViTConfig) -> dict[str, Any] | None:
    """The constructor arguments of timm's / torchvision's ``VisionTransformer`` for ``config`` (else None)."""
    kwargs = BY_NAME[fmt].reference_kwargs if fmt in BY_NAME else None
    return kwargs(config) if kwargs else None


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], config: ViTConfig) -> None:
    # "format": "pt" is what transformers expects in the header.
    metadata = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(config.to_dict())}
    atomic_write(path, safetensors_bytes(tensors, metadata=metadata))


def _atomic_torch_save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    atomic_write(path, buffer.getvalue())


def _atomic_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data)
