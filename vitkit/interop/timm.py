"""timm ``VisionTransformer`` weights <-> vitkit. The layouts are almost the same; only a few names differ."""

from __future__ import annotations

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig
from .keymap import rename_keys

# Block internals share timm's names: blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.
_TIMM_TO_VITKIT = [
    (r"cls_token", "cls_token.token"),
    (r"pos_embed", "pos_embed.weight"),
    (r"patch_embed\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", r"blocks.\1.\2.\3"),
    (r"(?:fc_)?norm\.(weight|bias)", r"norm.\1"),  # fc_norm: timm's norm after mean pooling
    (r"head\.(weight|bias)", r"head.\1"),
]

_VITKIT_TO_TIMM = [
    (r"cls_token\.token", "cls_token"),
    (r"pos_embed\.weight", "pos_embed"),
    (r"(patch_embed\.proj|blocks\.\d+\.\w+(?:\.\w+)?|head)\.(weight|bias)", r"\1.\2"),
]


def from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ViT state dict renamed for :class:`vitkit.VisionTransformer`."""
    return rename_keys(state, _TIMM_TO_VITKIT, "timm")


def to_timm(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit ViT state dict renamed for timm's ``VisionTransformer`` built with the matching options."""
    final_norm = "fc_norm" if config.pool == "mean" else "norm"
    rules = _VITKIT_TO_TIMM + [(r"norm\.(weight|bias)", final_norm + r".\1")]
    return rename_keys(state, rules, "vitkit")


def timm_kwargs(config: ViTConfig) -> dict:
    """Arguments for ``timm.models.vision_transformer.VisionTransformer`` that build the same architecture."""
    if config.norm != "pre" or config.attention_axis != "tokens" or config.pos_embed == "sincos2d":
        raise ValueError("timm's VisionTransformer has no post-norm, batch-axis attention or sincos2d option")
    return dict(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.in_channels,
        num_classes=config.num_classes, embed_dim=config.dim, depth=config.depth, num_heads=config.heads,
        mlp_ratio=config.hidden_dim / config.dim, qkv_bias=config.qkv_bias, class_token=config.class_token,
        global_pool="token" if config.pool == "cls" else "avg", no_embed_class=config.pos_embed == "learned_patches",
        pos_embed="none" if config.pos_embed == "none" else "learn",
    )


def timm_hints(state: dict[str, torch.Tensor]) -> dict:
    """Config fields that timm's key names tell but vitkit's do not: the pooling (``fc_norm`` means mean)."""
    if "fc_norm.weight" in state or "cls_token" not in state:
        if "norm.weight" in state:
            # timm's fc_norm=False: norm every token, then average. vitkit averages, then norms (fc_norm=True).
            raise VitkitError("this timm ViT averages tokens after its final norm (fc_norm=False); vitkit cannot")
        return {"pool": "mean"}
    return {"pool": "cls"}
