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
from .keymap import KeyMap, beyond_paper_vit, fuse_qkv, split_qkv, unexpressible


def _layer(hub: str, v5: str, vitkit: str) -> tuple[tuple[str, str], str]:
    """A block's parameter: the Hub layout's name, transformers 5's in-memory name, vitkit's name."""
    return (f"encoder.layer.{{n}}.{hub}.{{p}}", f"layers.{{n}}.{v5}.{{p}}"), f"blocks.{{n}}.{vitkit}.{{p}}"


# The blocks of transformers' ViT; its ViViT (``transformers_vivit.py``) and VideoMAE have the same ones.
BLOCK_PAIRS = [
    _layer("attention.attention.query", "attention.q_proj", "attn.q"),
    _layer("attention.attention.key", "attention.k_proj", "attn.k"),
    _layer("attention.attention.value", "attention.v_proj", "attn.v"),
    _layer("attention.output.dense", "attention.o_proj", "attn.proj"),
    _layer("layernorm_before", "layernorm_before", "norm1"),
    _layer("layernorm_after", "layernorm_after", "norm2"),
    _layer("intermediate.dense", "mlp.fc1", "mlp.fc1"),
    _layer("output.dense", "mlp.fc2", "mlp.fc2"),
]
# The encoder of transformers' ViT; its ViViT uses the same one under ``vivit.``.
ENCODER_PAIRS = [
    ("embeddings.cls_token", "cls_token.token"),
    ("embeddings.position_embeddings", "pos_embed.weight"),
    ("embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    *BLOCK_PAIRS,
    ("layernorm.{p}", "norm.{p}"),
    ("classifier.{p}", "head.{p}"),
]
# ViTModel's pooler (Linear + tanh on [CLS]) feeds no classifier; vitkit's features are last_hidden_state.
KEYMAP = KeyMap("Hugging Face ViT", ENCODER_PAIRS, prefix="vit.", dropped=["pooler.dense.{p}"])


def from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ViT state dict (either layout, with or without the ``vit.`` prefix) renamed for vitkit."""
    return fuse_qkv(KEYMAP.to_vitkit(state))


def to_hf(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit state dict in the Hub layout: ``ViTForImageClassification`` keys, or ``ViTModel`` ones when the
    model has no head."""
    check_hf(config)
    return with_prefix(KEYMAP.from_vitkit(split_qkv(state)), "vit." if config.num_classes else "")


def with_prefix(state: dict[str, torch.Tensor], prefix: str,
                top: tuple[str, ...] = ("classifier.",)) -> dict[str, torch.Tensor]:
    """``prefix`` before every key but the classifier's (transformers' ``*ForImageClassification`` layout) and
    the other ``top``-level modules' (VideoMAE's ``fc_norm.``)."""
    return {key if key.startswith(top) else prefix + key: value for key, value in state.items()}


def check_hf(config: ViTConfig) -> None:
    """Raise a one-line error if transformers' ViT cannot express ``config``."""
    unexpressible("Hugging Face ViT", {
        **beyond_paper_vit(config),
        "non-square patches": config.patch_size[0] != config.patch_size[1],
    })


def hf_config_json(config: ViTConfig, class_names: list[str] | None = None) -> dict[str, Any]:
    """The transformers ``config.json`` describing ``config``."""
    check_hf(config)
    architecture = "ViTForImageClassification" if config.num_classes else "ViTModel"
    return {"architectures": [architecture], "model_type": "vit", **encoder_fields(config),
            **label_fields(class_names, config.num_classes)}


# vitkit's activation <-> transformers' ``hidden_act`` (the first name is written; all are read).
HF_ACTS = {"gelu": ("gelu",), "gelu_tanh": ("gelu_pytorch_tanh", "gelu_new"), "quick_gelu": ("quick_gelu",)}


def hf_act(act: str) -> str:
    """transformers' ``hidden_act`` name for vitkit's ``act``."""
    return HF_ACTS[act][0]


def act_from_hf(hidden_act: Any, where: str) -> str:
    """vitkit's ``act`` for transformers' ``hidden_act``, or a one-line error naming it."""
    for act, names in HF_ACTS.items():
        if hidden_act in names:
            return act
    known = ", ".join(name for names in HF_ACTS.values() for name in names)
    raise VitkitError(f"{where} uses hidden_act={hidden_act!r}, which vitkit's MLP does not have ({known})")


def encoder_fields(config: ViTConfig) -> dict[str, Any]:
    """The ``config.json`` fields transformers' ViT-like image encoders share (ViT, DeiT, DINOv2, CLIP, SigLIP)."""
    height, width = config.image_size
    return {
        "hidden_size": config.dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.heads,
        "intermediate_size": config.hidden_dim,
        "hidden_act": hf_act(config.act),
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attn_dropout,
        "layer_norm_eps": config.norm_eps,
        "image_size": height if height == width else [height, width],
        "patch_size": config.patch_size[0],
        "num_channels": config.in_channels,
        "qkv_bias": config.qkv_bias,
    }


def label_fields(class_names: list[str] | None, num_classes: int) -> dict[str, Any]:
    """A transformers ``config.json``'s ``id2label`` and ``label2id`` (``LABEL_i`` without class names)."""
    labels = class_names or [f"LABEL_{i}" for i in range(num_classes)]
    return {"id2label": {str(i): name for i, name in enumerate(labels)},
            "label2id": {name: i for i, name in enumerate(labels)}}


def class_names_from(data: dict[str, Any]) -> list[str] | None:
    """The class names of a transformers ``config.json`` (its ``id2label``), or None."""
    labels = data.get("id2label")
    if not labels:
        return None
    return [labels[str(i)] if str(i) in labels else labels[i] for i in range(len(labels))]


def hf_image_processor_json(preprocess: dict[str, Any]) -> dict[str, Any]:
    """The transformers ``preprocessor_config.json`` doing what vitkit's eval does with ``preprocess`` (a vitkit
    folder's entry): shorter side to ``short_side`` (its interpolation, antialiased), center crop ``image_size``, /255,
    mean and std. ``BitImageProcessor`` (DINOv2's) does exactly these steps; ``ViTImageProcessor`` would squash
    the whole image to a square instead, which changes what the model sees of a non-square photo."""
    size = int(preprocess["image_size"])
    return {
        "image_processor_type": "BitImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": int(preprocess["short_side"])},
        "resample": {"bicubic": 3, "bilinear": 2}[preprocess.get("interpolation", "bicubic")],  # PIL's numbers
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [float(v) for v in preprocess["mean"]],
        "image_std": [float(v) for v in preprocess["std"]],
    }


def hints_from_hf_config(data: dict[str, Any]) -> dict[str, Any]:
    """Config fields (and class names) read from a transformers ViT ``config.json``."""
    act = act_from_hf(data.get("hidden_act", "gelu"), "this Hugging Face ViT")
    table = {"num_attention_heads": "heads", "layer_norm_eps": "norm_eps", "image_size": "image_size",
             "num_channels": "in_channels", "qkv_bias": "qkv_bias"}
    hints = {field: data[key] for key, field in table.items() if key in data} | {"act": act}
    names = class_names_from(data)
    return {**hints, "class_names": names} if names else hints
