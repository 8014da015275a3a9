"""Switch a built model onto the fused kernels in place, by changing module classes (not weights or names).

Swapping ``__class__`` to a subclass keeps every parameter, buffer and state-dict key as it was, so a model
can be optimised after loading and saved again unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import Attention, Mlp
from . import fused


class FusedLinear(nn.Linear):
    """``nn.Linear`` whose CPU forward fuses the bias into the GEMM (see :mod:`vitkit.fast.fused`)."""

    def forward(self, x):  # type: ignore[override]
        return fused.linear(x, self.weight, self.bias)


class FusedMlp(Mlp):
    """The feed-forward network with fc1 and GELU in one oneDNN call at inference."""

    def forward(self, x):  # type: ignore[override]
        hidden = fused.linear_gelu(x, self.fc1.weight, self.fc1.bias)
        return self.drop(self.fc2(self.drop(hidden)))


class MatmulAttention(Attention):
    """Attention as two batched matmuls and a softmax instead of ``scaled_dot_product_attention``.

    Why: on CPU in bf16 (torch 2.13-2.14) the fused attention kernels fall back to slow paths, above all in the
    backward pass, while bf16 matmuls run on AMX / AVX-512-BF16; at ViT sequence lengths (<= 577 tokens) the
    explicit [N, N] matrix is small. Measured in ``benchmarks/peers.py`` (bf16 rows). Dropout on the attention
    probabilities behaves as in the fused path.
    """

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.keep_weights:
            return super().attend(q, k, v)
        weights = (q @ (k.transpose(-2, -1) * self.head_dim**-0.5)).softmax(dim=-1)
        dropout = self.attn_dropout if self.training else 0.0
        return F.dropout(weights, dropout, self.training) @ v


def use_matmul_attention(model: nn.Module) -> nn.Module:
    """Put every plain vitkit ``Attention`` of ``model`` on :class:`MatmulAttention`; returns the same model.
    Subclasses that restrict who attends to whom (ViViT Model 4) keep their own ``attend``."""
    for module in model.modules():
        if type(module) is Attention:
            module.__class__ = MatmulAttention
    return model


def use_fused_kernels(model: nn.Module) -> nn.Module:
    """Put every ``nn.Linear`` and ViT MLP of ``model`` on the fused CPU kernels; returns the same model."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = FusedLinear
        elif type(module) is Mlp and _is_exact_gelu(module.act):
            module.__class__ = FusedMlp
    return model


def use_plain_kernels(model: nn.Module) -> nn.Module:
    """Undo :func:`use_fused_kernels` in place; returns the same model."""
    for module in model.modules():
        if type(module) is FusedLinear:
            module.__class__ = nn.Linear
        elif type(module) is FusedMlp:
            module.__class__ = Mlp
        elif type(module) is MatmulAttention:
            module.__class__ = Attention
    return model


def _is_exact_gelu(act: nn.Module) -> bool:
    # oneDNN's "gelu" with algorithm "none" is the erf form; only then is the fusion exact.
    return isinstance(act, nn.GELU) and act.approximate == "none"
