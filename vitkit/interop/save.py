"""Writing a vitkit ViT in another library's format (``vitkit convert``).

- ``vitkit``: vitkit's model folder (``config.json`` + ``model.safetensors``).
- ``hf``: a transformers folder (``config.json`` + ``model.safetensors``) for ``ViTForImageClassification``
  (``ViTModel`` when the model has no head) ``.from_pretrained``.
- ``timm`` / ``torchvision``: one weights file for their ``VisionTransformer``; ``.safetensors`` (default)
  or ``.pth``. The vitkit config rides in the safetensors header, so ``vitkit.load`` reads it back exactly.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save as safetensors_bytes

from ..errors import VitkitError
from ..models.config import ViTConfig
from .hf import hf_config_json, to_hf
from .load import CONFIG_METADATA_KEY
from .timm import timm_kwargs, to_timm
from .torchvision import to_torchvision, torchvision_kwargs

TARGETS = ("vitkit", "timm", "hf", "torchvision")


def save_as(model: torch.nn.Module, fmt: str, out: str | os.PathLike, class_names: list[str] | None = None) -> Path:
    """Write ``model`` (a vitkit ViT) to ``out`` in format ``fmt`` (one of :data:`TARGETS`); returns the path of
    the weights written."""
    from ..store import save_model  # here: store imports the package root, which imports this module

    out = Path(out)
    config: ViTConfig = model.config
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if fmt == "vitkit":
        return save_model(out, model, **({"class_names": class_names} if class_names else {})) / "model.safetensors"
    if fmt == "hf":
        weights = out / "model.safetensors"
        _write_safetensors(weights, to_hf(state, config), config)
        _atomic_json(out / "config.json", hf_config_json(config, class_names))
        return weights
    if fmt in ("timm", "torchvision"):
        convert, kwargs = _FILE_TARGETS[fmt]
        _check_expressible(kwargs, config, fmt)
        weights = out if out.suffix in (".safetensors", ".pth", ".pt") else out / "model.safetensors"
        tensors = convert(state, config)
        if weights.suffix == ".safetensors":
            _write_safetensors(weights, tensors, config)
        else:
            _atomic_torch_save(weights, tensors)
        return weights
    raise VitkitError(f"unknown format {fmt!r}; choose one of {', '.join(TARGETS)}")


def reference_kwargs(fmt: str, config: ViTConfig) -> dict[str, Any] | None:
    """The constructor arguments of timm's / torchvision's ``VisionTransformer`` for ``config`` (else None)."""
    return _FILE_TARGETS[fmt][1](config) if fmt in _FILE_TARGETS else None


_FILE_TARGETS: dict[str, tuple[Callable, Callable]] = {
    "timm": (to_timm, timm_kwargs),
    "torchvision": (to_torchvision, torchvision_kwargs),
}


def _check_expressible(kwargs: Callable[[ViTConfig], dict], config: ViTConfig, fmt: str) -> None:
    try:
        kwargs(config)
    except ValueError as error:  # timm_kwargs raises a plain ValueError
        raise VitkitError(f"cannot convert to {fmt}: {error}") from None


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], config: ViTConfig) -> None:
    from ..store import atomic_write

    # "format": "pt" is what transformers expects in the header.
    metadata = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(config.to_dict())}
    atomic_write(path, safetensors_bytes(tensors, metadata=metadata))


def _atomic_torch_save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from ..store import atomic_write

    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    atomic_write(path, buffer.getvalue())


def _atomic_json(path: Path, data: Any) -> None:
    from ..store import atomic_write_json

    atomic_write_json(path, data)
