"""Switch a built model onto the fused kernels in place, by changing module classes (not weights or names).

Swapping ``__class__`` to a subclass keeps every parameter, buffer and state-dict key as it was, so a model
can be optimised after loading and saved again unchanged.
"""

from __future__ import annotations

from torch import nn

from ..models.layers import Mlp
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
    return model


def _is_exact_gelu(act: nn.Module) -> bool:
    # oneDNN's "gelu" with algorithm "none" is the erf form; only then is the fusion exact.
    return isinstance(act, nn.GELU) and act.approximate == "none"
