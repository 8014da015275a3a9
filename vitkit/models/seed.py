"""The blog's model (``seed``), defects included, and the attention that carries its main defect.

The blog builds its encoder from ``nn.MultiheadAttention`` without ``batch_first=True`` and feeds it
[B, N, D]: the module reads the batch axis as the sequence, so each token position attends across the images
of the batch instead of across the tokens of its image. :class:`BatchAxisAttention` reproduces exactly that;
``attention_axis="batch"`` in a :class:`~vitkit.models.config.ViTConfig` selects it. See docs/seed.md.
"""

from __future__ import annotations

import torch

from .config import ViTConfig
from .layers import Attention


class BatchAxisAttention(Attention):
    """:class:`Attention` over the batch axis: token ``i`` of every image attends to token ``i`` of the others."""

    over_batch = True

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        if queries is not None:
            raise ValueError("attention across the batch computes every token; it has no [CLS]-only read-out")
        return super().forward(x.transpose(0, 1)).transpose(0, 1)


# Depth, heads and MLP size are not stated in the post; we take ViT-B's 12 / 12 / 3072.
SEED = ViTConfig(
    num_classes=2, norm="post", pos_embed="learned_patches", attn_dropout=0.1, attention_axis="batch",
    norm_eps=1e-5,
)
"""The blog's model exactly: post-norm, position embedding before [CLS], attention across the batch."""
