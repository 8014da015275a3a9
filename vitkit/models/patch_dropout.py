"""Patch dropout (Liu et al. 2022, "PatchDropout: Economizing Vision Transformers Using Patch Dropout"): while
training, each image keeps a random subset of its patch tokens, so every block runs on fewer tokens.

The position embedding is added before, so a kept token still knows where it came from; the prefix tokens
([CLS], registers, the distillation token) are always kept. In eval mode it does nothing. timm's
``patch_drop_rate`` does the same (its ``PatchDropout``).
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDropout(nn.Module):
    """[B, prefix + N, D] -> [B, prefix + K, D] in training, K = max(1, int(N * (1 - p))); identity otherwise.

    Each image draws its own subset, uniformly among all K-subsets; the kept tokens stay in their order.
    """

    def __init__(self, p: float, num_prefix_tokens: int) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"patch dropout must be in [0, 1), got {p}")
        self.p = p
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return tokens
        prefix, patches = tokens[:, : self.num_prefix_tokens], tokens[:, self.num_prefix_tokens :]
        batch, count, dim = patches.shape
        kept = max(1, int(count * (1.0 - self.p)))
        # The K smallest of N uniform draws are a uniform K-subset; sorted to keep the tokens' order.
        chosen = torch.rand(batch, count, device=tokens.device).topk(kept, dim=1, largest=False).indices
        chosen = chosen.sort(dim=1).values
        patches = patches.gather(1, chosen.unsqueeze(-1).expand(-1, -1, dim))
        return torch.cat([prefix, patches], dim=1)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def stage_label(self) -> str:
        return "patch dropout (training only)"
