"""The Hugging Face format as one whole: transformers' ViT (``hf.py``) and the families of ``hf_families.py``
(DeiT, DINOv2, CLIP, SigLIP). Which one a checkpoint or a config is, what its keys and ``config.json`` tell
vitkit, whether a family can hold a vitkit config (a one-line error naming what it cannot), and the
``config.json`` vitkit writes for it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError
from ..models.config import ViTConfig
from ..models.heads import norm_after_pool
from .hf import (act_from_hf, check_hf, class_names_from, encoder_fields, from_hf, hf_config_json, label_fields,
                 to_hf)
from .hf_families import Family, family_from_vitkit, family_of_config, family_of_keys, family_to_vitkit
from .keymap import beyond_paper_vit, unexpressible

FAMILY_MODEL_TYPES = {"deit": "deit", "dinov2": "dinov2", "dinov2_with_registers": "dinov2_with_registers",
                      "clip": "clip", "clip_vision_model": "clip", "siglip": "siglip", "siglip_vision_model": "siglip"}
"""transformers ``model_type`` -> family name."""
# The hidden_act each family's config class defaults to (a config.json may leave it out).
_DEFAULT_ACTS = {"clip": "quick_gelu", "siglip": "gelu_pytorch_tanh"}


def read_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any transformers image ViT state dict renamed for vitkit."""
    family = family_of_keys(list(state))
    return from_hf(state) if family is None else family_to_vitkit(family, state)


