"""torchvision ``VisionTransformer`` (``vit_b_16`` and friends) weights <-> vitkit.

torchvision's blocks use ``nn.MultiheadAttention``, whose packed ``in_proj_weight`` is [q; k; v] stacked along
the output axis: exactly vitkit's fused qkv, so only names change. LayerNorm eps is 1e-6 as in vitkit.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig
from .keymap import rename_keys

_LAYER = r"encoder\.layers\.encoder_layer_(\d+)\."

_TORCHVISION_TO_VITKIT = [
    (r"class_token", "cls_token.token"),
    (r"encoder\.pos_embedding", "pos_embed.weight"),
    (r"conv_proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (_LAYER + r"ln_1\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_LAYER + r"ln_2\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_LAYER + r"self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (_LAYER + r"self_attention\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    # mlp.0 / mlp.3 since torchvision 0.13; linear_1 / linear_2 in older checkpoints.
    (_LAYER + r"mlp\.(?:0|linear_1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_LAYER + r"mlp\.(?:3|linear_2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"encoder\.ln\.(weight|bias)", r"norm.\1"),
    (r"heads\.head\.(weight|bias)", r"head.\1"),
]

_VITKIT_TO_TORCHVISION = [
    (r"cls_token\.token", "class_token"),
    (r"pos_embed\.weight", "encoder.pos_embedding"),
    (r"patch_embed\.proj\.(weight|bias)", r"conv_proj.\1"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"encoder.layers.encoder_layer_\1.ln_1.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"encoder.layers.encoder_layer_\1.ln_2.\2"),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layers.encoder_layer_\1.self_attention.out_proj.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.layers.encoder_layer_\1.mlp.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.layers.encoder_layer_\1.mlp.3.\2"),
    (r"norm\.(weight|bias)", r"encoder.ln.\1"),
    (r"head\.(weight|bias)", r"heads.head.\1"),
]


def from_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ViT state dict renamed for vitkit."""
    if "heads.pre_logits.weight" in state:
        raise VitkitError("this torchvision ViT has a pre-logits layer (representation_size), which vitkit lacks")
    return rename_keys(state, _TORCHVISION_TO_VITKIT, "torchvision")


def to_torchvision(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit state dict renamed for torchvision's ``VisionTransformer`` built with :func:`torchvision_kwargs`."""
    torchvision_kwargs(config)
    return rename_keys(state, _VITKIT_TO_TORCHVISION, "vitkit")


def torchvision_kwargs(config: ViTConfig) -> dict[str, Any]:
    """Arguments for ``torchvision.models.VisionTransformer`` that build the same architecture."""
    problems = {
        "post-norm blocks": config.norm != "pre",
        "no [CLS] token": not config.class_token,
        "mean pooling": config.pool != "cls",
        f"position embedding {config.pos_embed!r}": config.pos_embed != "learned",
        "attention across the batch": config.attention_axis != "tokens",
        "qkv without bias": not config.qkv_bias,
        "non-square images or patches": len({*config.image_size}) > 1 or len({*config.patch_size}) > 1,
        f"{config.in_channels} input channels": config.in_channels != 3,
        "no head": not config.num_classes,
        f"LayerNorm eps {config.norm_eps}": config.norm_eps != 1e-6,
    }
    found = [name for name, present in problems.items() if present]
    if found:
        raise VitkitError(f"torchvision's ViT cannot express {', '.join(found)}; convert --to vitkit or timm instead")
    return dict(
        image_size=config.image_size[0], patch_size=config.patch_size[0], num_layers=config.depth,
        num_heads=config.heads, hidden_dim=config.dim, mlp_dim=config.hidden_dim, num_classes=config.num_classes,
    )
