"""transformers ``VivitForVideoClassification`` weights and config <-> vitkit's ViViT Model 1 (spatio-temporal).

transformers' ViViT is Model 1 with a [CLS] token, tubelet embedding and pre-norm blocks, and its encoder is its
ViT's under the prefix ``vivit.``: the key map is the Hugging Face ViT's (``hf.py``), q, k and v fused the same
way. Its default activation ``gelu_fast`` is the tanh approximation of GELU, while vitkit uses the exact GELU:
only folders saved with ``hidden_act="gelu"`` load (the two differ by about 1e-3).
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.vivit_config import ViViTConfig
from .hf import ENCODER_PAIRS, class_names_from, with_prefix
from .keymap import KeyMap, fuse_qkv, split_qkv, unexpressible
from .transformers_video import shared_fields, shared_kwargs, video_config_json

KEYMAP = KeyMap("transformers ViViT", ENCODER_PAIRS, prefix="vivit.", dropped=["pooler.dense.{p}"])


def from_transformers_vivit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ViViT state dict (Hub or in-memory layout) renamed for a vitkit ``spatiotemporal`` ViViT
    with ``pool="cls"``."""
    return fuse_qkv(KEYMAP.to_vitkit(state))


def to_transformers_vivit(state: dict[str, torch.Tensor], config: ViViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit ViViT Model 1 state dict in the Hub layout of ``VivitForVideoClassification``."""
    check_transformers_vivit(config)
    return with_prefix(KEYMAP.from_vitkit(split_qkv(state)), "vivit.")


def check_transformers_vivit(config: ViViTConfig) -> None:
    """A one-line error if transformers' ViViT cannot express ``config``."""
    unexpressible("transformers' ViViT", {
        f"Model {config.variant!r}": config.variant != "spatiotemporal",
        "mean pooling": config.pool != "cls",
        "no head": not config.num_classes,
        f"position embedding {config.pos_embed!r}": config.pos_embed != "learned",
        "no key bias (key_bias=False)": not config.key_bias,
    })


def transformers_vivit_kwargs(config: ViViTConfig) -> dict[str, Any]:
    """Arguments for ``transformers.VivitConfig`` that build the same architecture as ``config``."""
    check_transformers_vivit(config)
    return shared_kwargs(config) | dict(tubelet_size=list(config.tubelet_size), qkv_bias=config.qkv_bias)


def transformers_vivit_config_json(config: ViViTConfig, class_names: list[str] | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``VivitForVideoClassification`` for ``config``."""
    return video_config_json(transformers_vivit_kwargs(config), "vivit", "VivitForVideoClassification", class_names)


def vivit_config_from_transformers(data: dict[str, Any]) -> tuple[ViViTConfig, list[str] | None]:
    """The ViViT config (and class names) of a transformers ViViT ``config.json``."""
    config = ViViTConfig(variant="spatiotemporal", pool="cls", image_size=data.get("image_size", 224),
                         tubelet_size=data.get("tubelet_size", (2, 16, 16)), qkv_bias=data.get("qkv_bias", True),
                         **shared_fields(data, "ViViT", "gelu_fast"))
    return config, class_names_from(data)
