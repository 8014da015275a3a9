"""Hugging Face transformers ``ViTModel`` / ``ViTForImageClassification`` weights <-> vitkit.

Two key layouts exist: the one on the Hub (``encoder.layer.N.attention.attention.query``, written by every
transformers version) and transformers 5's in-memory one (``layers.N.attention.q_proj``). Both are read; the
Hub layout is written, which transformers 4 reads as is and transformers 5 converts on load. HF keeps q, k
and v as three Linear layers where vitkit fuses them into one.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig
from .keymap import fuse_qkv, rename_keys, split_qkv

_LAYER = r"(?:vit\.)?(?:encoder\.layer|layers)\.(\d+)\."

_HF_TO_VITKIT = [
    (r"(?:vit\.)?embeddings\.cls_token", "cls_token.token"),
    (r"(?:vit\.)?embeddings\.position_embeddings", "pos_embed.weight"),
    (r"(?:vit\.)?embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (_LAYER + r"attention\.(?:attention\.query|q_proj)\.(weight|bias)", r"blocks.\1.attn.q.\2"),
    (_LAYER + r"attention\.(?:attention\.key|k_proj)\.(weight|bias)", r"blocks.\1.attn.k.\2"),
    (_LAYER + r"attention\.(?:attention\.value|v_proj)\.(weight|bias)", r"blocks.\1.attn.v.\2"),
    (_LAYER + r"attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_LAYER + r"layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_LAYER + r"layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_LAYER + r"(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_LAYER + r"(?:output\.dense|mlp\.fc2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"(?:vit\.)?layernorm\.(weight|bias)", r"norm.\1"),
    (r"classifier\.(weight|bias)", r"head.\1"),
    # ViTModel's pooler (Linear + tanh on [CLS]) feeds no classifier; vitkit's features are last_hidden_state.
    (r"(?:vit\.)?pooler\.dense\.(weight|bias)", ""),
]

_VITKIT_TO_HF = [
    (r"cls_token\.token", "embeddings.cls_token"),
    (r"pos_embed\.weight", "embeddings.position_embeddings"),
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"blocks\.(\d+)\.attn\.q\.(weight|bias)", r"encoder.layer.\1.attention.attention.query.\2"),
    (r"blocks\.(\d+)\.attn\.k\.(weight|bias)", r"encoder.layer.\1.attention.attention.key.\2"),
    (r"blocks\.(\d+)\.attn\.v\.(weight|bias)", r"encoder.layer.\1.attention.attention.value.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layer.\1.attention.output.dense.\2"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"encoder.layer.\1.layernorm_before.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"encoder.layer.\1.layernorm_after.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.layer.\1.intermediate.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.layer.\1.output.dense.\2"),
    (r"norm\.(weight|bias)", r"layernorm.\1"),
    (r"head\.(weight|bias)", r"classifier.\1"),
]


def from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ViT state dict (either layout, with or without the ``vit.`` prefix) renamed for vitkit."""
    return fuse_qkv(rename_keys(state, _HF_TO_VITKIT, "Hugging Face"))


def to_hf(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit state dict in the Hub layout: ``ViTForImageClassification`` keys, or ``ViTModel`` ones when the
    model has no head."""
    hf_unsupported(config)
    renamed = rename_keys(split_qkv(state), _VITKIT_TO_HF, "vitkit")
    if not config.num_classes:
        return renamed
    return {key if key.startswith("classifier.") else f"vit.{key}": value for key, value in renamed.items()}


def hf_unsupported(config: ViTConfig) -> None:
    """Raise a one-line error if transformers' ViT cannot express ``config``."""
    problems = {
        "post-norm blocks": config.norm != "pre",
        "no [CLS] token": not config.class_token,
        "mean pooling": config.pool != "cls",
        f"position embedding {config.pos_embed!r}": config.pos_embed != "learned",
        "attention across the batch": config.attention_axis != "tokens",
        "non-square patches": config.patch_size[0] != config.patch_size[1],
    }
    found = [name for name, present in problems.items() if present]
    if found:
        raise VitkitError(f"Hugging Face ViT cannot express {', '.join(found)}; convert --to vitkit or timm instead")


def hf_config_json(config: ViTConfig, class_names: list[str] | None = None) -> dict[str, Any]:
    """The transformers ``config.json`` describing ``config``."""
    hf_unsupported(config)
    height, width = config.image_size
    labels = class_names or [f"LABEL_{i}" for i in range(config.num_classes)]
    return {
        "architectures": ["ViTForImageClassification" if config.num_classes else "ViTModel"],
        "model_type": "vit",
        "hidden_size": config.dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.heads,
        "intermediate_size": config.hidden_dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attn_dropout,
        "layer_norm_eps": config.norm_eps,
        "image_size": height if height == width else [height, width],
        "patch_size": config.patch_size[0],
        "num_channels": config.in_channels,
        "qkv_bias": config.qkv_bias,
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def hints_from_hf_config(data: dict[str, Any]) -> dict[str, Any]:
    """Config fields (and class names) read from a transformers ViT ``config.json``."""
    if data.get("hidden_act", "gelu") != "gelu":
        raise VitkitError(
            f"this Hugging Face ViT uses hidden_act={data['hidden_act']!r}; vitkit's MLP uses exact GELU ('gelu')"
        )
    table = {"num_attention_heads": "heads", "layer_norm_eps": "norm_eps", "image_size": "image_size",
             "num_channels": "in_channels", "qkv_bias": "qkv_bias"}
    hints = {field: data[key] for key, field in table.items() if key in data}
    labels = data.get("id2label")
    if labels:
        hints["class_names"] = [labels[str(i)] if str(i) in labels else labels[i] for i in range(len(labels))]
    return hints
