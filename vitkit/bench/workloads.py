"""What one benchmark step is: inference (a forward pass) or training (forward, backward, optimizer step),
for any model that maps a batch to logits, plus the matmul that measures the machine's peak.

The same step functions time vitkit and its peers; only how a model is prepared (dtype, kernels, optimizer)
differs, and that is the caller's choice, stated in the results.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .timing import Candidate, Step

Forward = Callable[[torch.Tensor], torch.Tensor]
MATMUL_SIZE = 2048


def inference_step(forward: Forward, inputs: torch.Tensor) -> Step:
    """A step that runs ``forward(inputs)`` without autograd."""

    def step() -> None:
        with torch.inference_mode():
            forward(inputs)

    return step


def training_step(forward: Forward, inputs: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                  autocast: torch.dtype | None = None, after_step: Callable[[], None] | None = None) -> Step:
    """A step of cross-entropy training: forward, backward, ``optimizer.step()``, gradients set to None."""
    device = inputs.device.type

    def step() -> None:
        with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
            loss = F.cross_entropy(forward(inputs).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step()

    return step


def forward_flops(forward: Forward, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass (matmuls, convolutions, attention; a multiply-add counts 2), measured on
    one sample and scaled to the batch, so large models cost one cheap pass to count.

    Attention runs on the math backend while counting: the counter has no formula for the fused CPU kernels,
    and would otherwise see the attention of eager-attention models only."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]):
        forward(inputs[:1])
    return counter.get_total_flops() * inputs.shape[0]


def matmul_peak(dtype: torch.dtype, device: str = "cpu", size: int = MATMUL_SIZE) -> Candidate:
    """A candidate whose throughput is the FLOP/s of a ``size``-square matmul: the machine's practical peak."""

    def setup() -> tuple[Step, None]:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        return (lambda: _sync(torch.mm(a, b))), None

    return Candidate(f"matmul {size}² {_dtype_name(dtype)}", setup, items=2.0 * size**3)


def _sync(result: torch.Tensor) -> None:
    if result.is_cuda:
        torch.cuda.synchronize()


def synchronized(step: Step, device: str) -> Step:
    """``step`` followed by a device synchronisation, so CUDA timings measure the work, not the launch."""
    if torch.device(device).type != "cuda":
        return step

    def run() -> None:
        step()
        torch.cuda.synchronize()

    return run


def random_batch(batch: int, shape: tuple[int, ...], classes: int, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs ``[batch, *shape]`` and integer labels (speed does not depend on the values)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn((batch, *shape), generator=generator).to(device=device, dtype=dtype)
    labels = torch.randint(0, classes, (batch,), generator=generator).to(device)
    return inputs, labels


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))

