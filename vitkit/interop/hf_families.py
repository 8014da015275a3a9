"""transformers' other image ViTs <-> vitkit: DeiT with its teacher head, DINOv2 (with and without registers) and
the CLIP and SigLIP image towers, each a :class:`Family`: its key map (pairs, ``keymap.KeyMap``), the prefix its
classifier puts before the encoder, and its two architectures (with a head, and without).

What each transformers head is in vitkit's terms:

- ``DeiTForImageClassificationWithTeacher``: ``distilled=True`` (the mean of the [CLS] and distillation heads).
- ``Dinov2ForImageClassification`` / ``...WithRegisters``: ``pool='cls_mean'`` ([CLS] and the mean patch token,
  concatenated); the registers' model adds no position to them, so it is ``pos_embed='learned_patches'`` with the
  [CLS] position folded into the [CLS] token (exact at every input size).
- ``CLIPForImageClassification``: the mean patch token *without* CLIP's ``post_layernorm`` (``pool='mean'``,
  ``final_norm=False``); ``CLIPVisionModel``'s ``pooler_output`` is the normed [CLS] (``pool='cls'``).
- ``SiglipForImageClassification``: the mean of all normed tokens (``pool='mean'``, ``fc_norm=False``); its
  attention-pooling head is unused there and dropped; ``SiglipVisionModel``'s ``pooler_output`` is it
  (``pool='map'``).

Config files both ways are in ``hf_family_configs.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig
from .hf import ENCODER_PAIRS
from .keymap import KeyMap, fuse_qkv, split_qkv


@dataclass(frozen=True)
class Family:
    """One transformers model family vitkit reads and writes."""

    name: str
    """transformers' ``model_type`` of the classifier (``deit``, ``dinov2``, ...)."""
    keymap: KeyMap
    classifier: str
    """The architecture with a classification head."""
    headless: str
    """The architecture without one (vitkit's ``num_classes=0``)."""
    heads: tuple[str, ...] = ("classifier.",)
    """Key prefixes of the classifier's own heads, which the encoder prefix does not precede."""


def _dino_layer(theirs: str, ours: str) -> tuple[str, str]:
    return f"encoder.layer.{{n}}.{theirs}", f"blocks.{{n}}.{ours}"


def _tower_layer(theirs: str, ours: str) -> tuple[str, str]:
    return f"encoder.layers.{{n}}.{theirs}.{{p}}", f"blocks.{{n}}.{ours}.{{p}}"


_DEIT_PAIRS = [("embeddings.distillation_token", "dist_token.token"),
               *[pair for pair in ENCODER_PAIRS if pair[1] != "head.{p}"],
               ("cls_classifier.{p}", "head.{p}"), ("distillation_classifier.{p}", "head_dist.{p}")]
