"""Self-attention among the occupied voxels of each 3-D window, with cRSE (see ``crse.py`` for the formula).

Windows of one size class are computed together as a dense [windows, heads, capacity, capacity] problem with
padded keys masked out; the table terms of cRSE are evaluated without ever building a per-pair embedding:
``q_i . Tq_a[t]`` is computed for every table cell t (a [capacity, L_a] matrix per head) and then gathered at
``t_a(i, j)``; the value term scatters the attention weights into table cells and multiplies by the table.
"""

from __future__ import annotations

import torch
from torch import nn

from .crse import ContextualRSE, table_cells
from .windows import WindowPlan


def windowed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: WindowPlan, signals: torch.Tensor,
                       crse: ContextualRSE | None, keep: list | None = None) -> torch.Tensor:
    """[V, heads, head_dim] attention outputs; ``q`` (pre-scaled), ``k``, ``v`` are [V, heads, head_dim].
    ``keep``: a list that receives ``(index, mask, weights)`` per size class ([W, K], [W, K], [W, H, K, K])."""
    out = torch.empty_like(v)
    if crse is not None:
        # All axes' tables end to end: one [sum L_a, heads, head_dim] table per kind, cells offset per axis.
        tables = [torch.cat(crse.axis_tables(kind)) for kind in ("query", "key", "value")]
        lengths = torch.tensor(crse.lengths, device=q.device, dtype=signals.dtype)
        offsets = torch.cumsum(torch.tensor([0] + crse.lengths[:-1], device=q.device), 0)
    for bucket in plan.buckets:
        idx, mask = bucket.index, bucket.mask
        qw, kw, vw = q[idx].transpose(1, 2), k[idx].transpose(1, 2), v[idx].transpose(1, 2)  # [W, H, K, D]
        logits = qw @ kw.transpose(-1, -2)  # [W, H, K, K]
        shape = logits.shape
        if crse is not None:
            sig = signals[idx]  # [W, K, S]
            cells = table_cells(sig[:, :, None, :], sig[:, None, :, :], lengths) + offsets  # [W, Kq, Kk, S]
            per_query = torch.einsum("whid,lhd->whil", qw, tables[0])  # [W, H, K, sum L]
            per_key = torch.einsum("whjd,lhd->whjl", kw, tables[1])
            # One gather for all axes (a gather per axis would zero a per_query-sized gradient per axis).
            w, h, n, axes = shape[0], shape[1], shape[2], cells.shape[-1]
            flat = cells.reshape(w, 1, n, n * axes).expand(w, h, n, n * axes)
            logits = logits + per_query.gather(3, flat).view(w, h, n, n, axes).sum(-1)
            flat_t = cells.transpose(1, 2).reshape(w, 1, n, n * axes).expand(w, h, n, n * axes)
            logits = logits + per_key.gather(3, flat_t).view(w, h, n, n, axes).sum(-1).transpose(-1, -2)
        logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        if keep is not None:  # vitkit explain on scans (explain/points.py)
            keep.append((idx, mask, weights.detach()))
        result = weights @ vw  # [W, H, K, D]
        if crse is not None:
            binned = weights.new_zeros(*shape[:3], tables[2].shape[0]).scatter_add_(
                3, flat, weights[..., None].expand(*shape, axes).reshape(w, h, n, n * axes))
            result = result + torch.einsum("whil,lhd->whid", binned, tables[2])
        result = result.transpose(1, 2)  # [W, K, H, D]
        out[idx[mask]] = result[mask]
    return out


class WindowAttention(nn.Module):
    """Multi-head self-attention inside sparse windows, with cRSE; parameters named as the official layer."""

    def __init__(self, dim: int, heads: int, window_size: int, quant_size: int, signals: tuple[str, ...],
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.crse = ContextualRSE(signals, window_size, quant_size, heads, self.head_dim) if signals else None
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.recorded: list | None = None
        """Set to a list to collect the attention weights of the next forward (see ``windowed_attention``)."""

    def forward(self, feats: torch.Tensor, plan: WindowPlan, signals: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(feats).view(feats.shape[0], 3, self.heads, self.head_dim).unbind(1)
        out = windowed_attention(q * self.scale, k, v, plan, signals, self.crse, self.recorded)
        return self.proj(out.reshape(feats.shape[0], -1))
