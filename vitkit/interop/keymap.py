"""Renaming state-dict keys between libraries: each mapping is data, written once, read in both directions.

A :class:`KeyMap` is a list of pairs ``(library name, vitkit name)`` of templates, where ``{n}`` stands for a
block index and ``{p}`` for ``weight`` or ``bias``: ``("encoder.layer.{n}.layernorm_before.{p}",
"blocks.{n}.norm1.{p}")``. Reading turns the pairs into regular expressions from left to right, writing from
right to left. A library name may be a tuple of spellings: all are read, the first is written. Keys no pair
matches are an error, so a checkpoint of another architecture cannot load half-way.

:func:`rename_keys` is the primitive under it: ``(pattern, replacement)`` rules, first match wins, with an
optional per-key transform of the value (the JAX reader reshapes Flax kernels with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from ..errors import VitkitError
from ..models.heads import norm_after_pool

if TYPE_CHECKING:
    from ..models.config import ViTConfig

Rules = Sequence[tuple[str, str]]
Transform = Callable[[int, torch.Tensor], torch.Tensor]
"""``transform(rule_index, value)``: the value stored under the renamed key."""
_PLACEHOLDERS = {"n": r"\d+", "p": r"weight|bias"}


def rename_keys(state: dict, rules: Rules, source: str, transform: Transform | None = None) -> dict:
    """Rename every key of ``state`` by the first matching rule; a rule whose replacement is "" drops the key.
    ``transform``, if given, maps each kept value (knowing which rule matched)."""
    compiled = [(re.compile(f"^{pattern}$"), replacement) for pattern, replacement in rules]
    renamed: dict = {}
    unknown = []
    for key, value in state.items():
        for index, (pattern, replacement) in enumerate(compiled):
            if pattern.match(key):
                if replacement:
                    renamed[pattern.sub(replacement, key)] = transform(index, value) if transform else value
                break
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise VitkitError(f"not a {source} checkpoint: unexpected keys {shown}")
    return renamed


def _pattern(template: str) -> str:
    """``blocks.{n}.norm1.{p}`` -> ``blocks\\.(?P<n>\\d+)\\.norm1\\.(?P<p>weight|bias)``."""
    pattern = re.escape(template)
    for name, regex in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{regex})")
    return pattern


def _replacement(template: str) -> str:
    """``blocks.{n}.norm1.{p}`` -> ``blocks.\\g<n>.norm1.\\g<p>``."""
    for name in _PLACEHOLDERS:
        template = template.replace("{" + name + "}", f"\\g<{name}>")
    return template


@dataclass(frozen=True)
class KeyMap:
    """One library's key names and vitkit's, as pairs (see the module doc)."""

    library: str
    """The library's name, for messages."""
    pairs: Sequence[tuple[str | tuple[str, ...], str]]
    prefix: str = ""
    """A prefix the library may put before every key but the head's (``vit.``): read with or without it."""
    dropped: Sequence[str] = ()
    """Library keys (templates) that are read and ignored (a pooler vitkit does not have)."""

    def read_rules(self) -> list[tuple[str, str]]:
        prefix = f"(?:{re.escape(self.prefix)})?" if self.prefix else ""
        rules = [(prefix + _pattern(name), _replacement(vitkit)) for names, vitkit in self.pairs
                 for name in ((names,) if isinstance(names, str) else names)]
        return rules + [(prefix + _pattern(name), "") for name in self.dropped]

    def write_rules(self) -> list[tuple[str, str]]:
        return [(_pattern(vitkit), _replacement(names if isinstance(names, str) else names[0]))
                for names, vitkit in self.pairs]

    def to_vitkit(self, state: dict, transform: Transform | None = None) -> dict:
        """``state`` under vitkit's names."""
        return rename_keys(state, self.read_rules(), self.library, transform)

    def from_vitkit(self, state: dict) -> dict:
        """A vitkit ``state`` under the library's (first) names."""
        return rename_keys(state, self.write_rules(), "vitkit")


