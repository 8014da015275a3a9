"""timm ``VisionTransformer`` weights <-> vitkit. The layouts are almost the same; only a few names differ."""

from __future__ import annotations

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig
from .keymap import KeyMap, unexpressible

# Block internals share timm's names: blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.
KEYMAP = KeyMap("timm ViT", [
    ("cls_token", "cls_token.token"),
    ("reg_token", "reg_token.token"),
    ("pos_embed", "pos_embed.weight"),
    ("patch_embed.proj.{p}", "patch_embed.proj.{p}"),
    *[(f"blocks.{{n}}.{part}.{{p}}", f"blocks.{{n}}.{part}.{{p}}")
      for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")],
    *[(f"blocks.{{n}}.{scale}.gamma", f"blocks.{{n}}.{scale}.gamma") for scale in ("ls1", "ls2")],  # layer scale
    (("norm.{p}", "fc_norm.{p}"), "norm.{p}"),  # fc_norm: timm's norm after mean pooling
    ("head.{p}", "head.{p}"),
])


def from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ViT state dict renamed for :class:`vitkit.VisionTransformer`."""
    return KEYMAP.to_vitkit(state)


def to_timm(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit ViT state dict renamed for timm's ``VisionTransformer`` built with the matching options."""
    check_timm(config)
    renamed = KEYMAP.from_vitkit(state)
    if config.pool == "mean":
        renamed = {("fc_" + key if key.startswith("norm.") else key): value for key, value in renamed.items()}
    return renamed


def timm_kwargs(config: ViTConfig) -> dict:
    """Arguments for ``timm.models.vision_transformer.VisionTransformer`` that build the same architecture."""
    check_timm(config)
    return dict(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.in_channels,
        num_classes=config.num_classes, embed_dim=config.dim, depth=config.depth, num_heads=config.heads,
        mlp_ratio=config.hidden_dim / config.dim, qkv_bias=config.qkv_bias, class_token=config.class_token,
        global_pool="token" if config.pool == "cls" else "avg", no_embed_class=config.pos_embed == "learned_patches",
        pos_embed="none" if config.pos_embed == "none" else "learn", init_values=config.init_values,
        reg_tokens=config.reg_tokens, dynamic_img_size=config.dynamic_img_size,
    )


def check_timm(config: ViTConfig) -> None:
    """A one-line error if timm's ``VisionTransformer`` cannot express ``config``."""
    unexpressible("timm's VisionTransformer", {
        "post-norm blocks": config.norm != "pre",
        "attention across the batch": config.attention_axis != "tokens",
        "position embedding 'sincos2d'": config.pos_embed == "sincos2d",
        "a convolutional stem": config.stem != "patch",
    })


def timm_hints(state: dict[str, torch.Tensor]) -> dict:
    """Config fields that timm's key names tell but vitkit's do not: the pooling (``fc_norm`` means mean)."""
    if "fc_norm.weight" in state or "cls_token" not in state:
        if "norm.weight" in state:
            # timm's fc_norm=False: norm every token, then average. vitkit averages, then norms (fc_norm=True).
            raise VitkitError("this timm ViT averages tokens after its final norm (fc_norm=False); vitkit cannot")
        return {"pool": "mean"}
    return {"pool": "cls"}
