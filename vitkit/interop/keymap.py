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
