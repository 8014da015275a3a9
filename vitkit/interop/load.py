"""``vitkit.load``: a ready model from any ViT checkpoint: a vitkit folder, a timm / Hugging Face / torchvision /
JAX file, or a Hub name.

    source file -> detect the format from its keys -> rename to vitkit's keys -> infer the config from the
    shapes -> resample the position embedding / replace the head for the requested size and classes -> model
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import VitkitError
from ..models.config import ViTConfig, to_pair
from ..models.vit import VisionTransformer, pos_embed_prefix
from ..models.video_positions import resampled_tables
from ..models.vivit import VideoVisionTransformer
from ..store import load_model
from .detect import BY_NAME, VIDEO_FORMATS, detect_format
from .files import SUFFIXES, read_checkpoint, read_sidecar
from .hf import hints_from_hf_config
from .hf_family_configs import FAMILY_MODEL_TYPES, family_config_hints
from .hub import TIMM_DEFAULT_TAGS, download, is_hub_name, timm_architecture
from .infer import infer_config
from .resample import resample_pos_embed
from .timm import architecture_hints
from .timm_eva import check_eva_source

log = logging.getLogger("vitkit")

CONFIG_METADATA_KEY = "vitkit_config"
"""The safetensors header entry where vitkit records the full config of weights it writes in other formats."""
# Inside a folder without a vitkit config.json, the first of these that exists holds the weights.
FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.npz")


@dataclass
class SourceWeights:
    """A checkpoint's weights under vitkit's key names, with what else is known about its architecture."""

    state: dict[str, torch.Tensor]
    format: str
    hints: dict[str, Any]
    """Config fields the weights' shapes cannot tell (heads, LayerNorm eps, pooling, image size)."""
    path: Path
    class_names: list[str] | None = None


def load(source: str | os.PathLike, num_classes: int | None = None, image_size: int | tuple[int, int] | None = None,
         **overrides: Any) -> nn.Module:
    """A model in eval mode on the CPU from ``source``, resized to ``image_size`` and ``num_classes`` if given.

    ``source``: a vitkit model folder, a ``.safetensors``/``.pth``/``.bin``/``.npz`` file (timm, Hugging Face,
    torchvision, JAX or vitkit, recognised from its keys), a Hugging Face model folder, or ``timm:NAME`` /
    ``hf:ORG/NAME``. ``overrides`` are config fields: ones the weights cannot show (``heads=``, ``norm_eps=``)
    or training options (``drop_path=0.1``). Where it came from is in ``model.config.extra["source"]``.
    Video models (a vitkit video folder, transformers' ViViT / VideoMAE / TimeSformer folders) take
    ``num_frames=`` as well as ``image_size``; their position tables are resampled as ``dynamic_img_size`` does.
    """
    source = str(source)
    if _is_other_vitkit_model(source):
        return _load_other_vitkit_model(source, num_classes, image_size, overrides)
    weights = read_source(source)
    if BY_NAME[weights.format].video:
        return _load_video(weights, source, num_classes, image_size, overrides)
    config = infer_config(weights.state, {**weights.hints, **overrides})
    targets = {"num_classes": num_classes, "image_size": image_size}
    target = config.replace(**overrides, **{k: v for k, v in targets.items() if v is not None})
    state = adapt_state(weights.state, config, target)
    info = {"source": source, "format": weights.format,
            "class_names": weights.class_names if target.num_classes == config.num_classes else None}
    model = VisionTransformer(target.replace(extra={**target.extra, "source": info}))
    _load_state(model, state, source, new_head=target.num_classes != config.num_classes)
    return model.eval()


def load_pretrained(name: str, num_classes: int | None = None, image_size: int | tuple[int, int] | None = None,
                    **overrides: Any) -> nn.Module:
    """The registered ViT ``name`` (vitkit's or timm's name) with timm's default pretrained weights."""
    from ..models.registry import get_spec, timm_name

    timm = timm_name(name)
    if timm is None:
        get_spec(name)  # an unknown name: the error suggests close ones
        raise VitkitError(f"no pretrained weights for {name}; pretrained=True works for the ViTs of timm "
                          f"({', '.join(TIMM_DEFAULT_TAGS)})")
    return load(f"timm:{timm}", num_classes=num_classes, image_size=image_size, **overrides)


