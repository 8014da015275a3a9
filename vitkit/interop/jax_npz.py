"""Original JAX/Flax ViT checkpoints (``.npz`` from google-research/vision_transformer and big_vision) -> vitkit.

Flax stores Dense kernels as [in, out] (PyTorch: [out, in]), convolutions as [H, W, in, out] and attention
projections per head ([D, heads, head_dim]), so each key maps to a vitkit key *and* a reshaping. The two
code bases name a few sub-modules differently (``MlpBlock_3`` vs ``MlpBlock_0``, ...); the table accepts both.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

import numpy as np
import torch

from ..errors import VitkitError
from .keymap import fuse_qkv, rename_keys

log = logging.getLogger("vitkit")

Reshape = Callable[[torch.Tensor], torch.Tensor]


def _dense(w: torch.Tensor) -> torch.Tensor:
    return w.T if w.ndim == 2 else w


def _conv(w: torch.Tensor) -> torch.Tensor:
    return w.permute(3, 2, 0, 1)


def _heads_in(w: torch.Tensor) -> torch.Tensor:
    # [D, heads, head_dim] -> [heads * head_dim, D]; biases [heads, head_dim] -> [heads * head_dim]
    return w.reshape(w.shape[0], -1).T if w.ndim == 3 else w.reshape(-1)


def _heads_out(w: torch.Tensor) -> torch.Tensor:
    # [heads, head_dim, D] -> [D, heads * head_dim]
    return w.reshape(-1, w.shape[-1]).T


def _same(w: torch.Tensor) -> torch.Tensor:
    return w


_BLOCK = r"Transformer/encoderblock_(\d+)/"
_ATTN = _BLOCK + r"MultiHeadDotProductAttention_[01]/"

_JAX_TO_VITKIT: list[tuple[str, str, Reshape]] = [
    (r"embedding/kernel", "patch_embed.proj.weight", _conv),
    (r"embedding/bias", "patch_embed.proj.bias", _same),
    (r"cls", "cls_token.token", _same),
    (r"(?:Transformer/posembed_input/)?pos_embedding", "pos_embed.weight", _same),
    (_BLOCK + r"LayerNorm_0/(scale|bias)", r"blocks.\1.norm1.\2", _same),
    (_BLOCK + r"LayerNorm_[12]/(scale|bias)", r"blocks.\1.norm2.\2", _same),
    (_ATTN + r"query/(kernel|bias)", r"blocks.\1.attn.q.\2", _heads_in),
    (_ATTN + r"key/(kernel|bias)", r"blocks.\1.attn.k.\2", _heads_in),
    (_ATTN + r"value/(kernel|bias)", r"blocks.\1.attn.v.\2", _heads_in),
    (_ATTN + r"out/kernel", r"blocks.\1.attn.proj.kernel", _heads_out),
    (_ATTN + r"out/bias", r"blocks.\1.attn.proj.bias", _same),
    (_BLOCK + r"MlpBlock_[03]/Dense_0/(kernel|bias)", r"blocks.\1.mlp.fc1.\2", _dense),
    (_BLOCK + r"MlpBlock_[03]/Dense_1/(kernel|bias)", r"blocks.\1.mlp.fc2.\2", _dense),
    (r"Transformer/encoder_norm/(scale|bias)", r"norm.\1", _same),
    (r"head/(kernel|bias)", r"head.\1", _dense),
]
_FLAX_WEIGHT = re.compile(r"\.(kernel|scale)$")  # Flax's names for what PyTorch calls "weight"
_PREFIXES = ("opt/target/", "params/img/", "params/", "")


def from_jax(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A JAX ViT checkpoint (``np.load`` of the ``.npz``) as a vitkit state dict."""
    params = _strip_prefix(arrays)
    params = _unstack_scanned(params)
    if "pre_logits/kernel" in params:
        # In21k checkpoints end with Dense -> tanh -> head; vitkit (like timm) drops the pre-logits layer, so
        # the old head would be meaningless: keep the encoder and let a new head be trained.
        log.warning("vitkit: dropped the JAX checkpoint's pre-logits layer and its head (as timm does)")
        params = {k: v for k, v in params.items() if not k.startswith(("pre_logits/", "head/"))}
    tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in params.items()}
    rules = [(pattern, target) for pattern, target, _ in _JAX_TO_VITKIT]
    state = rename_keys(tensors, rules, "JAX ViT", lambda rule, value: _JAX_TO_VITKIT[rule][2](value).contiguous())
    state = {_FLAX_WEIGHT.sub(".weight", key): value for key, value in state.items()}
    return fuse_qkv(state)


def jax_hints(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Config fields the shapes of a JAX checkpoint tell but the converted weights do not: the head count, and for
    a model without [CLS] (``classifier='gap'``) that its encoder_norm comes before the mean and, without a
    stored table, big_vision's fixed ``posemb_sincos_2d`` ("Better plain ViT baselines")."""
    params = _unstack_scanned(_strip_prefix(arrays))
    hints: dict[str, Any] = {}
    if "cls" not in params:
        hints["fc_norm"] = False
        if not any(key.endswith("pos_embedding") for key in params):
            hints["pos_embed"] = "sincos2d_jax"
    for key, value in params.items():
        if re.fullmatch(_ATTN + "query/kernel", key):
            return {**hints, "heads": int(value.shape[1])}
    return hints


def _strip_prefix(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for prefix in _PREFIXES:
        if f"{prefix}embedding/kernel" in arrays:
            # Only the model's parameters: optimizer state lives beside them in training checkpoints.
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    raise VitkitError("not a JAX ViT checkpoint: no 'embedding/kernel' array")


def _unstack_scanned(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """big_vision's scanned layers store all blocks in one array with a leading depth axis: split them."""
    out: dict[str, np.ndarray] = {}
    for key, value in params.items():
        if key.startswith("Transformer/encoderblock/"):
            rest = key[len("Transformer/encoderblock/"):]
            for index, block in enumerate(value):
                out[f"Transformer/encoderblock_{index}/{rest}"] = block
        else:
            out[key] = value
    return out
