"""Training with bf16 weights and fp32 master weights: the "bf16 weights, not only autocast" path.

Autocast keeps fp32 weights and casts every weight to bf16 in every forward pass (and again for backward).
Here the model itself holds bf16 weights, so forward and backward run in bf16 with no casts, while the
optimizer updates an fp32 copy: small updates are not lost to bf16's 8-bit mantissa, which is what makes pure
bf16 training drift. After each step the fp32 master values are rounded back into the model.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import torch
from torch import nn


def bf16_is_native(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 matmuls in hardware: a CUDA GPU that supports bf16, or a CPU with
    AVX-512-BF16 / AMX. Elsewhere (e.g. AVX2-only CPUs) bf16 is emulated and several times slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        from .fused import cpu_has_native_bf16

        return cpu_has_native_bf16()
    return False


def bf16_is_faster(device: torch.device | str) -> bool:
    """Whether bf16 runs faster than fp32 on ``device``: a CUDA GPU that supports bf16, or a CPU whose bf16 is
    native and measured faster (:mod:`vitkit.fast.probe`; flags alone cannot tell, see there)."""
    return precision_choice(device)[0] == "bf16"


def precision_choice(device: torch.device | str) -> tuple[str, str]:
    """What ``--precision auto`` picks on ``device``, and why, in words for the run's start line."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "this GPU computes bf16 natively"
        return "fp32", "this GPU has no bf16"
    if device.type != "cpu" or not bf16_is_native(device):
        return "fp32", "this device only emulates bf16"
    from .probe import cpu_bf16_probe

    probe = cpu_bf16_probe()
    return ("bf16" if probe.bf16_wins else "fp32"), probe.describe()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags from /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` where the device computes it faster than fp32 (:func:`precision_choice`), else
    ``fp32``; other names unchanged."""
    if precision != "auto":
        return precision
    return precision_choice(device)[0]


def fused_adamw(params: Iterable[Any], **options: Any) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with the fused (single-kernel) implementation, which exists on CPU and CUDA."""
    return torch.optim.AdamW(params, fused=True, **options)


class MasterWeights:
    """Wrap an optimizer factory so it updates fp32 copies of a low-precision model's parameters.

    Used like an optimizer: ``step()`` then ``zero_grad()``. ``make_optimizer`` receives the fp32 masters.
    """

    def __init__(self, model: nn.Module, make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
                 = fused_adamw) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.masters = [p.detach().float().clone() for p in self.params]
        self.optimizer = make_optimizer(self.masters)

    @torch.no_grad()
    def step(self) -> None:
        """Copy the bf16 gradients to the masters, step in fp32, round the masters back into the model."""
        for param, master in zip(self.params, self.masters):
            master.grad = None if param.grad is None else param.grad.float()
        self.optimizer.step()
        torch._foreach_copy_(self.params, self.masters)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the model's and the masters' gradients."""
        for param, master in zip(self.params, self.masters):
            param.grad = None
            master.grad = None

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state and the fp32 masters (enough to resume bit-exactly)."""
        return {"optimizer": self.optimizer.state_dict(), "masters": [m.clone() for m in self.masters]}


def to_bf16(model: nn.Module) -> nn.Module:
    """Cast ``model``'s floating-point parameters and buffers to bf16 in place; returns it."""
    return model.to(torch.bfloat16)
