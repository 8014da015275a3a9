"""Token merging (Bolya et al. 2023, "Token Merging: Your ViT but Faster"): opt-in, for inference.

After its attention, each block merges the ``r`` most similar pairs of tokens, so the sequence shrinks by ``r``
per block and every later block (attention and MLP) runs on fewer tokens. Similarity is the cosine of the
attention keys (averaged over heads) between two alternating halves of the sequence (bipartite matching: cheap,
no iterative clustering). A merged token is the size-weighted mean of what it absorbed, and attention counts a
token of size s as s copies of it (``+ log s`` on its logits), so merging two identical tokens changes nothing.

Merging changes the results (it is not exact), so it is never on by default: measure its accuracy cost on
your own validation set (``vitkit eval --merge R``); docs/speed.md gives the cost measured here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VitkitError
from ..models.layers import Attention, Block


@dataclass
class MergeState:
    """The token sizes of the forward pass in progress, shared by the blocks of one model ([B, N] or None)."""

    size: torch.Tensor | None = None


class MergingBlock(Block):
    """A pre-norm :class:`Block` that merges ``merge_r`` token pairs after its attention (see module doc)."""

    merge_r: int
    merge_state: MergeState
    resets_state: bool
    prefix_tokens: int

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:  # type: ignore[override]
        if self.resets_state:
            self.merge_state.size = None
        size = self.merge_state.size
        out, keys = sized_attention(self.attn, self.norm1(x), size, queries)
        x = (x if queries is None else x[:, :queries]) + self.drop_path(self.ls1(out))
        r = min(self.merge_r, (x.shape[1] - self.prefix_tokens) // 2)
        if queries is None and r > 0:
            if size is None:
                size = x.new_ones(x.shape[:2])
            x, self.merge_state.size = merge_pairs(x, keys, size, r, self.prefix_tokens)
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


def sized_attention(attn: Attention, x: torch.Tensor, size: torch.Tensor | None, queries: int | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``attn(x, queries)`` where token j counts ``size[:, j]`` times; also returns the keys averaged over heads,
    [B, N, head_dim], the similarity measure for merging."""
    q, k, v = attn.project_qkv(x)
    if queries is not None:
        q = q[:, :, :queries]
    bias = None if size is None else size.log().to(q.dtype)[:, None, None, :]
    dropout = attn.attn_dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    return attn.project_out(out), k.mean(dim=1)


def merge_pairs(x: torch.Tensor, keys: torch.Tensor, size: torch.Tensor, r: int, prefix: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``r`` tokens of the even half into their most similar token of the odd half (tokens after the
    ``prefix`` ones, which are never merged). Returns the new tokens [B, N - r, D] and sizes [B, N - r]."""
    metric = F.normalize(keys[:, prefix:], dim=-1)
    scores = metric[:, 0::2] @ metric[:, 1::2].transpose(-2, -1)  # [B, even, odd]
    best, partner = scores.max(dim=-1)
    ranked = best.argsort(dim=-1, descending=True)
    merged, kept = ranked[:, :r], ranked[:, r:].sort(dim=-1).values  # kept in their original order

    weighted = x * size[..., None]
    even, odd = weighted[:, prefix:][:, 0::2], weighted[:, prefix:][:, 1::2]
    even_size, odd_size = size[:, prefix:][:, 0::2], size[:, prefix:][:, 1::2]
    target = partner.gather(1, merged)
    odd = odd.scatter_add(1, _rows(target, x.shape[-1]), even.gather(1, _rows(merged, x.shape[-1])))
    odd_size = odd_size.scatter_add(1, target, even_size.gather(1, merged))
    new_weighted = torch.cat([weighted[:, :prefix], even.gather(1, _rows(kept, x.shape[-1])), odd], dim=1)
    new_size = torch.cat([size[:, :prefix], even_size.gather(1, kept), odd_size], dim=1)
    return new_weighted / new_size[..., None], new_size


def _rows(index: torch.Tensor, dim: int) -> torch.Tensor:
    return index[..., None].expand(-1, -1, dim)


def use_token_merging(model: nn.Module, r: int | Sequence[int]) -> nn.Module:
    """Merge ``r`` token pairs in each block of a vitkit ViT (or ``r[i]`` in block i); 0 turns it off. In place;
    the weights and state-dict names are unchanged. Returns the model."""
    from ..models.vit import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise VitkitError(f"token merging works on vitkit image ViTs, not {type(model).__name__}")
    c = model.config
    if c.pool != "cls" or c.norm != "pre" or c.attention_axis != "tokens" or c.rope:
        raise VitkitError("token merging needs a pre-norm ViT without RoPE that classifies from [CLS] (this one "
                          f"has pool={c.pool!r}, norm={c.norm!r}, rope={c.rope}); drop --merge")
    schedule = [r] * len(model.blocks) if isinstance(r, int) else list(r)
    if len(schedule) != len(model.blocks) or min(schedule) < 0:
        raise VitkitError(f"--merge needs one non-negative count per block ({len(model.blocks)}), got {r}")
    state = MergeState()
    for i, (block, count) in enumerate(zip(model.blocks, schedule)):
        block.__class__ = MergingBlock
        block.merge_r, block.merge_state, block.resets_state = count, state, i == 0
        block.prefix_tokens = model.num_prefix_tokens
    return model
