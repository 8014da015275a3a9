"""Relevance of input tokens from attention across all layers: rollout and gradient-weighted rollout.

Both take attention of shape [..., layers, heads, N, N] (rows are queries, as recorded by ``attention.py``)
and return an [..., N, N] matrix whose row ``i`` says how much each input token contributed to output token
``i``. :func:`query_relevance` then reads the row of the token the classifier uses.
"""

from __future__ import annotations

import torch


def rollout(attention: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): [..., layers, heads, N, N] -> [..., N, N].

    Each layer: average the heads, account for the residual connection as ``residual * I + (1 - residual) * A``,
    renormalise the rows; then multiply the layers, the last one leftmost.
    """
    eye = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
    mixed = residual * eye + (1.0 - residual) * attention.mean(dim=-3)
    # Rows of A sum to 1 already; renormalising matters for the seed preset, whose rows lose mass to other images.
    mixed = mixed / mixed.sum(dim=-1, keepdim=True)
    result = eye.expand_as(mixed[..., 0, :, :])
    for layer in mixed.unbind(dim=-3):
        result = layer @ result
    return result


def grad_rollout(attention: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Class-specific rollout (Chefer, Gur & Wolf 2021, "Generic attention-model explainability"):
    [..., layers, heads, N, N] attention and the gradients of the class score with respect to it -> [..., N, N].

    Each layer: ``A_bar = mean over heads of max(0, grad * A)``; relevance starts at ``I`` and is updated as
    ``R = R + A_bar @ R``, so only attention that raised the class score adds relevance.
    """
    weighted = (gradients * attention).clamp(min=0).mean(dim=-3)
    eye = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
    result = eye.expand_as(weighted[..., 0, :, :])
    for layer in weighted.unbind(dim=-3):
        result = result + layer @ result
    return result


def query_relevance(matrix: torch.Tensor, pool: str, num_prefix_tokens: int) -> torch.Tensor:
    """The row the classifier reads, over patch tokens only: [..., N, N] -> [..., N - prefix].

    ``pool="cls"``: the [CLS] query (row 0). ``pool="mean"``: the mean of the patch queries, because a mean-pool
    head sees the average of the patch tokens.
    """
    if pool == "cls":
        row = matrix[..., 0, :]
    else:
        row = matrix[..., num_prefix_tokens:, :].mean(dim=-2)
    return row[..., num_prefix_tokens:]