def write_hf(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """vitkit weights in the Hub layout of the transformers model that holds ``config``."""
    family = family_of_config(config)
    if family is None:
        return to_hf(state, config)
    check_family(family, config)
    return family_from_vitkit(family, state, config)


def check_hf_any(config: ViTConfig) -> None:
    """A one-line error unless some transformers image model holds ``config`` exactly."""
    family = family_of_config(config)
    check_hf(config) if family is None else check_family(family, config)


def hf_key_hints(state: dict[str, Any]) -> dict[str, Any]:
    """Config fields the transformers keys tell: the family's LayerNorm eps, activation and head."""
    family = family_of_keys(list(state))
    # transformers' interpolate_pos_encoding is plain bicubic, but for DINOv2-with-registers (antialiased, as timm)
    hints = {} if family is not None and family.name == "dinov2_with_registers" else {"pos_embed_antialias": False}
    if family is None or family.name == "deit":  # DeiT: transformers' ViT defaults (eps 1e-12)
        return hints
    classifier = any(key == "classifier.weight" for key in state)
    if family.name.startswith("dinov2"):
        return {**hints, "norm_eps": 1e-6, "pool": "cls_mean" if classifier else "cls"}
    if family.name == "clip":
        head = {"pool": "mean", "final_norm": False, "fc_norm": False} if classifier else {"pool": "cls"}
        return {**hints, "norm_eps": 1e-5, "act": "quick_gelu", **head}
    attention_pool = not classifier and any(key.endswith("head.probe") for key in state)
    return {**hints, "norm_eps": 1e-6, "act": "gelu_tanh", "pool": "map" if attention_pool else "mean",
            "fc_norm": False}


def family_config_hints(data: dict[str, Any]) -> dict[str, Any]:
    """Config fields (and class names) from a DeiT / DINOv2 / CLIP / SigLIP ``config.json``."""
    family = FAMILY_MODEL_TYPES[data["model_type"]]
    vision = data["vision_config"] if isinstance(data.get("vision_config"), dict) else data
    where = f"this transformers {data['model_type']} config.json"
    if vision.get("use_swiglu_ffn"):
        raise VitkitError(f"{where} sets use_swiglu_ffn (DINOv2's SwiGLU MLP), which vitkit does not support")
    table = {"num_attention_heads": "heads", "layer_norm_eps": "norm_eps", "image_size": "image_size",
             "num_channels": "in_channels", "layerscale_value": "init_values"}
    hints = {field: vision[key] for key, field in table.items() if vision.get(key) is not None}
    hints["act"] = act_from_hf(vision.get("hidden_act", _DEFAULT_ACTS.get(family, "gelu")), where)
    names = class_names_from(data)
    return hints | {"class_names": names} if names else hints


def check_family(family: Family, config: ViTConfig) -> None:
    """A one-line error naming what transformers' model of ``family`` cannot express in ``config``."""
    architecture = family.classifier if config.num_classes else family.headless
    unexpressible(f"transformers' {architecture}", _family_problems(family, config))


def _family_problems(family: Family, config: ViTConfig) -> dict[str, bool]:
    """What of ``config`` the family lacks: the plain ViT's limits, less what the family adds, plus its own."""
    lifted = {"deit": ("a distillation token",),
              "dinov2": ("layer scale", "register tokens", "position embedding 'learned_patches'", "pooling"),
              "clip": ("a norm before the blocks", "pooling", "no final norm"),
              "siglip": ("no [CLS] token", "pooling")}[family.name.replace("_with_registers", "")]
    problems = {name: present for name, present in beyond_paper_vit(config).items() if not name.startswith(lifted)}
    headless, pool = not config.num_classes, config.pool
    problems["non-square images or patches"] = (config.image_size[0] != config.image_size[1]
                                                 or config.patch_size[0] != config.patch_size[1])
    if family.name.startswith("dinov2"):
        problems["registers with positions of their own (pos_embed='learned')"] = (
            config.reg_tokens > 0 and config.pos_embed == "learned")
        problems[f"pooling {pool!r} (its classifier reads pool='cls_mean', the headless model's pooler "
                 "pool='cls')"] = pool != ("cls" if headless else "cls_mean")
        problems[f"an MLP of width {config.hidden_dim}, not a whole multiple of dim (its mlp_ratio is an int)"] = (
            config.hidden_dim % config.dim != 0)
    if family.name in ("clip", "siglip"):
        problems["attention without qkv bias"] = not config.qkv_bias
    if family.name == "clip":
        problems["a head other than on the mean patch token without the final norm (pool='mean', "
                 "final_norm=False)"] = not headless and (pool != "mean" or config.final_norm)
        problems["features other than the normed [CLS] (pool='cls')"] = headless and (
            pool != "cls" or not config.final_norm)
    if family.name == "siglip":
        problems["a head other than on the mean of the normed tokens (pool='mean', fc_norm=False)"] = (
            not headless and (pool != "mean" or norm_after_pool(config)))
        problems[f"pooling {pool!r} with the final norm after it"] = headless and (
            pool not in ("mean", "map") or norm_after_pool(config))
        problems["a norm before the blocks (norm_pre)"] = config.norm_pre
    return problems


def hf_config_json_any(config: ViTConfig, class_names: list[str] | None = None) -> dict[str, Any]:
    """The transformers ``config.json`` of the model that holds ``config``."""
    family = family_of_config(config)
    if family is None:
        return hf_config_json(config, class_names)
    check_family(family, config)
    architecture = family.classifier if config.num_classes else family.headless
    fields, labels = encoder_fields(config), label_fields(class_names, config.num_classes)
    if family.name == "deit":
        return {"architectures": [architecture], "model_type": "deit", **fields,
                "encoder_stride": config.patch_size[0], **labels}
    if family.name.startswith("dinov2"):
        del fields["intermediate_size"]
        dino = dict(mlp_ratio=config.hidden_dim // config.dim, layerscale_value=config.init_values,
                    use_swiglu_ffn=False, num_register_tokens=config.reg_tokens)
        return {"architectures": [architecture], "model_type": family.name, **fields, **dino, **labels}
    vision = {key: fields[key] for key in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                           "num_attention_heads", "num_channels", "image_size", "patch_size",
                                           "hidden_act", "layer_norm_eps")}
    vision["attention_dropout"] = config.attn_dropout
    if family.name == "siglip":
        vision["vision_use_head"] = config.pool == "map"
    if not config.num_classes:
        return {"architectures": [architecture], "model_type": f"{family.name}_vision_model", **vision}
    return {"architectures": [architecture], "model_type": family.name, "vision_config": vision,
            "text_config": {}, **labels}
