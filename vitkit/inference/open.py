"""``vitkit.open``: the one way to open a model for inference, whatever it is. eval, predict, explain, export,
serve and ``vitkit.pipeline`` all open models here.

    source -> a vitkit model folder (a training run)        -> its weights, preprocessing and class names
           -> a registered model name (``vit_s16``)          -> random weights, with a warning
           -> anything ``vitkit.load`` reads (timm / HF / torchvision / JAX files and folders, timm:NAME, hf:ORG/NAME)
    -> int8 / token merging when asked -> eval mode, on the device -> :class:`OpenedModel`

A timm or transformers checkpoint uses the mean, std and crop fraction its files record (timm's
``pretrained_cfg``, transformers' ``preprocessor_config.json``; see interop/normalisation.py). A model without
any gets timm's evaluation defaults for its size: shorter side to size / 0.875, centre crop, mean and std 0.5
(the original ViT weights' normalisation).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..data.pipeline import DEFAULT_CROP_PCT, Preprocess
from ..data.video import ClipSampler
from ..data.video_preprocess import VideoPreprocess, video_preprocess
from ..errors import VitkitError
from .device import resolve_device

log = logging.getLogger("vitkit")

DEFAULT_MEAN = (0.5, 0.5, 0.5)  # the original ViT weights' normalisation
DEFAULT_STD = (0.5, 0.5, 0.5)

AnyPreprocess = Union[Preprocess, VideoPreprocess]


@dataclass
class OpenedModel:
    """A model ready for inference and everything needed to feed it."""

    model: nn.Module
    """In eval mode, on :attr:`device`."""
    preprocess: AnyPreprocess
    """``Preprocess`` (images) or ``VideoPreprocess`` (clips): how an input becomes the model's input."""
    class_names: list[str]
    """One name per output (``"0"``, ``"1"``, ... when the source names none)."""
    kind: str
    """``image`` or ``video``."""
    device: torch.device
    name: str
    """For display: the folder's name (with the trained architecture), or the source as given."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The ``config.json`` of a vitkit model folder (empty for other sources)."""

    @property
    def is_video(self) -> bool:
        return self.kind == "video"


def open_model(source: str | os.PathLike, device: str | torch.device = "auto", *, int8: bool = False,
               merge: int | list[int] = 0) -> OpenedModel:
    """Open ``source`` for inference: a vitkit model folder (a run), a registered model name (random weights,
    with a warning), or anything :func:`vitkit.load` reads. ``device``: auto, cpu, cuda, cuda:N or mps.
    ``int8``: int8 Linear layers (CPU only); ``merge``: token merging, R token pairs per block (approximate)."""
    target = resolve_device(device, int8=int8)  # before loading: a bad device costs no loading time
    model, meta, name = _load(str(source))
    preprocess = default_preprocess(model.config, meta)
    names = list(meta.get("class_names") or []) or [str(i) for i in range(model.config.num_classes)]
    if merge:
        from ..fast.merge import use_token_merging

        use_token_merging(model, merge)
    if int8:
        from ..fast import quantize_int8

        model = quantize_int8(model)
    kind = "video" if isinstance(preprocess, VideoPreprocess) else "image"
    return OpenedModel(model.to(target).eval(), preprocess, names, kind, target, name, meta)


def _load(source: str) -> tuple[nn.Module, dict[str, Any], str]:
    """(model on the CPU, config.json or {} with the class names, display name)."""
    from ..models import create_model, list_models

    if is_vitkit_folder(Path(source)):
        from ..store import load_model

        model, meta = load_model(source)
        trained = (meta.get("train") or {}).get("model")
        return model, meta, Path(source).resolve().name + (f" ({trained})" if trained else "")
    if not Path(source).exists() and source in list_models():
        log.warning(f"vitkit: {source} is a model name, so its weights are random; pass a trained model folder "
                    "or a checkpoint for meaningful outputs")
        return create_model(source), {}, source
    from ..interop.hub import is_hub_name
    from ..interop.load import load

    if not Path(source).exists() and not is_hub_name(source):
        raise VitkitError(f"{source} does not exist; give a run or model folder, a checkpoint file, timm:NAME, "
                          "hf:ORG/NAME or a model name (see `vitkit models`)")
    model = load(source)
    names = (model.config.extra.get("source") or {}).get("class_names")
    return model, {**({"class_names": names} if names else {}), **_recorded_preprocess(source, model.config)}, source


def _recorded_preprocess(source: str, config: Any) -> dict[str, Any]:
    """``{"preprocess": ...}`` from the mean, std and crop a timm / transformers checkpoint records (see
    interop/normalisation.py), or {} (images of a square size only; the defaults apply then)."""
    from ..interop.normalisation import checkpoint_normalisation

    size = config.image_size
    if hasattr(config, "num_frames") or isinstance(size, int) or size[0] != size[1]:
        return {}
    found = checkpoint_normalisation(source)
    return {"preprocess": found.preprocess(int(size[0]))} if found else {}


def is_vitkit_folder(path: Path) -> bool:
    """A folder whose config.json is vitkit's (a Hugging Face folder also has one). A config.json that is not
    JSON counts too, so that opening it reports the damaged file."""
    file = path / "config.json"
    if not file.is_file():
        return False
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return True
    return isinstance(data, dict) and data.get("format") == "vitkit"


def default_preprocess(config: Any, meta: dict[str, Any]) -> AnyPreprocess:
    """How a model wants its inputs: the ``preprocess`` saved in its config.json, else timm's evaluation
    defaults for its size (clips: the model's frames, uniform sampling)."""
    saved = meta.get("preprocess") or {}
    if hasattr(config, "num_frames"):  # a video model
        side = _square_side(config, "clips")
        if saved.get("task") != "video":
            saved = video_preprocess(ClipSampler(config.num_frames, size=side), round(side / DEFAULT_CROP_PCT))
        prep = VideoPreprocess.from_dict(saved)
        if (prep.sampler.num_frames, prep.sampler.size) != (config.num_frames, side):
            raise VitkitError(f"config.json's preprocess cuts clips of {prep.sampler.num_frames} frames x "
                              f"{prep.sampler.size} px, but the model takes {config.num_frames} x {side}")
        return prep
    if saved:
        return Preprocess.from_dict(saved)
    side = _square_side(config, "images")
    return Preprocess(side, round(side / DEFAULT_CROP_PCT), DEFAULT_MEAN, DEFAULT_STD)


def _square_side(config: Any, what: str) -> int:
    size = config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    if height != width:
        raise VitkitError(f"vitkit center-crops square {what}, but this model takes {height}x{width}; "
                          "save it with a preprocess entry in its config.json")
    return int(height)
