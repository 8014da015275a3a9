"""torchvision ``VisionTransformer`` (``vit_b_16`` and friends) weights <-> vitkit.

torchvision's blocks use ``nn.MultiheadAttention``, whose packed ``in_proj_weight`` is [q; k; v] stacked along
the output axis: exactly vitkit's fused qkv, so only names change. LayerNorm eps is 1e-6 as in vitkit.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig
from .keymap import KeyMap, beyond_paper_vit, unexpressible

_LAYER = "encoder.layers.encoder_layer_{n}."

KEYMAP = KeyMap("torchvision ViT", [
    ("class_token", "cls_token.token"),
    ("encoder.pos_embedding", "pos_embed.weight"),
    ("conv_proj.{p}", "patch_embed.proj.{p}"),
    (_LAYER + "ln_1.{p}", "blocks.{n}.norm1.{p}"),
    (_LAYER + "ln_2.{p}", "blocks.{n}.norm2.{p}"),
    (_LAYER + "self_attention.in_proj_{p}", "blocks.{n}.attn.qkv.{p}"),
    (_LAYER + "self_attention.out_proj.{p}", "blocks.{n}.attn.proj.{p}"),
    # mlp.0 / mlp.3 since torchvision 0.13; linear_1 / linear_2 in older checkpoints.
    ((_LAYER + "mlp.0.{p}", _LAYER + "mlp.linear_1.{p}"), "blocks.{n}.mlp.fc1.{p}"),
    ((_LAYER + "mlp.3.{p}", _LAYER + "mlp.linear_2.{p}"), "blocks.{n}.mlp.fc2.{p}"),
    ("encoder.ln.{p}", "norm.{p}"),
    ("heads.head.{p}", "head.{p}"),
])


def from_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ViT state dict renamed for vitkit."""
    if "heads.pre_logits.weight" in state:
        raise VitkitError("this torchvision ViT has a pre-logits layer (representation_size), which vitkit lacks")
    return KEYMAP.to_vitkit(state)


def to_torchvision(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit state dict renamed for torchvision's ``VisionTransformer`` built with :func:`torchvision_kwargs`."""
    check_torchvision(config)
    return KEYMAP.from_vitkit(state)


def torchvision_kwargs(config: ViTConfig) -> dict[str, Any]:
    """Arguments for ``torchvision.models.VisionTransformer`` that build the same architecture."""
    check_torchvision(config)
    return dict(
        image_size=config.image_size[0], patch_size=config.patch_size[0], num_layers=config.depth,
        num_heads=config.heads, hidden_dim=config.dim, mlp_dim=config.hidden_dim, num_classes=config.num_classes,
    )


def check_torchvision(config: ViTConfig) -> None:
    """A one-line error if torchvision's ``VisionTransformer`` cannot express ``config``."""
    unexpressible("torchvision's ViT", {
        **beyond_paper_vit(config),
        "qkv without bias": not config.qkv_bias,
        "non-square images or patches": len({*config.image_size}) > 1 or len({*config.patch_size}) > 1,
        f"{config.in_channels} input channels": config.in_channels != 3,
        "no head": not config.num_classes,
        f"LayerNorm eps {config.norm_eps}": config.norm_eps != 1e-6,
    })
