"""Renaming state-dict keys between libraries with a table of regular expressions.

A mapping between two libraries is data: a list of ``(pattern, replacement)`` pairs applied to each key,
first match wins. Keys no rule matches are an error, so a checkpoint of another architecture cannot load
half-way.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from ..errors import VitkitError

Rules = Sequence[tuple[str, str]]


def rename_keys(state: dict[str, torch.Tensor], rules: Rules, source: str) -> dict[str, torch.Tensor]:
    """Rename every key of ``state`` by the first matching rule; a rule whose replacement is "" drops the key."""
    compiled = [(re.compile(f"^{pattern}$"), replacement) for pattern, replacement in rules]
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        for pattern, replacement in compiled:
            if pattern.match(key):
                if replacement:
                    renamed[pattern.sub(replacement, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise VitkitError(f"not a {source} ViT checkpoint: unexpected keys {shown}")
    return renamed


_SPLIT_QKV = re.compile(r"^(blocks\.\d+\.attn\.)([qkv])\.(weight|bias)$")
_FUSED_QKV = re.compile(r"^(blocks\.\d+\.attn\.)qkv\.(weight|bias)$")


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate separate ``blocks.N.attn.{q,k,v}`` projections into vitkit's fused ``blocks.N.attn.qkv``."""
    fused: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _SPLIT_QKV.match(key)
        if match:
            parts.setdefault(f"{match[1]}qkv.{match[3]}", {})[match[2]] = value
        else:
            fused[key] = value
    for key, qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            raise VitkitError(f"incomplete attention weights for {key}: found only {', '.join(sorted(qkv))}")
        fused[key] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return fused


def split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split vitkit's fused ``blocks.N.attn.qkv`` into ``blocks.N.attn.{q,k,v}`` (inverse of :func:`fuse_qkv`)."""
    split: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _FUSED_QKV.match(key)
        if not match:
            split[key] = value
            continue
        for name, part in zip("qkv", value.chunk(3, dim=0)):
            split[f"{match[1]}{name}.{match[2]}"] = part.contiguous()
    return split
