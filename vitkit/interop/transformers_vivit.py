"""transformers ``VivitForVideoClassification`` weights -> vitkit's ViViT Model 1 (spatio-temporal attention).

transformers keeps separate q, k and v projections; vitkit fuses them into one ``qkv`` Linear (q, k, v stacked
in that order along the output features), so those three are concatenated first, then every key is renamed by
a table. transformers' ViViT is Model 1 with a [CLS] token, tubelet embedding and pre-norm blocks; its default
activation ``gelu_fast`` is the tanh approximation of GELU, while vitkit uses the exact GELU (build the
transformers model with ``hidden_act="gelu"`` for identical outputs; the two differ by about 1e-3).
"""

from __future__ import annotations

import re

import torch

from ..models.vivit_config import ViViTConfig
from .keymap import rename_keys

_TRANSFORMERS_TO_VITKIT = [
    (r"vivit\.embeddings\.cls_token", "cls_token.token"),
    (r"vivit\.embeddings\.position_embeddings", "pos_embed.weight"),
    (r"vivit\.embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"vivit\.layers\.(\d+)\.layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"vivit\.layers\.(\d+)\.layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"vivit\.layers\.(\d+)\.attention\.qkv\.(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (r"vivit\.layers\.(\d+)\.attention\.o_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"vivit\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"vivit\.layernorm\.(weight|bias)", r"norm.\1"),
    (r"classifier\.(weight|bias)", r"head.\1"),
    (r"vivit\.pooler\..*", ""),  # VivitModel's tanh pooler is not used for classification
]

_QKV = re.compile(r"^(.*attention)\.q_proj\.(weight|bias)$")


def from_transformers_vivit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ViViT state dict renamed for a vitkit ``spatiotemporal`` ViViT with ``pool="cls"``."""
    return rename_keys(_fuse_qkv(state), _TRANSFORMERS_TO_VITKIT, "transformers ViViT")


def transformers_vivit_kwargs(config: ViViTConfig) -> dict:
    """Arguments for ``transformers.VivitConfig`` that build the same architecture as ``config``."""
    if config.variant != "spatiotemporal" or config.pool != "cls":
        raise ValueError("transformers' ViViT is Model 1 (spatiotemporal) with a [CLS] token")
    return dict(
        image_size=config.image_size[0] if config.image_size[0] == config.image_size[1] else list(config.image_size),
        num_frames=config.num_frames, tubelet_size=list(config.tubelet_size), num_channels=config.in_channels,
        hidden_size=config.dim, num_hidden_layers=config.depth, num_attention_heads=config.heads,
        intermediate_size=config.hidden_dim, hidden_act="gelu", layer_norm_eps=config.norm_eps,
        qkv_bias=config.qkv_bias, num_labels=config.num_classes,
    )


def _fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    fused = dict(state)
    for key in list(state):
        match = _QKV.match(key)
        if match:
            prefix, kind = match.groups()
            parts = [fused.pop(f"{prefix}.{p}_proj.{kind}") for p in "qkv"]
            fused[f"{prefix}.qkv.{kind}"] = torch.cat(parts, dim=0)
    return fused
