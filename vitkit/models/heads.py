"""What reads the encoder's tokens: the pooling (one vector per image) and where the final norm goes.

:class:`Pool` is the [CLS] token, the mean of the patch tokens, or multihead attention pooling (``map``, SigLIP's
head). The distilled DeiT's second head is in ``vit.py``'s ``forward_head``; the config decides whether the
final norm applies to every token or to the pooled vector (:func:`norm_after_pool`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ViTConfig
from .layers import Mlp


class Pool(nn.Module):
    """Reduce the token sequence to one vector: the [CLS] token, the mean of the patch tokens, both concatenated
    (``cls_mean``), or (``map``) attention pooling over the patch tokens.

    ``map`` (multihead attention pooling, Zhai et al. 2022; Lee et al. 2019's PMA): a learned ``latent`` query is
    projected (``q``) and attends to the patch tokens' keys and values (``kv``), through the output projection
    (``proj``), then a residual MLP with a LayerNorm (``norm``, ``mlp``): timm's ``AttentionPoolLatent`` with one
    latent. Only this mode has parameters; ``dim``, ``heads``, ``hidden_dim``, ``norm_eps`` and ``act`` define them.
    """

    def __init__(self, mode: str, num_prefix_tokens: int, dim: int = 0, heads: int = 1, hidden_dim: int = 0,
                 norm_eps: float = 1e-6, act: str = "gelu") -> None:
        super().__init__()
        self.mode = mode
        self.num_prefix_tokens = num_prefix_tokens
        if mode == "map":
            self.heads = heads
            self.latent = nn.Parameter(torch.zeros(1, 1, dim))
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
            self.proj = nn.Linear(dim, dim)
            self.norm = nn.LayerNorm(dim, eps=norm_eps)
            self.mlp = Mlp(dim, hidden_dim, act=act)
            nn.init.trunc_normal_(self.latent, std=dim**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.mode == "cls":
            return tokens[:, 0]
        patches = tokens[:, self.num_prefix_tokens :]
        if self.mode == "mean":
            return patches.mean(dim=1)
        if self.mode == "cls_mean":
            return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)
        return self._attention_pool(patches)

    def _attention_pool(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, D]: the latent query's attention over the patches, then the residual MLP."""
        batch, length, dim = patches.shape
        head_dim = dim // self.heads
        q = self.q(self.latent).reshape(1, 1, self.heads, head_dim).transpose(1, 2).expand(batch, -1, -1, -1)
        k, v = self.kv(patches).reshape(batch, length, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, dim))
        return x + self.mlp(self.norm(x))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

    def stage_label(self) -> str:
        labels = {"cls": "[CLS] token", "mean": "mean of patches", "cls_mean": "[CLS] and mean of patches"}
        return f"pool ({labels.get(self.mode, 'attention')})"


def norm_after_pool(config: ViTConfig) -> bool:
    """Whether the final norm applies to the pooled vector (timm's ``fc_norm``) instead of to every token."""
    return config.pool == "mean" if config.fc_norm is None else config.fc_norm
