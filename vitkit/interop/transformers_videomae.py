"""transformers ``VideoMAEForVideoClassification`` weights and config <-> vitkit's ViViT as VideoMAE (Tong et al.
2022, "VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised Video Pre-Training").

VideoMAE's classifier is ViViT Model 1 without [CLS]: tubelets of ``tubelet_size`` x ``patch_size`` x
``patch_size``, a fixed sinusoid position table (computed, not stored), attention whose queries and values have
a bias and keys none (``q_bias`` / ``v_bias``), and the mean of the last block's tokens normalised by ``fc_norm``
(PyTorch's default eps 1e-5, unlike the blocks' ``layer_norm_eps``). The blocks are transformers' ViT blocks
(``hf.py``). Only mean-pooled models (``use_mean_pooling``, every published one) are read.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError
from ..models.base import to_pair
from ..models.vivit_config import ViViTConfig
from .hf import BLOCK_PAIRS, class_names_from, with_prefix
from .keymap import KeyMap, fuse_qkv, split_qkv, unexpressible
from .transformers_video import shared_fields, shared_kwargs, video_config_json

FC_NORM_EPS = 1e-5
"""transformers' VideoMAE builds ``fc_norm`` as ``nn.LayerNorm(hidden_size)``: PyTorch's default eps."""
_ATTENTION = "encoder.layer.{n}.attention.attention"
KEYMAP = KeyMap("transformers VideoMAE", [
    # The Hub layout's q_bias / v_bias first (transformers 5 reads them as query.bias / value.bias).
    ((f"{_ATTENTION}.q_bias", f"{_ATTENTION}.query.bias"), "blocks.{n}.attn.q_bias"),
    ((f"{_ATTENTION}.v_bias", f"{_ATTENTION}.value.bias"), "blocks.{n}.attn.v_bias"),
    ("embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    *BLOCK_PAIRS,
    ("fc_norm.{p}", "norm.{p}"),
    ("classifier.{p}", "head.{p}"),
], prefix="videomae.")


def from_transformers_videomae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers VideoMAE classifier's state dict renamed for vitkit (q, k and v weights fused)."""
    if any(key.endswith("videomae.layernorm.weight") or key == "layernorm.weight" for key in state):
        raise VitkitError("this VideoMAE classifies from its first token (use_mean_pooling=False); vitkit reads "
                          "the mean-pooled VideoMAE classifiers only")
    return fuse_qkv(KEYMAP.to_vitkit(state))


def to_transformers_videomae(state: dict[str, torch.Tensor], config: ViViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit VideoMAE's state dict in the Hub layout of ``VideoMAEForVideoClassification``."""
    check_transformers_videomae(config)
    return with_prefix(KEYMAP.from_vitkit(split_qkv(state)), "videomae.", top=("classifier.", "fc_norm."))


def check_transformers_videomae(config: ViViTConfig) -> None:
    """A one-line error if transformers' VideoMAE cannot express ``config``."""
    c = config
    eps = c.fc_norm_eps or c.norm_eps
    unexpressible("transformers' VideoMAE", {
        f"Model {c.variant!r}": c.variant != "spatiotemporal",
        "a [CLS] token": c.pool != "mean",
        "the norm before pooling (fc_norm=False)": not c.fc_norm,
        f"fc_norm eps {eps} (its is {FC_NORM_EPS})": eps != FC_NORM_EPS,
        f"position embedding {c.pos_embed!r}": c.pos_embed != "sincos",
        "a key bias (key_bias=True)": c.qkv_bias and c.key_bias,
        "non-square tubelets": c.tubelet_size[1] != c.tubelet_size[2],
        "no head": not c.num_classes,
    })


def transformers_videomae_kwargs(config: ViViTConfig) -> dict[str, Any]:
    """Arguments for ``transformers.VideoMAEConfig`` that build the same classifier as ``config``."""
    check_transformers_videomae(config)
    frames, patch, _ = config.tubelet_size
    return shared_kwargs(config) | dict(patch_size=patch, tubelet_size=frames, qv_bias=config.qkv_bias,
                                        use_mean_pooling=True)


def transformers_videomae_config_json(config: ViViTConfig, class_names: list[str] | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``VideoMAEForVideoClassification`` for ``config``."""
    kwargs = transformers_videomae_kwargs(config)
    return video_config_json(kwargs, "videomae", "VideoMAEForVideoClassification", class_names)


def videomae_config_from_transformers(data: dict[str, Any]) -> tuple[ViViTConfig, list[str] | None]:
    """The vitkit config (and class names) of a transformers VideoMAE ``config.json``."""
    if not data.get("use_mean_pooling", True):
        raise VitkitError("this VideoMAE classifies from its first token (use_mean_pooling=False); vitkit reads "
                          "the mean-pooled VideoMAE classifiers only")
    patch_height, patch_width = to_pair(data.get("patch_size", 16))
    qv_bias = data.get("qv_bias", data.get("qkv_bias", True))
    fields = {"num_frames": 16, "norm_eps": 1e-12, **shared_fields(data, "VideoMAE", "gelu")}
    config = ViViTConfig(variant="spatiotemporal", pool="mean", fc_norm=True, fc_norm_eps=FC_NORM_EPS,
                         pos_embed="sincos", qkv_bias=qv_bias, key_bias=not qv_bias,
                         image_size=data.get("image_size", 224),
                         tubelet_size=(data.get("tubelet_size", 2), patch_height, patch_width), **fields)
    return config, class_names_from(data)
