"""Activation checkpointing: keep only each block's input during the forward pass and recompute the block's
internals during backward. Training memory drops to about one block's activations (plus weights and
optimizer state) for roughly one extra forward pass of compute.

There is one mechanism: a model's ``grad_checkpointing`` flag, which its block runner
(:meth:`vitkit.models.base.TransformerModel.run_stack`) reads for every block stack, image or video. Training
(``--grad-checkpointing``) and the benchmark both turn it on through :func:`checkpoint_blocks`.
"""

from __future__ import annotations

from torch import nn

from ..errors import VitkitError
from ..models.base import TransformerModel


def checkpoint_blocks(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn activation checkpointing of every block stack of ``model`` on (or off); returns the same model."""
    if not isinstance(model, TransformerModel):
        raise VitkitError(f"activation checkpointing needs a vitkit model, got {type(model).__name__}")
    model.grad_checkpointing = enabled
    return model
