"""transformers ``TimesformerForVideoClassification`` weights and config <-> vitkit's ViViT with
``variant="divided_space_time"`` (TimeSformer, Bertasius et al. 2021; see ``models/divided.py``).

Each frame is cut into patches by a Conv2d (vitkit: a Conv3d over 1 x p x p tubelets, the same kernel with a
time axis of 1). transformers orders the patch tokens position-major and vitkit frame-major; attention does not
see the order, and the position tables are the same (one frame's table with [CLS], one vector per frame). Only
``attention_type="divided_space_time"`` (the published models) is read.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError
from ..models.base import to_pair
from ..models.vivit_config import ViViTConfig
from .hf import class_names_from, with_prefix
from .keymap import KeyMap, unexpressible
from .transformers_video import shared_fields, shared_kwargs, video_config_json

_LAYER = "encoder.layer.{n}"
KEYMAP = KeyMap("transformers TimeSformer", [
    ("embeddings.cls_token", "cls_token.token"),
    ("embeddings.position_embeddings", "pos_embed.weight"),
    ("embeddings.time_embeddings", "temporal_pos_embed.weight"),
    ("embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    *[(f"{_LAYER}.{theirs}.{{p}}", f"blocks.{{n}}.{ours}.{{p}}") for theirs, ours in [
        ("temporal_layernorm", "temporal_norm"), ("temporal_attention.attention.qkv", "temporal_attn.qkv"),
        ("temporal_attention.output.dense", "temporal_attn.proj"), ("temporal_dense", "temporal_fc"),
        ("layernorm_before", "norm1"), ("attention.attention.qkv", "attn.qkv"),
        ("attention.output.dense", "attn.proj"), ("layernorm_after", "norm2"),
        ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2")]],
    ("layernorm.{p}", "norm.{p}"),
    ("classifier.{p}", "head.{p}"),
], prefix="timesformer.")
_PATCH = "patch_embed.proj.weight"


def from_transformers_timesformer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers TimeSformer state dict renamed for vitkit (the Conv2d patch kernel given a time axis)."""
    renamed = KEYMAP.to_vitkit(state)
    if _PATCH in renamed and renamed[_PATCH].ndim == 4:
        renamed[_PATCH] = renamed[_PATCH].unsqueeze(2)
    return renamed


def to_transformers_timesformer(state: dict[str, torch.Tensor], config: ViViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit TimeSformer's state dict in the Hub layout of ``TimesformerForVideoClassification``."""
    check_transformers_timesformer(config)
    state = {**state, _PATCH: state[_PATCH].squeeze(2)}
    return with_prefix(KEYMAP.from_vitkit(state), "timesformer.")


def check_transformers_timesformer(config: ViViTConfig) -> None:
    """A one-line error if transformers' TimeSformer cannot express ``config``."""
    c = config
    unexpressible("transformers' TimeSformer", {
        f"Model {c.variant!r}": c.variant != "divided_space_time",
        f"tubelets of {c.tubelet_size[0]} frames (it embeds each frame)": c.tubelet_size[0] != 1,
        "non-square patches or images": c.tubelet_size[1] != c.tubelet_size[2] or c.image_size[0] != c.image_size[1],
        "no key bias (key_bias=False)": not c.key_bias,
        "no head": not c.num_classes,
    })


def transformers_timesformer_kwargs(config: ViViTConfig) -> dict[str, Any]:
    """Arguments for ``transformers.TimesformerConfig`` that build the same model as ``config``."""
    check_transformers_timesformer(config)
    # drop_path_rate only when set: transformers 5 types it as an int and refuses 0.0.
    drop_path = {"drop_path_rate": config.drop_path} if config.drop_path else {}
    return shared_kwargs(config) | dict(patch_size=config.tubelet_size[1], qkv_bias=config.qkv_bias,
                                        attention_type="divided_space_time", **drop_path)


def transformers_timesformer_config_json(config: ViViTConfig, class_names: list[str] | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``TimesformerForVideoClassification`` for ``config``."""
    kwargs = transformers_timesformer_kwargs(config)
    return video_config_json(kwargs, "timesformer", "TimesformerForVideoClassification", class_names)


def timesformer_config_from_transformers(data: dict[str, Any]) -> tuple[ViViTConfig, list[str] | None]:
    """The vitkit config (and class names) of a transformers TimeSformer ``config.json``."""
    kind = data.get("attention_type", "divided_space_time")
    if kind != "divided_space_time":
        raise VitkitError(f"this TimeSformer uses attention_type={kind!r}; vitkit reads 'divided_space_time' "
                          "(the published models) only")
    patch_height, patch_width = to_pair(data.get("patch_size", 16))
    fields = {"num_frames": 8, **shared_fields(data, "TimeSformer", "gelu")}
    config = ViViTConfig(variant="divided_space_time", pool="cls", image_size=data.get("image_size", 224),
                         tubelet_size=(1, patch_height, patch_width), qkv_bias=data.get("qkv_bias", True),
                         drop_path=float(data.get("drop_path_rate", 0.0)), **fields)
    return config, class_names_from(data)
