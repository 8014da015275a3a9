"""The ViT config of a checkpoint, read from the shapes of its (vitkit-named) weights.

Shapes give the width, depth, patch size, channels, MLP size, classes and which tokens and biases exist. They
cannot give the number of attention heads, the LayerNorm eps or a non-square image size: those come as
``hints`` (a ``config.json`` beside the weights, the source library's defaults, or the caller), and heads
fall back to the standard ViT sizes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import Any

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig, to_pair
from ..models.registry import VIT_SIZES

log = logging.getLogger("vitkit")

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ViTConfig)}
_HEADS_BY_WIDTH = {dim: heads for dim, _, heads in VIT_SIZES.values()}


def infer_config(state: dict[str, torch.Tensor], hints: dict[str, Any] | None = None) -> ViTConfig:
    """The :class:`ViTConfig` whose model has exactly the weights in ``state``; ``hints`` fill in the rest."""
    hints = {k: v for k, v in (hints or {}).items() if k in _CONFIG_FIELDS}
    proj = _require(state, "patch_embed.proj.weight")
    dim, in_channels, *patch = proj.shape
    depth = len({m[1] for key in state if (m := re.match(r"blocks\.(\d+)\.", key))})
    hidden = _require(state, "blocks.0.mlp.fc1.weight").shape[0]
    fc2 = state.get("blocks.0.mlp.fc2.weight")
    swiglu = fc2 is not None and hidden == 2 * fc2.shape[1]  # SwiGLU: gate and value stacked in fc1
    hidden = hidden // 2 if swiglu else hidden
    ratio = hints.get("mlp_ratio", 4.0)
    class_token = "cls_token.token" in state
    reg_tokens = state["reg_token.token"].shape[1] if "reg_token.token" in state else 0
    layer_scale = "blocks.0.ls1.gamma" in state  # its starting value is not in the weights: any positive one
    fields = dict(
        dim=dim, in_channels=in_channels, patch_size=tuple(patch), depth=depth,
        mlp_ratio=ratio, mlp_dim=None if hidden == int(dim * ratio) else hidden,
        qkv_bias="blocks.0.attn.qkv.bias" in state or "blocks.0.attn.q_bias" in state,
        key_bias="blocks.0.attn.q_bias" not in state, swiglu=swiglu, mlp_norm="blocks.0.mlp.norm.weight" in state,
        class_token=class_token,
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,
        # Only pre-norm models end with a LayerNorm.
        norm="pre" if "norm.weight" in state or hints.get("final_norm") is False else "post",
        heads=hints.get("heads") or guess_heads(dim),
        pool=hints.get("pool") or ("map" if "pool.latent" in state else "cls" if class_token else "mean"),
        reg_tokens=reg_tokens,
        init_values=(hints.get("init_values") or 1e-5) if layer_scale else None,
        distilled="dist_token.token" in state, qk_norm="blocks.0.attn.q_norm.weight" in state,
        norm_pre="norm_pre.weight" in state,
    )
    prefix = int(class_token) + int(fields["distilled"]) + reg_tokens
    fields.update(_position_layout(state, tuple(patch), prefix, hints))
    try:
        return ViTConfig(**{**hints, **fields})
    except VitkitError as error:
        raise VitkitError(f"the checkpoint's weights do not form a valid ViT: {error}") from None


def guess_heads(dim: int) -> int:
    """The head count of the standard ViT of width ``dim`` (head size 64 for unknown widths)."""
    if dim in _HEADS_BY_WIDTH:
        return _HEADS_BY_WIDTH[dim]
    if dim % 64:
        raise VitkitError(f"cannot guess the attention heads of a width-{dim} ViT; pass heads=N")
    log.warning(f"vitkit: assumed {dim // 64} attention heads (head size 64) for width {dim}; pass heads=N if not")
    return dim // 64


def _position_layout(
    state: dict[str, torch.Tensor], patch: tuple[int, int], prefix: int, hints: dict[str, Any]
) -> dict[str, Any]:
    """``pos_embed`` kind and ``image_size``: from the embedding's length (with or without places for the
    ``prefix`` tokens, [CLS] and registers), or the hinted image size."""
    hinted_size = to_pair(hints["image_size"]) if "image_size" in hints else None
    if "pos_embed.weight" not in state:
        kind = hints.get("pos_embed") if str(hints.get("pos_embed")).startswith("sincos2d") else "none"
        return {"pos_embed": kind, "image_size": hinted_size or (224, 224)}
    length = state["pos_embed.weight"].shape[1]
    if hinted_size is not None:
        grid = (hinted_size[0] // patch[0], hinted_size[1] // patch[1])
        patches = grid[0] * grid[1]
        if length not in (patches, patches + prefix):
            raise VitkitError(
                f"the position embedding has {length} positions, but image size {hinted_size} with patch {patch} "
                f"has {patches} patches; pass the checkpoint's own image_size"
            )
        return {"pos_embed": _kind(prefix, covers_prefix=length == patches + prefix), "image_size": hinted_size}
    for covered in ((prefix, 0) if prefix else (0,)):
        side = math.isqrt(length - covered)
        if side * side == length - covered:
            return {"pos_embed": _kind(prefix, covers_prefix=covered > 0),
                    "image_size": (side * patch[0], side * patch[1])}
    raise VitkitError(
        f"the position embedding's {length} positions are no square grid; pass the checkpoint's image_size"
    )


def _kind(prefix: int, covers_prefix: bool) -> str:
    # timm's no_embed_class: prefix tokens without positions of their own is vitkit's "learned_patches".
    return "learned_patches" if prefix and not covers_prefix else "learned"


def _require(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise VitkitError(f"the checkpoint has no {key} (after renaming); is it a ViT?")
    return state[key]
