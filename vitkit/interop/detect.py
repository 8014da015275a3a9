"""The checkpoint formats vitkit reads and writes, one :class:`Format` per library, and which one a file is.

Each format is a row: a key pattern only that library's checkpoints have, the converters from and to vitkit's
names (both derived from one key map, see ``keymap.py``), the check of whether the library can hold a config,
what the original keys tell about the config, and the LayerNorm eps that library uses (weights cannot show it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import VitkitError
from .hf_family_configs import check_hf_any, hf_key_hints, read_hf, write_hf
from .jax_npz import from_jax, jax_hints
from .timm import from_timm, timm_hints
from .timm_eva import SIGNATURE as EVA_SIGNATURE
from .timm_eva import check_timm_file, eva_hints, from_timm_eva, timm_reference_kwargs, to_timm_file
from .torchvision import check_torchvision, from_torchvision, to_torchvision, torchvision_kwargs
from .transformers_timesformer import (check_transformers_timesformer, from_transformers_timesformer,
                                       timesformer_config_from_transformers, to_transformers_timesformer,
                                       transformers_timesformer_config_json)
from .transformers_videomae import (check_transformers_videomae, from_transformers_videomae,
                                    to_transformers_videomae, transformers_videomae_config_json,
                                    videomae_config_from_transformers)
from .transformers_vivit import (check_transformers_vivit, from_transformers_vivit, to_transformers_vivit,
                                 transformers_vivit_config_json, vivit_config_from_transformers)


def _same(state: dict[str, Any], *config: Any) -> dict[str, Any]:
    return dict(state)


def _no_hints(state: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Format:
    """A checkpoint layout: how to recognise it, read it, and (where vitkit writes it) write it."""

    name: str
    description: str
    signature: str
    """A regular expression that some key of this format, and of no other, matches."""
    to_vitkit: Callable[[dict[str, Any]], dict[str, Any]]
    hints: Callable[[dict[str, Any]], dict[str, Any]] = _no_hints
    """Config fields the original keys tell and the renamed weights do not (pooling, heads)."""
    norm_eps: float = 1e-6
    video: bool = False
    """Whether the checkpoint is a video model (a ViViT)."""
    from_vitkit: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None
    """vitkit weights (and their config) under this library's names; None where vitkit does not write it."""
    check: Callable[[Any], None] | None = None
    """A one-line error if this library cannot express a config."""
    reference_kwargs: Callable[[Any], dict[str, Any]] | None = None
    """The library model's constructor arguments for a config (timm's and torchvision's ``VisionTransformer``)."""
    model_type: str = ""
    """A transformers video model's ``model_type`` (its ``config.json``, read by ``read_config``)."""
    read_config: Callable[[dict[str, Any]], tuple[Any, list[str] | None]] | None = None
    """A video model's config and class names from its transformers ``config.json``."""
    write_config: Callable[[Any, list[str] | None], dict[str, Any]] | None = None
    """The transformers ``config.json`` of a video model (``--to hf``)."""


def _transformers_video(name: str, model_type: str, prefix: str, read: Callable, write: Callable, check: Callable,
                        read_config: Callable, write_config: Callable) -> Format:
    """The Format of one of transformers' video classifiers: weights under ``prefix``, a ``config.json``."""
    signature = re.escape(prefix) + r"embeddings\.patch_embeddings\.projection\.weight"
    return Format(f"transformers-{model_type}", f"transformers {name}", signature, read, video=True,
                  from_vitkit=write, check=check, model_type=model_type, read_config=read_config,
                  write_config=write_config)


VIDEO_FORMATS = [
    _transformers_video("ViViT", "vivit", "vivit.", from_transformers_vivit, to_transformers_vivit,
                        check_transformers_vivit, vivit_config_from_transformers, transformers_vivit_config_json),
    _transformers_video("VideoMAE", "videomae", "videomae.", from_transformers_videomae, to_transformers_videomae,
                        check_transformers_videomae, videomae_config_from_transformers,
                        transformers_videomae_config_json),
    _transformers_video("TimeSformer", "timesformer", "timesformer.", from_transformers_timesformer,
                        to_transformers_timesformer, check_transformers_timesformer,
                        timesformer_config_from_transformers, transformers_timesformer_config_json),
]


# First match wins: vitkit's names differ from timm's only in `cls_token.token` / `pos_embed.weight`.
FORMATS = [
    Format("jax", "JAX/Flax ViT (.npz)", r"(?:opt/target/|params/(?:img/)?)?embedding/kernel", from_jax,
           jax_hints),
    *VIDEO_FORMATS,
    Format("hf", "Hugging Face transformers ViT / DeiT / DINOv2 / CLIP / SigLIP",
           r"(?:vit\.|deit\.|dinov2\.|dinov2_with_registers\.)?embeddings\.patch_embeddings\.projection\.weight"
           r"|(?:vision_model\.)?embeddings\.patch_embedding\.weight",
           read_hf, hf_key_hints, norm_eps=1e-12, from_vitkit=write_hf, check=check_hf_any),
    Format("torchvision", "torchvision ViT", r"conv_proj\.weight|encoder\.pos_embedding", from_torchvision,
           from_vitkit=to_torchvision, check=check_torchvision, reference_kwargs=torchvision_kwargs),
    Format("vitkit", "vitkit ViT", r"cls_token\.token|pos_embed\.weight", _same, from_vitkit=_same),
    Format("timm-eva", "timm Eva (EVA-02)", EVA_SIGNATURE, from_timm_eva, eva_hints, from_vitkit=to_timm_file,
           check=check_timm_file, reference_kwargs=timm_reference_kwargs),
    Format("timm", "timm VisionTransformer", r"patch_embed\.proj\.weight", from_timm, timm_hints,
           from_vitkit=to_timm_file, check=check_timm_file, reference_kwargs=timm_reference_kwargs),
]
BY_NAME = {fmt.name: fmt for fmt in FORMATS}


def detect_format(keys: list[str], source: str) -> Format:
    """The format whose signature one of ``keys`` matches, or a one-line error naming what was found."""
    for fmt in FORMATS:
        pattern = re.compile(f"^{fmt.signature}$")
        if any(pattern.match(key) for key in keys):
            return fmt
    shown = ", ".join(keys[:3]) + (f" ... ({len(keys)} keys)" if len(keys) > 3 else "")
    known = ", ".join(fmt.description for fmt in FORMATS)
    raise VitkitError(f"{source} is not a ViT checkpoint vitkit knows (keys: {shown}); it reads {known}")
