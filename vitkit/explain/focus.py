"""How much of a heat map lies in the middle of the image: a measurable "looks at the object, not the border".

Photos of one object (a pet, an ImageNet class) are mostly framed with the object near the centre, so a model
that uses the object should put more than a uniform share of its relevance in the central box.
"""

from __future__ import annotations

import math

import torch


def center_mass(heat: torch.Tensor, area: float = 0.5) -> torch.Tensor:
    """Fraction of the mass of ``heat`` [..., grid_h, grid_w] that lies in the centred box covering ``area`` of
    the image (same aspect ratio). A uniform map gives exactly ``area``; patches cut by the box count pro rata."""
    if not 0.0 < area < 1.0:
        raise ValueError(f"area must be in (0, 1), got {area}")
    side = math.sqrt(area)
    rows = _overlap(heat.shape[-2], side).to(heat)
    cols = _overlap(heat.shape[-1], side).to(heat)
    inside = (heat * rows[:, None] * cols[None, :]).sum(dim=(-2, -1))
    return inside / heat.sum(dim=(-2, -1))


def _overlap(cells: int, side: float) -> torch.Tensor:
    """For each of ``cells`` unit cells, the fraction of it inside the centred interval of length side * cells."""
    low, high = cells * (1 - side) / 2, cells * (1 + side) / 2
    starts = torch.arange(cells, dtype=torch.float64)
    return (torch.minimum(starts + 1, torch.tensor(high)) - torch.maximum(starts, torch.tensor(low))).clamp(min=0)
