"""timm ``VisionTransformer`` weights <-> vitkit. The layouts are almost the same; only a few names differ."""

from __future__ import annotations

import re
from functools import partial

import torch
from torch import nn

from ..errors import VitkitError
from ..models.config import ViTConfig
from ..models.heads import norm_after_pool
from ..models.registry import aliases, get_config
from .keymap import KeyMap, unexpressible

# Block internals share timm's names: blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.
KEYMAP = KeyMap("timm ViT", [
    ("cls_token", "cls_token.token"),
    ("dist_token", "dist_token.token"),  # DeiT distilled
    ("reg_token", "reg_token.token"),
    ("pos_embed", "pos_embed.weight"),
    ("patch_embed.proj.{p}", "patch_embed.proj.{p}"),
    ("norm_pre.{p}", "norm_pre.{p}"),  # CLIP's ln_pre
    *[(f"blocks.{{n}}.{part}.{{p}}", f"blocks.{{n}}.{part}.{{p}}")
      for part in ("norm1", "attn.qkv", "attn.q_norm", "attn.k_norm", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")],
    *[(f"blocks.{{n}}.{scale}.gamma", f"blocks.{{n}}.{scale}.gamma") for scale in ("ls1", "ls2")],  # layer scale
    (("norm.{p}", "fc_norm.{p}"), "norm.{p}"),  # fc_norm: timm's norm after pooling
    ("attn_pool.latent", "pool.latent"),  # attention pooling (global_pool='map')
    *[(f"attn_pool.{part}.{{p}}", f"pool.{part}.{{p}}") for part in ("q", "kv", "proj", "norm", "mlp.fc1", "mlp.fc2")],
    ("head.{p}", "head.{p}"),
    ("head_dist.{p}", "head_dist.{p}"),
])

# timm options vitkit does not have, recognised by a key they add: (key pattern, the option, in words).
UNSUPPORTED = [
    (r"blocks\.\d+\.attn\.norm\.", "scale_attn_norm (a norm inside attention)"),
    (r"blocks\.\d+\.mlp\.norm\.", "scale_mlp_norm (a norm inside the MLP)"),
    (r"blocks\.\d+\.mlp\.fc1_[gx]\.", "a gated (SwiGLU) MLP"),
    (r"blocks\.\d+\.(?:attn_out_proj|in_proj)\.", "parallel blocks (block_fn)"),
    (r"attn_pool\.pos_embed", "attention pooling with its own position embedding"),
]


def from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ViT state dict renamed for :class:`vitkit.VisionTransformer`."""
    return KEYMAP.to_vitkit(state)


def to_timm(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit ViT state dict renamed for timm's ``VisionTransformer`` built with the matching options."""
    check_timm(config)
    return final_norm_names(KEYMAP.from_vitkit(state), config)


def final_norm_names(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """vitkit's one final ``norm`` under timm's name for where it is: ``fc_norm`` after pooling, else ``norm``."""
    if not norm_after_pool(config):
        return state
    return {("fc_" + key if key.startswith("norm.") else key): value for key, value in state.items()}


def timm_kwargs(config: ViTConfig) -> dict:
    """Arguments for ``timm.models.vision_transformer.VisionTransformer`` (``deit.VisionTransformerDistilled``
    for a distilled config) that build the same architecture."""
    check_timm(config)
    pool = {"cls": "token", "mean": "avg", "map": "map"}[config.pool]
    kwargs = dict(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.in_channels,
        num_classes=config.num_classes, embed_dim=config.dim, depth=config.depth, num_heads=config.heads,
        mlp_ratio=config.hidden_dim / config.dim, qkv_bias=config.qkv_bias, class_token=config.class_token,
        global_pool=pool, no_embed_class=config.pos_embed == "learned_patches",
        pos_embed="none" if config.pos_embed == "none" else "learn", init_values=config.init_values,
        reg_tokens=config.reg_tokens, dynamic_img_size=config.dynamic_img_size,
        patch_drop_rate=config.patch_dropout,
    )
    extra = dict(fc_norm=config.fc_norm, qk_norm=config.qk_norm or None, pre_norm=config.norm_pre or None,
                 act_layer=None if config.act == "gelu" else config.act, final_norm=None if config.final_norm else False)
    if config.norm_eps != 1e-6:  # timm's default LayerNorm eps
        extra["norm_layer"] = partial(nn.LayerNorm, eps=config.norm_eps)
    return {**kwargs, **{key: value for key, value in extra.items() if value is not None}}


def check_timm(config: ViTConfig) -> None:
    """A one-line error if timm's ``VisionTransformer`` cannot express ``config``."""
    unexpressible("timm's VisionTransformer", {
        **beyond_timm(config),
        "EVA-02's options (rope, swiglu, key_bias=False, qkv_layout='split'; timm's Eva)": is_eva(config),
    })


def beyond_timm(config: ViTConfig) -> dict[str, bool]:
    """The :func:`unexpressible` problems of a config for both timm ViT classes (``VisionTransformer``, ``Eva``)."""
    return {
        "post-norm blocks": config.norm != "pre",
        "attention across the batch": config.attention_axis != "tokens",
        f"position embedding {config.pos_embed!r}": config.pos_embed.startswith("sincos2d"),
        "a convolutional stem": config.stem != "patch",
        "pooling 'cls_mean'": config.pool == "cls_mean",
        "plain-bicubic position resampling at run time (pos_embed_antialias=False)":
            config.dynamic_img_size and not config.pos_embed_antialias,
    }


def is_eva(config: ViTConfig) -> bool:
    """Whether ``config`` uses an option that only timm's ``Eva`` has (RoPE, SwiGLU, no key bias, split q/k/v)."""
    return config.rope or config.swiglu or (config.qkv_bias and not config.key_bias) or config.qkv_layout == "split"


def architecture_hints(name: str | None) -> dict:
    """What a timm architecture name (``architecture`` in the ``config.json`` of timm's Hub folders) tells that
    the weights do not, where vitkit registers that name: heads, LayerNorm eps, the MLP's activation."""
    if name not in aliases():
        return {}
    config = get_config(name)
    hints = {"heads": config.heads, "norm_eps": config.norm_eps, "act": config.act}
    return {**hints, "rope": config.rope, "rope_grid": config.rope_grid} if config.rope else hints


def timm_hints(state: dict[str, torch.Tensor]) -> dict:
    """Config fields that timm's key names tell but vitkit's do not: the pooling and where the final norm is
    (``fc_norm``), and CLIP's LayerNorm eps. A one-line error for a timm option vitkit does not have."""
    refuse_unsupported(state, UNSUPPORTED, "timm ViT")
    hints = pool_hints(state)
    if "norm_pre.weight" in state:
        hints["norm_eps"] = 1e-5  # timm's CLIP towers, its only ViTs with pre_norm, use LayerNorm's default eps
    return hints


def refuse_unsupported(state: dict[str, torch.Tensor], unsupported: list[tuple[str, str]], model: str) -> None:
    """A one-line error naming the first key of ``state`` that shows an option vitkit does not have."""
    for pattern, option in unsupported:
        key = next((key for key in sorted(state) if re.match(pattern, key)), None)
        if key is not None:
            raise VitkitError(f"this {model} uses {option} (key {key}), which vitkit does not support")


def pool_hints(state: dict[str, torch.Tensor]) -> dict:
    """The pooling and where the final norm is, from timm's key names (``attn_pool``, ``fc_norm``, ``cls_token``)."""
    if "attn_pool.latent" in state:
        hints: dict = {"pool": "map"}
    else:
        hints = {"pool": "mean" if "fc_norm.weight" in state or "cls_token" not in state else "cls"}
    if "fc_norm.weight" in state:
        hints["fc_norm"] = True
    elif hints["pool"] == "mean" and "norm.weight" in state:
        hints["fc_norm"] = False  # every token normed, then averaged (timm's fc_norm=False)
    if "norm.weight" not in state and "fc_norm.weight" not in state:
        hints["final_norm"] = False  # timm's final_norm=False (its blocks are always pre-norm)
    if "norm_pre.weight" in state:
        hints["norm_eps"] = 1e-5  # timm's CLIP towers, its only ViTs with pre_norm, use LayerNorm's default eps
    return hints