def unexpressible(library: str, problems: dict[str, bool]) -> None:
    """The one check of whether a library can hold a config: a one-line error naming every ``problem`` that is
    present, or nothing."""
    found = [name for name, present in problems.items() if present]
    if found:
        raise VitkitError(f"{library} cannot express {', '.join(found)}; convert --to vitkit or timm instead")


def beyond_paper_vit(config: ViTConfig) -> dict[str, bool]:
    """The :func:`unexpressible` problems of a ViT config for a library that builds only the paper's ViT
    (torchvision, transformers): pre-norm, a [CLS] token classified from, a learned position embedding on [CLS]
    and patches, attention over the tokens, a patch stem, and none of the later papers' options (layer scale,
    registers, DeiT's distillation token, QK-norm, CLIP's norm_pre, the final norm after pooling, EVA-02's)."""
    return {
        "post-norm blocks": config.norm != "pre",
        "no [CLS] token": not config.class_token,
        f"pooling {config.pool!r}": config.pool != "cls",
        f"position embedding {config.pos_embed!r}": config.pos_embed != "learned",
        "attention across the batch": config.attention_axis != "tokens",
        "a convolutional stem": config.stem != "patch",
        "layer scale (init_values)": config.init_values is not None,
        "register tokens": config.reg_tokens > 0,
        "a distillation token": config.distilled,
        "QK-norm": config.qk_norm,
        "a norm before the blocks (norm_pre)": config.norm_pre,
        "the final norm after pooling (fc_norm)": config.pool == "cls" and norm_after_pool(config),
        "EVA-02's RoPE, SwiGLU or q/v-only biases": (config.rope or config.swiglu
                                                     or (config.qkv_bias and not config.key_bias)),
        "no final norm (final_norm=False)": not config.final_norm,
    }


_SPLIT_QKV = re.compile(r"^blocks\.\d+\.attn\.(?P<part>[qkv])\.(?:weight|bias)$")
_FUSED_QKV = re.compile(r"^blocks\.\d+\.attn\.(?P<part>qkv)\.(?:weight|bias)$")


def join_parts(state: dict[str, torch.Tensor], pattern: re.Pattern, names: Sequence[str], joined: str,
               what: str) -> dict[str, torch.Tensor]:
    """Concatenate (along the first axis, in the order of ``names``) the values of keys that ``pattern`` matches
    and that differ only in its group ``part``, under the key with that part replaced by ``joined``; other keys
    are kept. A one-line error naming ``what`` when a part is missing."""
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = pattern.match(key)
        if match:
            groups.setdefault(key[: match.start("part")] + joined + key[match.end("part") :], {})[match["part"]] = value
        else:
            out[key] = value
    for key, found in groups.items():
        if set(found) != set(names):
            raise VitkitError(f"incomplete {what} for {key}: found only {', '.join(sorted(found))}")
        out[key] = torch.cat([found[name] for name in names], dim=0)
    return out


def split_parts(state: dict[str, torch.Tensor], pattern: re.Pattern, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`join_parts`: each key ``pattern`` matches is cut into ``len(names)`` equal parts along
    the first axis, stored under the key with its group ``part`` replaced by each name."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = pattern.match(key)
        if not match:
            out[key] = value
            continue
        for name, part in zip(names, value.chunk(len(names), dim=0)):
            out[key[: match.start("part")] + name + key[match.end("part") :]] = part.contiguous()
    return out


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate separate ``blocks.N.attn.{q,k,v}`` projections into vitkit's fused ``blocks.N.attn.qkv``."""
    return join_parts(state, _SPLIT_QKV, "qkv", "qkv", "attention weights")


def split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split vitkit's fused ``blocks.N.attn.qkv`` into ``blocks.N.attn.{q,k,v}`` (inverse of :func:`fuse_qkv`)."""
    return split_parts(state, _FUSED_QKV, "qkv")
