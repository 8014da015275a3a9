"""timm ``Eva`` weights (EVA-02, timm's ``eva.py``) <-> vitkit.

timm's Eva names differ from its VisionTransformer's in the layer scale (``gamma_1`` / ``gamma_2``) and the
attention biases (``q_bias`` / ``v_bias``: no key bias), and it has two layouts that vitkit computes fused:
separate ``q_proj`` / ``k_proj`` / ``v_proj`` (``qkv_fused=False``: EVA-02 B and L; kept as ``qkv_layout``) and
SwiGLU's separate ``fc1_g`` / ``fc1_x`` (timm uses them exactly when the MLP has its norm, ``scale_mlp``).

RoPE has no weights, so a file does not show it. A timm Eva file with a SwiGLU MLP is taken for EVA-02, which
timm builds with RoPE on the grid of 224 px (``ref_feat_shape`` 16x16 for patch 14) at every size; give
``rope=False`` or ``rope_grid=`` to ``vitkit.load`` for anything else. ``timm:eva02_*`` names and files vitkit
wrote carry their exact config.
"""

from __future__ import annotations

import logging
import re
from functools import partial

import torch
from torch import nn

from ..errors import VitkitError
from ..models.config import ViTConfig
from ..models.heads import norm_after_pool
from ..models.registry import aliases
from .keymap import KeyMap, join_parts, split_parts, unexpressible
from .timm import (beyond_timm, check_timm, final_norm_names, is_eva, pool_hints, refuse_unsupported, timm_kwargs,
                   to_timm)

log = logging.getLogger("vitkit")

KEYMAP = KeyMap("timm Eva", [
    ("cls_token", "cls_token.token"),
    ("reg_token", "reg_token.token"),
    ("pos_embed", "pos_embed.weight"),
    ("patch_embed.proj.{p}", "patch_embed.proj.{p}"),
    ("norm_pre.{p}", "norm_pre.{p}"),
    *[(f"blocks.{{n}}.{part}.{{p}}", f"blocks.{{n}}.{part}.{{p}}") for part in (
        "norm1", "attn.qkv", "attn.q_norm", "attn.k_norm", "attn.proj", "norm2", "mlp.fc1", "mlp.norm", "mlp.fc2")],
    *[(f"blocks.{{n}}.attn.{bias}", f"blocks.{{n}}.attn.{bias}") for bias in ("q_bias", "v_bias")],
    ("blocks.{n}.gamma_1", "blocks.{n}.ls1.gamma"),
    ("blocks.{n}.gamma_2", "blocks.{n}.ls2.gamma"),
    (("norm.{p}", "fc_norm.{p}"), "norm.{p}"),
    ("head.{p}", "head.{p}"),
])
SIGNATURE = r"blocks\.\d+\.(?:attn\.(?:q_bias|q_proj\.weight)|gamma_1)"
"""Keys only timm's Eva writes (a plain timm ViT has none of them; one with a SwiGLU MLP has ``fc1_g`` too). An Eva
without q/v biases and layer scale has none either: it reads as a timm ViT, which refuses its SwiGLU."""

# timm Eva options vitkit does not have, recognised by a key they add.
UNSUPPORTED = [
    (r"blocks\.\d+\.attn\.norm\.", "scale_attn_inner (a norm inside attention, EVA-CLIP)"),
    (r"blocks\.\d+\.attn\.gate\.", "gated attention (gated_attn)"),
    (r"blocks\.\d+\.attn\.k_proj\.bias", "a key bias in separate projections"),
    (r"rope\.", "learned RoPE frequencies (rope_type='mixed')"),
    (r"attn_pool\.", "attention pooling (global_pool='map')"),
]
_SPLIT_QKV = re.compile(r"^blocks\.\d+\.attn\.(?P<part>[qkv]_proj)\.weight$")
_FUSED_QKV = re.compile(r"^blocks\.\d+\.attn\.(?P<part>qkv)\.weight$")
_SPLIT_FC1 = re.compile(r"^blocks\.\d+\.mlp\.(?P<part>fc1_[gx])\.(?:weight|bias)$")
_PACKED_FC1 = re.compile(r"^blocks\.\d+\.mlp\.(?P<part>fc1)\.(?:weight|bias)$")
_BIASES = [(r"\.attn\.q_proj\.bias$", ".attn.q_bias"), (r"\.attn\.v_proj\.bias$", ".attn.v_bias")]


