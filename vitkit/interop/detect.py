"""Which library wrote a checkpoint, recognised from its keys, and how to turn it into vitkit weights.

Each format is a row: a key pattern only that library's ViT has, the converter to vitkit names, what the
original keys tell about the config, and the LayerNorm eps that library uses (weights cannot show it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import VitkitError
from .hf import from_hf
from .jax_npz import from_jax, jax_hints
from .timm import from_timm, timm_hints
from .torchvision import from_torchvision


def _from_vitkit(state: dict[str, Any]) -> dict[str, Any]:
    return dict(state)


def _no_hints(state: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Format:
    """A checkpoint layout vitkit reads."""

    name: str
    description: str
    signature: str
    """A regular expression that some key of this format, and of no other, matches."""
    to_vitkit: Callable[[dict[str, Any]], dict[str, Any]]
    hints: Callable[[dict[str, Any]], dict[str, Any]]
    """Config fields the original keys tell and the renamed weights do not (pooling, heads)."""
    norm_eps: float


# First match wins: vitkit's names differ from timm's only in `cls_token.token` / `pos_embed.weight`.
FORMATS = [
    Format("jax", "JAX/Flax ViT (.npz)", r"(?:opt/target/|params/(?:img/)?)?embedding/kernel", from_jax,
           jax_hints, 1e-6),
    Format("hf", "Hugging Face transformers ViT", r"(?:vit\.)?embeddings\.patch_embeddings\.projection\.weight",
           from_hf, _no_hints, 1e-12),
    Format("torchvision", "torchvision ViT", r"conv_proj\.weight|encoder\.pos_embedding", from_torchvision,
           _no_hints, 1e-6),
    Format("vitkit", "vitkit ViT", r"cls_token\.token|pos_embed\.weight", _from_vitkit, _no_hints, 1e-6),
    Format("timm", "timm VisionTransformer", r"patch_embed\.proj\.weight", from_timm, timm_hints, 1e-6),
]


def detect_format(keys: list[str], source: str) -> Format:
    """The format whose signature one of ``keys`` matches, or a one-line error naming what was found."""
    for fmt in FORMATS:
        pattern = re.compile(f"^{fmt.signature}$")
        if any(pattern.match(key) for key in keys):
            return fmt
    shown = ", ".join(keys[:3]) + (f" ... ({len(keys)} keys)" if len(keys) > 3 else "")
    known = ", ".join(fmt.description for fmt in FORMATS)
    raise VitkitError(f"{source} is not a ViT checkpoint vitkit knows (keys: {shown}); it reads {known}")