def read_source(source: str) -> SourceWeights:
    """The weights of ``source`` (path or Hub name) renamed for vitkit, with the config hints found beside them."""
    path = download(source) if is_hub_name(source) else _weights_path(Path(source))
    checkpoint = read_checkpoint(path)
    fmt = detect_format(list(checkpoint.arrays), str(path))
    hints: dict[str, Any] = {"norm_eps": fmt.norm_eps, **fmt.hints(checkpoint.arrays)}
    sidecar = _sidecar_hints(checkpoint.sidecar)
    if CONFIG_METADATA_KEY in checkpoint.metadata:
        sidecar = {**json.loads(checkpoint.metadata[CONFIG_METADATA_KEY]), **sidecar}
    class_names = sidecar.pop("class_names", None)
    state = fmt.to_vitkit(checkpoint.arrays)
    # The name asked for tells most (timm:NAME_quickgelu loads the weights of NAME, whose config.json says NAME).
    named = architecture_hints(timm_architecture(source))
    if fmt.name == "timm-eva":  # RoPE is in no weights: known from the name, vitkit's header, or assumed
        architecture = timm_architecture(source) or (checkpoint.sidecar or {}).get("architecture")
        check_eva_source(architecture, CONFIG_METADATA_KEY in checkpoint.metadata, hints)
    return SourceWeights(state, fmt.name, {**hints, **sidecar, **named}, path, class_names)


def adapt_state(state: dict[str, torch.Tensor], source: ViTConfig, target: ViTConfig) -> dict[str, torch.Tensor]:
    """``state`` (of a ``source`` model) made to fit ``target``: position embedding resampled to the new patch
    grid, head dropped when the classes differ (each announced in one line)."""
    state = dict(state)
    if "pos_embed.weight" in state and source.grid_size != target.grid_size:
        prefix = pos_embed_prefix(source)
        state["pos_embed.weight"] = resample_pos_embed(
            state["pos_embed.weight"], target.grid_size, source.grid_size, num_prefix_tokens=prefix,
            antialias=target.pos_embed_antialias,
        )
        old, new = ("x".join(map(str, grid)) for grid in (source.grid_size, target.grid_size))
        log.warning(f"vitkit: resampled the position embedding from {old} to {new} patches (bicubic)")
    if target.num_classes != source.num_classes:
        for key in ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias"):  # head_dist: DeiT distilled
            state.pop(key, None)
        if target.num_classes:
            log.warning(f"vitkit: new {target.num_classes}-class head (the checkpoint's has {source.num_classes} "
                        "outputs); it starts untrained")
        else:
            log.warning(f"vitkit: removed the checkpoint's {source.num_classes}-class head; the model returns features")
    return state


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, new_head: bool) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        mismatch = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise VitkitError(f"{source} does not fit the inferred model: {mismatch[:300]}") from None
    missing = [key for key in missing if not (new_head and key.startswith(("head.", "head_dist.")))]
    if missing or unexpected:
        problems = [f"missing {', '.join(missing[:3])}" if missing else "",
                    f"unexpected {', '.join(unexpected[:3])}" if unexpected else ""]
        raise VitkitError(f"{source} does not fit the inferred model: {'; '.join(p for p in problems if p)}")


def _weights_path(path: Path) -> Path:
    """A file as is; in a folder, the weights file (vitkit's, or the usual names of the Hub and timm)."""
    if not path.exists():
        raise VitkitError(f"{path} does not exist (a hub model is written timm:NAME or hf:ORG/NAME)")
    if path.is_file():
        return path
    for name in FOLDER_WEIGHTS:
        if (path / name).is_file():
            return path / name
    found = sorted(p.name for p in path.iterdir() if p.suffix in SUFFIXES)
    if len(found) == 1:
        return path / found[0]
    listing = f"found {', '.join(found)}" if found else "found no .safetensors/.pth/.bin/.npz file"
    raise VitkitError(f"{path}: which weights? {listing}; pass the file's path")


