"""What EVA-02's blocks change in a ViT block (Fang et al. 2023, "EVA-02: A Visual Representation for Neon
Genesis"; timm's ``eva.py``): attention with RoPE on the patch tokens, with biases on queries and values only
(``layers.QVBiasAttention``, shared with VideoMAE), and the SwiGLU feed-forward network, optionally with a
LayerNorm inside it.

The plain ViT never builds these: ``vit.py`` picks them at construction from the config (``rope``, ``key_bias``,
``swiglu``, ``mlp_norm``), so the default model runs exactly the operations it always ran.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Attention, QVBiasAttention
from .rope import RotaryEmbedding2d


class RopeAttention(Attention):
    """:class:`Attention` whose queries and keys (after QK-norm) of the patch tokens are rotated by the model's
    :class:`RotaryEmbedding2d` (EVA-02's RoPE)."""

    def __init__(self, *args: Any, rope: RotaryEmbedding2d, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rope = rope

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = super().project_qkv(x)
        return self.rope(q), self.rope(k), v


class RopeQVBiasAttention(RopeAttention, QVBiasAttention):
    """EVA-02's attention: RoPE (:class:`RopeAttention`) on queries and keys biased as :class:`QVBiasAttention`
    biases them (queries and values only; with RoPE a key bias would not cancel out, and EVA has none)."""


def eva_attention(rope: RotaryEmbedding2d | None, key_bias: bool = True) -> Callable[..., Attention]:
    """The attention class (with its RoPE bound) for ``rope`` and ``key_bias`` (without one: q/v biases only)."""
    if rope is None:
        return Attention if key_bias else QVBiasAttention
    return partial(RopeAttention if key_bias else RopeQVBiasAttention, rope=rope)


class SwiGLU(nn.Module):
    """The SwiGLU feed-forward network (Shazeer 2020, "GLU Variants Improve Transformer"): ``fc2(SiLU(x W_g) *
    (x W_x))``. ``fc1`` holds W_g and W_x stacked (gate rows first, as timm's packed ``GluMlp``), so both come
    from one matrix product. ``norm``: a LayerNorm on the hidden product before ``fc2`` (NormFormer's, Shleifer
    et al. 2021; EVA-02 B and L, timm's ``scale_mlp``).
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, norm: bool = False,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim, eps=norm_eps) if norm else None
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)
        hidden = self.drop(F.silu(gate) * value)
        if self.norm is not None:
            hidden = self.norm(hidden)
        return self.drop(self.fc2(hidden))