_DINO_PAIRS = [
    ("embeddings.cls_token", "cls_token.token"), ("embeddings.register_tokens", "reg_token.token"),
    ("embeddings.position_embeddings", "pos_embed.weight"),
    ("embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    *[_dino_layer(f"{theirs}.{{p}}", f"{ours}.{{p}}") for theirs, ours in [
        ("norm1", "norm1"), ("attention.attention.query", "attn.q"), ("attention.attention.key", "attn.k"),
        ("attention.attention.value", "attn.v"), ("attention.output.dense", "attn.proj"), ("norm2", "norm2"),
        ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")]],
    _dino_layer("layer_scale1.lambda1", "ls1.gamma"), _dino_layer("layer_scale2.lambda1", "ls2.gamma"),
    ("layernorm.{p}", "norm.{p}"), ("classifier.{p}", "head.{p}"),
]
# CLIP's and SigLIP's image towers; SigLIP's attention pooling keeps q, k and v in one in_proj (split below).
_TOWER_PAIRS = [
    ("embeddings.class_embedding", "cls_token.token"), ("embeddings.patch_embedding.{p}", "patch_embed.proj.{p}"),
    ("embeddings.position_embedding.weight", "pos_embed.weight"), ("pre_layrnorm.{p}", "norm_pre.{p}"),
    *[_tower_layer(theirs, ours) for theirs, ours in [
        ("layer_norm1", "norm1"), ("self_attn.q_proj", "attn.q"), ("self_attn.k_proj", "attn.k"),
        ("self_attn.v_proj", "attn.v"), ("self_attn.out_proj", "attn.proj"), ("layer_norm2", "norm2"),
        ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")]],
    ("post_layernorm.{p}", "norm.{p}"), ("head.probe", "pool.latent"),
    ("head.attention.in_proj_weight", "pool.in_proj.weight"), ("head.attention.in_proj_bias", "pool.in_proj.bias"),
    *[(f"head.{theirs}.{{p}}", f"pool.{ours}.{{p}}") for theirs, ours in [
        ("attention.out_proj", "proj"), ("layernorm", "norm"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")]],
    ("classifier.{p}", "head.{p}"),
]

FAMILIES = {family.name: family for family in [
    Family("deit", KeyMap("transformers DeiT", _DEIT_PAIRS, prefix="deit.", dropped=["pooler.dense.{p}"]),
           "DeiTForImageClassificationWithTeacher", "DeiTModel", ("cls_classifier.", "distillation_classifier.")),
    Family("dinov2", KeyMap("transformers DINOv2", _DINO_PAIRS, prefix="dinov2.", dropped=["embeddings.mask_token"]),
           "Dinov2ForImageClassification", "Dinov2Model"),
    Family("dinov2_with_registers", KeyMap("transformers DINOv2 with registers", _DINO_PAIRS,
                                           prefix="dinov2_with_registers.", dropped=["embeddings.mask_token"]),
           "Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersModel"),
    Family("clip", KeyMap("transformers CLIP", _TOWER_PAIRS, prefix="vision_model."),
           "CLIPForImageClassification", "CLIPVisionModel"),
    Family("siglip", KeyMap("transformers SigLIP", _TOWER_PAIRS, prefix="vision_model."),
           "SiglipForImageClassification", "SiglipVisionModel"),
]}


def family_of_keys(keys: list[str]) -> Family | None:
    """The family whose checkpoint has these (transformers) keys; None for transformers' plain ViT."""
    def has(suffix: str) -> bool:
        return any(key.endswith(suffix) for key in keys)

    if has("embeddings.distillation_token"):
        return FAMILIES["deit"]
    if has("embeddings.register_tokens") or any(key.startswith("dinov2_with_registers.") for key in keys):
        return FAMILIES["dinov2_with_registers"]
    if has("layer_scale1.lambda1"):
        return FAMILIES["dinov2"]
    if has("embeddings.class_embedding"):
        return FAMILIES["clip"]
    if has("embeddings.patch_embedding.weight"):
        return FAMILIES["siglip"]
    return None


def family_of_config(config: ViTConfig) -> Family | None:
    """The transformers family that writes ``config``: the one its options point to (None: plain ViT)."""
    if config.distilled:
        return FAMILIES["deit"]
    if config.init_values is not None:
        return FAMILIES["dinov2_with_registers" if config.reg_tokens else "dinov2"]
    if config.norm_pre:
        return FAMILIES["clip"]
    if not config.class_token:
        return FAMILIES["siglip"]
    return None


def family_to_vitkit(family: Family, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``family`` checkpoint renamed and reshaped for vitkit (the heads transformers does not use dropped)."""
    _refuse_unsupported(family, state)
    renamed = family.keymap.to_vitkit(state)
    classifier = "head.weight" in renamed
    if "cls_token.token" in renamed:
        renamed["cls_token.token"] = renamed["cls_token.token"].reshape(1, 1, -1)
    if renamed["pos_embed.weight"].ndim == 2:
        renamed["pos_embed.weight"] = renamed["pos_embed.weight"].unsqueeze(0)
    if "pool.in_proj.weight" in renamed:
        _split_in_proj(renamed)
    if family.name == "dinov2_with_registers":  # [CLS]'s position into the token: registers get none either
        position = renamed["pos_embed.weight"]
        renamed["cls_token.token"] = renamed["cls_token.token"] + position[:, :1]
        renamed["pos_embed.weight"] = position[:, 1:]
    unused = {"clip": "norm.", "siglip": "pool."}.get(family.name) if classifier else None
    return fuse_qkv({key: value for key, value in renamed.items() if not (unused and key.startswith(unused))})


def family_from_vitkit(family: Family, state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """vitkit weights in ``family``'s Hub layout (the classifier's keys, or the headless model's)."""
    state = split_qkv(dict(state))
    dim = config.dim
    if "pool.q.weight" in state:
        for part in ("weight", "bias"):
            state[f"pool.in_proj.{part}"] = torch.cat([state.pop(f"pool.q.{part}"), state.pop(f"pool.kv.{part}")])
    if family.name in ("clip", "siglip"):
        if "cls_token.token" in state:
            state["cls_token.token"] = state["cls_token.token"].reshape(dim)
        state["pos_embed.weight"] = state["pos_embed.weight"][0]
    if family.name == "clip" and not config.final_norm:  # unused by CLIPForImageClassification, but expected
        state |= {"norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim)}
    if config.pos_embed == "learned_patches":  # DINOv2's [CLS] position, zero: the token already holds it
        position = state["pos_embed.weight"]
        state["pos_embed.weight"] = torch.cat([position.new_zeros(1, 1, dim), position], dim=1)
    renamed = family.keymap.from_vitkit(state)
    if family.name.startswith("dinov2"):
        renamed["embeddings.mask_token"] = torch.zeros(1, dim)  # masked image modelling only
    headless = not config.num_classes
    prefix = family.keymap.prefix if family.name in ("clip", "siglip") or not headless else ""
    return {key if key.startswith(family.heads) else prefix + key: value for key, value in renamed.items()}


def _split_in_proj(state: dict[str, torch.Tensor]) -> None:
    """SigLIP's fused q, k, v of the attention pooling -> vitkit's ``pool.q`` and ``pool.kv``."""
    for part in ("weight", "bias"):
        fused = state.pop(f"pool.in_proj.{part}")
        dim = fused.shape[0] // 3
        state[f"pool.q.{part}"], state[f"pool.kv.{part}"] = fused[:dim], fused[dim:]


# Keys of transformers options vitkit cannot represent exactly: (family or "" for any, key pattern, what it is).
_UNSUPPORTED = [
    ("", r".*mlp\.weights_in\.weight", "DINOv2's SwiGLU MLP (use_swiglu_ffn)"),
    ("deit", r"classifier\.weight", "DeiTForImageClassification's single head on [CLS] beside a distillation "
                                    "token (vitkit averages both heads: DeiTForImageClassificationWithTeacher)"),
    ("", r"text_model\..*", "a text tower (save the CLIPVisionModel / SiglipVisionModel or the "
                            "*ForImageClassification instead)"),
]


def _refuse_unsupported(family: Family, state: dict[str, torch.Tensor]) -> None:
    for name, pattern, what in _UNSUPPORTED:
        key = next((key for key in sorted(state) if re.fullmatch(pattern, key)), None)
        if key is not None and name in ("", family.name):
            raise VitkitError(f"this transformers {family.name} checkpoint has {what} (key {key}), which vitkit "
                              "does not support")
