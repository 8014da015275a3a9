"""What EVA-02's blocks change in a ViT block (Fang et al. 2023, "EVA-02: A Visual Representation for Neon
Genesis"; timm's ``eva.py``): attention with RoPE on the patch tokens and biases on queries and values only, and
the SwiGLU feed-forward network, optionally with a LayerNorm inside it.

The plain ViT never builds these: ``vit.py`` picks them at construction from the config (``rope``, ``k_bias``,
``swiglu``, ``mlp_norm``), so the default model runs exactly the operations it always ran.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Attention
from .rope import RotaryEmbedding2d


class EvaAttention(Attention):
    """:class:`Attention` with two of EVA's changes, each optional.

    ``k_bias=False`` (with ``qkv_bias``): only queries and values get a bias (``q_bias``, ``v_bias``; BEiT and
    EVA). Without RoPE a key bias adds the same logit to every key of a query, which softmax ignores; with RoPE
    it would not, and EVA has none. ``rope``: the model's :class:`RotaryEmbedding2d`, applied to the queries and
    keys (after QK-norm) of the patch tokens.
    """

    def __init__(
        self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0, proj_dropout: float = 0.0,
        qk_norm: bool = False, norm_eps: float = 1e-6, *, k_bias: bool = True, rope: RotaryEmbedding2d | None = None,
    ) -> None:
        qv_only = qkv_bias and not k_bias
        super().__init__(dim, heads, qkv_bias and not qv_only, attn_dropout, proj_dropout, qk_norm, norm_eps)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qv_only else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qv_only else None
        self.rope = rope

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = self.qkv(x)
        if self.q_bias is not None:
            qkv = qkv + torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = self.split_heads(qkv)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        return q, k, v


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
