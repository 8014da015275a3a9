"""Activation checkpointing: keep only each block's input during the forward pass and recompute the block's
internals during backward. Training memory drops to about one block's activations (plus weights and
optimizer state) for roughly one extra forward pass of compute.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..models.layers import Block


class CheckpointedBlock(Block):
    """A :class:`Block` that recomputes its activations in backward instead of storing them."""

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:  # type: ignore[override]
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x, queries)
        return checkpoint(super().forward, x, queries, use_reentrant=False)


def checkpoint_blocks(model: nn.Module) -> nn.Module:
    """Turn on activation checkpointing for every encoder block of ``model`` (in place; names unchanged)."""
    for module in model.modules():
        if type(module) is Block:
            module.__class__ = CheckpointedBlock
    return model
