"""The MLP's activation, named by a config's ``act``: GELU (exact or its tanh form) or CLIP's QuickGELU."""

from __future__ import annotations

import torch
from torch import nn


class QuickGELU(nn.Module):
    """CLIP's activation (Radford et al. 2021): ``x * sigmoid(1.702 x)``, a sigmoid approximation of GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(name: str) -> nn.Module:
    """``gelu`` (exact, Hendrycks & Gimpel 2016), ``gelu_tanh`` (its tanh approximation) or ``quick_gelu``."""
    return QuickGELU() if name == "quick_gelu" else nn.GELU(approximate="tanh" if name == "gelu_tanh" else "none")
