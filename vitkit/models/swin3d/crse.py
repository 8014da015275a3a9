"""Contextual relative signal encoding (cRSE), as the official CUDA kernels define it.

Each voxel carries signals: its position inside the window (XYZ), its colour (RGB) and its normal (NORM), each
multiplied by a quantisation factor (``quant_size`` cells per voxel for XYZ, ``2 * quant_size`` per unit for
RGB and NORM, whose values lie in [-1, 1]). For a query voxel i and a key voxel j, every signal axis a gives a
table cell ``t_a(i, j) = clamp(floor(s_a(i) - s_a(j) + L_a / 2), 0, L_a - 1)`` where ``L_a`` is the table
length (``2 * window * quant_size`` for XYZ, ``2 * 2 * 2 * quant_size`` for RGB and NORM). Three learned tables
per axis (query, key, value; each [L_a, heads, head_dim]) give summed embeddings::

    r^q_ij = sum_a Tq_a[t_a(i, j)]    r^k_ij = sum_a Tk_a[t_a(i, j)]    r^v_ij = sum_a Tv_a[t_a(i, j)]
    logit_ij = q_i . k_j + q_i . r^q_ij + k_j . r^k_ij     (q_i already scaled by head_dim ** -0.5)
    out_i = sum_j softmax_j(logit_ij) (v_j + r^v_ij)

The kernels clamp to ``L_a - 1e-10`` in float32, which rounds to ``L_a`` and reads one cell past a table when a
colour or normal difference is exactly +2; we clamp to the last cell (the official loaders divide colours and
normals by 1.001 to avoid that case).
"""

from __future__ import annotations

import torch
from torch import nn

from .voxels import Voxels

COLOR_RANGE = 2  # colours and normals lie in [-1, 1]


def table_lengths(signals: tuple[str, ...], window_size: int, quant_size: int) -> list[int]:
    """The table length of every signal axis, in order (3 axes per signal)."""
    lengths = []
    for signal in signals:
        length = 2 * window_size * quant_size if signal == "xyz" else 2 * COLOR_RANGE * 2 * quant_size
        lengths += [length] * 3
    return lengths


def voxel_signals(voxels: Voxels, signals: tuple[str, ...], local: torch.Tensor, quant_size: int) -> torch.Tensor:
    """float [V, 3 * len(signals)]: the quantised signals of each voxel (the official ``n_coords``).

    ``local`` is the voxel's integer position inside its window; XYZ adds the position of the voxel's point
    inside the voxel, so XYZ differences are exact point offsets in units of this stage's voxels.
    """
    parts = []
    for signal in signals:
        if signal == "xyz":
            inside = voxels.xyz / voxels.stride - voxels.coords.to(voxels.xyz.dtype)
            parts.append((local.to(voxels.xyz.dtype) + inside) * quant_size)
        else:
            value = voxels.rgb if signal == "rgb" else voxels.normal
            parts.append(value * (2 * quant_size))
    return torch.cat(parts, dim=1)


def table_cells(query_signals: torch.Tensor, key_signals: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """int64: the table cell of every (query, key) pair; the inputs broadcast, the last axis is the signal axis
    and ``lengths`` (float, even) holds each axis' table length."""
    rel = torch.floor(query_signals - key_signals + lengths / 2)
    return torch.minimum(rel.clamp_(min=0), lengths - 1).long()


class ContextualRSE(nn.Module):
    """The learned cRSE tables of one attention layer; parameter names follow the official code."""

    def __init__(self, signals: tuple[str, ...], window_size: int, quant_size: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.signals = signals
        self.quant_size = quant_size
        self.lengths = table_lengths(signals, window_size, quant_size)
        for signal, length in zip(signals, self.lengths[::3]):
            for kind in ("query", "key", "value"):
                table = nn.Parameter(torch.empty(3, length, heads, head_dim))
                nn.init.trunc_normal_(table, std=0.02)
                setattr(self, f"{kind}_{signal}_table", table)

    def axis_tables(self, kind: str) -> list[torch.Tensor]:
        """[L_a, heads, head_dim] for every signal axis a, for ``kind`` in query, key, value."""
        return [t for signal in self.signals for t in getattr(self, f"{kind}_{signal}_table").unbind(0)]
