"""transformers ``VivitForVideoClassification`` weights and config -> vitkit's ViViT Model 1 (spatio-temporal).

transformers' ViViT is Model 1 with a [CLS] token, tubelet embedding and pre-norm blocks, and its encoder is its
ViT's under the prefix ``vivit.``: the key map is the Hugging Face ViT's (``hf.py``), q, k and v fused the same
way. Its default activation ``gelu_fast`` is the tanh approximation of GELU, while vitkit uses the exact GELU:
only folders saved with ``hidden_act="gelu"`` load (the two differ by about 1e-3).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError
from ..models.vivit_config import ViViTConfig
from .hf import ENCODER_PAIRS, with_prefix
from .keymap import KeyMap, fuse_qkv, split_qkv, unexpressible

KEYMAP = KeyMap("transformers ViViT", ENCODER_PAIRS, prefix="vivit.", dropped=["pooler.dense.{p}"])

# transformers.VivitConfig field <-> ViViTConfig field, for the fields that only change names.
CONFIG_PAIRS = [("num_frames", "num_frames"), ("num_channels", "in_channels"), ("hidden_size", "dim"),
                ("num_hidden_layers", "depth"), ("num_attention_heads", "heads"), ("intermediate_size", "mlp_dim"),
                ("layer_norm_eps", "norm_eps"), ("qkv_bias", "qkv_bias"), ("hidden_dropout_prob", "dropout"),
                ("attention_probs_dropout_prob", "attn_dropout")]


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
    })


def transformers_vivit_kwargs(config: ViViTConfig) -> dict[str, Any]:
    """Arguments for ``transformers.VivitConfig`` that build the same architecture as ``config``."""
    check_transformers_vivit(config)
    kwargs = {theirs: getattr(config, ours) for theirs, ours in CONFIG_PAIRS}
    height, width = config.image_size
    return kwargs | dict(image_size=height if height == width else [height, width],
                         tubelet_size=list(config.tubelet_size), intermediate_size=config.hidden_dim,
                         hidden_act="gelu", num_labels=config.num_classes)


def vivit_config_from_transformers(data: dict[str, Any]) -> tuple[ViViTConfig, list[str] | None]:
    """The ViViT config (and class names) of a transformers ViViT ``config.json``."""
    if data.get("hidden_act", "gelu_fast") != "gelu":
        raise VitkitError(f"this transformers ViViT uses hidden_act={data.get('hidden_act', 'gelu_fast')!r}; "
                          "vitkit's MLP is the exact GELU: save the model with hidden_act='gelu'")
    fields = {ours: data[theirs] for theirs, ours in CONFIG_PAIRS if theirs in data}
    labels = data.get("id2label") or {}
    names = [labels[str(i)] for i in range(len(labels))] if labels else None
    config = ViViTConfig(variant="spatiotemporal", pool="cls", image_size=data.get("image_size", 224),
                         tubelet_size=data.get("tubelet_size", (2, 16, 16)),
                         num_classes=len(names) if names else data.get("num_labels", 2), **fields)
    return config, names