def from_timm_eva(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm Eva state dict renamed for :class:`vitkit.VisionTransformer` (split layouts joined)."""
    state = {_first_sub(_BIASES, key): value for key, value in state.items()}
    state = join_parts(state, _SPLIT_QKV, ("q_proj", "k_proj", "v_proj"), "qkv", "attention weights")
    state = join_parts(state, _SPLIT_FC1, ("fc1_g", "fc1_x"), "fc1", "SwiGLU weights")
    return KEYMAP.to_vitkit(state)


def to_timm_eva(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """A vitkit ViT state dict renamed for timm's ``Eva`` built with :func:`eva_kwargs` (its layouts)."""
    check_eva(config)
    state = final_norm_names(KEYMAP.from_vitkit(state), config)
    if config.mlp_norm:  # timm's SwiGLU with a norm keeps the gate and value projections apart
        state = split_parts(state, _PACKED_FC1, ("fc1_g", "fc1_x"))
    if config.qkv_layout == "split":
        state = split_parts(state, _FUSED_QKV, ("q_proj", "k_proj", "v_proj"))
        swaps = [(r"\.attn\.q_bias$", ".attn.q_proj.bias"), (r"\.attn\.v_bias$", ".attn.v_proj.bias")]
        state = {_first_sub(swaps, key): value for key, value in state.items()}
    return state


def _first_sub(rules: list[tuple[str, str]], key: str) -> str:
    """``key`` rewritten by the first rule whose pattern it contains (unchanged if none does)."""
    for pattern, replacement in rules:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return key


def eva_hints(state: dict[str, torch.Tensor]) -> dict:
    """Config fields a timm Eva file tells by its key names (pooling, final norm, q/k/v layout) or implies (EVA-02's
    RoPE with a SwiGLU MLP, see the module doc); a one-line error for an Eva option vitkit does not have."""
    refuse_unsupported(state, UNSUPPORTED, "timm Eva")
    if any(key.endswith(".gamma_1") for key in state) and not any(key.endswith(".gamma_2") for key in state):
        raise VitkitError("this timm Eva uses attn_only_layer_scale (key blocks.0.gamma_1 without gamma_2), which "
                          "vitkit does not support")
    hints = {**pool_hints(state), "qkv_layout": "split" if "blocks.0.attn.q_proj.weight" in state else "fused",
             "key_bias": False}
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    gated = "blocks.0.mlp.fc1_g.weight" in state or (fc1 is not None and fc2 is not None
                                                     and fc1.shape[0] == 2 * fc2.shape[1])
    if gated and "patch_embed.proj.weight" in state:
        patch = state["patch_embed.proj.weight"].shape[-2:]
        hints.update(rope=True, rope_grid=(224 // patch[0], 224 // patch[1]))
    return hints


def check_eva_source(architecture: str | None, exact: bool, hints: dict) -> None:
    """For a timm Eva file: a one-line error when timm's ``architecture`` name (``timm:NAME``, its ``config.json``)
    is an Eva vitkit does not register, whose RoPE settings the weights cannot tell; one log line when nothing but
    the weights is known (no name, no vitkit header: ``exact``) and EVA-02's RoPE is assumed."""
    known = [name for name in aliases() if name.startswith("eva02_")]
    if architecture is not None and architecture not in known:
        raise VitkitError(f"timm's {architecture} is an Eva whose RoPE settings vitkit cannot tell from its weights; "
                          f"vitkit reads timm's {', '.join(known)} (or a file, assuming EVA-02's RoPE)")
    if architecture is None and not exact and hints.get("rope"):
        log.warning(f"vitkit: a timm Eva file with a SwiGLU MLP: assumed EVA-02's RoPE (reference grid "
                    f"{'x'.join(map(str, hints['rope_grid']))}); pass rope=False or rope_grid= if not")


def eva_kwargs(config: ViTConfig) -> dict:
    """Arguments for ``timm.models.eva.Eva`` that build the same architecture."""
    check_eva(config)
    kwargs = dict(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.in_channels,
        num_classes=config.num_classes, global_pool={"cls": "token", "mean": "avg"}[config.pool],
        embed_dim=config.dim, depth=config.depth, num_heads=config.heads, qkv_bias=config.qkv_bias,
        qkv_fused=config.qkv_layout == "fused", qk_norm=config.qk_norm, mlp_ratio=config.hidden_dim / config.dim,
        swiglu_mlp=config.swiglu, scale_mlp=config.mlp_norm, init_values=config.init_values,
        class_token=config.class_token, num_reg_tokens=config.reg_tokens,
        no_embed_class=config.pos_embed == "learned_patches", use_abs_pos_emb=config.pos_embed != "none",
        use_rot_pos_emb=config.rope, ref_feat_shape=config.rope_grid, use_pre_transformer_norm=config.norm_pre,
        use_fc_norm=config.final_norm and norm_after_pool(config),
        use_post_transformer_norm=config.final_norm and not norm_after_pool(config),
        dynamic_img_size=config.dynamic_img_size, patch_drop_rate=config.patch_dropout,
    )
    if config.norm_eps != 1e-6:  # timm's default LayerNorm eps
        kwargs["norm_layer"] = partial(nn.LayerNorm, eps=config.norm_eps)
    return kwargs


def check_eva(config: ViTConfig) -> None:
    """A one-line error if timm's ``Eva`` cannot express ``config``."""
    unexpressible("timm's Eva", {
        **beyond_timm(config),
        "a distillation token": config.distilled,
        f"pooling {config.pool!r}": config.pool not in ("cls", "mean"),
        f"act={config.act!r}": config.act != "gelu",
        "a key bias (key_bias=True with qkv_bias)": config.qkv_bias and config.key_bias,
    })


def to_timm_file(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """``vitkit convert --to timm``: the weights for timm's ``Eva`` where the config needs it, else for its
    ``VisionTransformer``."""
    return to_timm_eva(state, config) if is_eva(config) else to_timm(state, config)


def check_timm_file(config: ViTConfig) -> None:
    """A one-line error if neither of timm's classes can express ``config`` (the one :func:`to_timm_file` picks)."""
    (check_eva if is_eva(config) else check_timm)(config)


def timm_reference_kwargs(config: ViTConfig) -> dict:
    """The constructor arguments of the timm class :func:`timm_class` names, for ``config``."""
    return eva_kwargs(config) if is_eva(config) else timm_kwargs(config)


def timm_class(config: ViTConfig) -> str:
    """The timm class (under ``timm.models``) that builds ``config``'s architecture."""
    if is_eva(config):
        return "eva.Eva"
    return "deit.VisionTransformerDistilled" if config.distilled else "VisionTransformer"
