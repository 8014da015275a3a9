"""The blog's ViT (../shared/spec/seed-vit-blog.txt), written from its text for the benchmark, sized freely.

Conv2d patches, a learned position embedding on the patches, [CLS] prepended after it, post-norm blocks with
``nn.MultiheadAttention`` called without ``batch_first`` (so attention runs across the batch: the blog's defect,
kept because it is what the blog's code computes), a Linear on token 0.
"""

from __future__ import annotations

import torch
from torch import nn


class BlogBlock(nn.Module):
    """One post-norm encoder block as in the blog."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x, x, x)[0])
        return self.norm2(x + self.ff(x))


class BlogViT(nn.Module):
    """The blog's VisionTransformer class."""

    def __init__(self, image_size: int, patch_size: int, dim: int, heads: int, ff_dim: int, num_classes: int,
                 depth: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.positional_embedding = nn.Parameter(torch.randn(1, (image_size // patch_size) ** 2, dim))
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.Sequential(*[BlogBlock(dim, heads, ff_dim) for _ in range(depth)])
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.projection(images).flatten(2).transpose(1, 2) + self.positional_embedding
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1)
        return self.fc(self.blocks(x)[:, 0])