def _sidecar_hints(sidecar: dict[str, Any] | None) -> dict[str, Any]:
    """Config hints from the ``config.json`` beside the weights: vitkit's, transformers' or timm's."""
    if not sidecar:
        return {}
    if sidecar.get("format") == "vitkit":
        if sidecar.get("architecture") != "VisionTransformer":
            raise VitkitError(f"a vitkit {sidecar.get('architecture')} model: load its folder, not its weights file")
        return {**sidecar["model"], "class_names": sidecar.get("class_names")}
    if sidecar.get("model_type") == "vit":
        return hints_from_hf_config(sidecar)
    if sidecar.get("model_type") in FAMILY_MODEL_TYPES:
        return family_config_hints(sidecar)
    video = next((fmt for fmt in VIDEO_FORMATS if fmt.model_type == sidecar.get("model_type")), None)
    if video is not None and video.read_config is not None:
        config, names = video.read_config(sidecar)
        return {"video_config": config, "video_model_type": video.model_type, "class_names": names}
    input_size = (sidecar.get("pretrained_cfg") or {}).get("input_size")  # timm's Hub config
    hints = architecture_hints(sidecar.get("architecture"))
    return {**hints, "image_size": tuple(input_size[-2:])} if input_size else hints


def _load_video(weights: SourceWeights, source: str, num_classes: int | None, image_size: Any,
                overrides: dict[str, Any]) -> nn.Module:
    """A transformers video classifier (ViViT, VideoMAE, TimeSformer) as vitkit's ViViT, from the ``config.json``
    beside its weights. Other clip sizes: ``dynamic_img_size=True`` (run time), not ``image_size``."""
    described = BY_NAME[weights.format].description
    if "video_config" not in weights.hints:
        raise VitkitError(f"{weights.path}: a {described} needs its config.json beside the weights")
    if weights.hints["video_model_type"] != BY_NAME[weights.format].model_type:
        raise VitkitError(f"{weights.path}: the config.json beside these {described} weights is a "
                          f"{weights.hints['video_model_type']!r} model's; put the model's own config.json there")
    config = weights.hints["video_config"]
    info = {"source": source, "format": weights.format, "class_names": weights.class_names}
    model = VideoVisionTransformer(config.replace(extra={**config.extra, "source": info}))
    _load_state(model, weights.state, source, new_head=False)
    model = resize_video(model, source, image_size, overrides)
    if num_classes is not None and num_classes != config.num_classes:
        log.warning(f"vitkit: new {num_classes}-class head (the checkpoint's has {config.num_classes})")
        model.reset_classifier(num_classes)
        model.config.extra["source"]["class_names"] = None
    return model.eval()


def resize_video(model: VideoVisionTransformer, source: str, image_size: Any, overrides: dict[str, Any]) -> nn.Module:
    """``model`` rebuilt with config ``overrides`` and ``image_size`` (e.g. another ``num_frames``): learned
    position tables resampled to the new grid as ``dynamic_img_size`` does in the forward pass (announced in one
    line); VideoMAE's fixed table is computed for it."""
    changes = {**overrides, **({"image_size": to_pair(image_size)} if image_size is not None else {})}
    target = model.config.replace(**changes)
    if target == model.config:
        return model
    resized = VideoVisionTransformer(target)
    _load_state(resized, {**model.state_dict(), **resampled_tables(model, resized)}, source, new_head=False)
    if target.grid_size != model.config.grid_size:
        old, new = ("x".join(map(str, grid)) for grid in (model.config.grid_size, target.grid_size))
        log.warning(f"vitkit: the video position embedding now covers {new} tubelets (was {old})")
    return resized.eval()


def _is_other_vitkit_model(source: str) -> bool:
    """A vitkit folder of another architecture (a video model): those load through ``store.load_model``."""
    path = Path(source)
    sidecar = read_sidecar(path) if path.is_dir() else None
    return bool(sidecar) and sidecar.get("format") == "vitkit" and sidecar.get("architecture") != "VisionTransformer"


def _load_other_vitkit_model(source: str, num_classes: int | None, image_size: Any,
                             overrides: dict[str, Any]) -> nn.Module:
    model, _ = load_model(source)
    if isinstance(model, VideoVisionTransformer):
        model = resize_video(model, source, image_size, overrides)
    elif image_size is not None and tuple(model.config.image_size) != to_pair(image_size):
        raise VitkitError(f"{source}: changing the input size is supported for ViTs and video models only")
    if num_classes is not None and num_classes != model.config.num_classes:
        log.warning(f"vitkit: new {num_classes}-class head (the checkpoint's has {model.config.num_classes})")
        model.reset_classifier(num_classes)
    return model.eval()
