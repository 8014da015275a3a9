"""How each benchmark mode prepares a model: vitkit as ``vitkit predict`` / ``train`` run it, a peer library the
standard way.

| mode       | vitkit                                                          | peer (any nn.Module)              |
|------------|-----------------------------------------------------------------|-----------------------------------|
| infer-fp32 | the model as built                                              | eager fp32                        |
| infer-bf16 | bf16 weights + fused CPU kernels + matmul attention (CPU)       | bf16 weights (``.to(bfloat16)``)  |
| infer-int8 | int8 Linear layers (dynamic quantisation)                       | (not run: compared to fp32 peers) |
| train-fp32 | fused AdamW                                                     | eager fp32 + AdamW (default)      |
| train-bf16 | autocast bf16 + fused AdamW + matmul attention (CPU)            | autocast bf16 + AdamW (default)   |

"The model as built" already carries vitkit's own speed-ups, in every mode: the last block runs for the [CLS]
token alone (``prune_readout``: the head reads nothing else) and, without autograd, GELU and the residual sums
write in place. FLOPs (for MFU) are counted on the full architecture, the same for vitkit and its peers.

The fused oneDNN Linear kernels (``use_fused_kernels``) stay out of fp32: on CPUs without AVX-512 (AMD Zen 3
here) MKL's GEMM beats oneDNN's inner product. bf16 modes run only on CPUs with native bf16 (AVX-512-BF16 /
AMX, see ``vitkit.fast.bf16_is_native``); elsewhere every library's bf16 is an emulation, 5-10x slower than
fp32, and there is nothing meaningful to compare. bf16 weights with fp32 masters (``vitkit.fast.MasterWeights``)
is correct and tested but, on CPU with torch 2.14, slower than autocast: pure-bf16 LayerNorm, bias-gradient and
attention backward kernels are slow there. For the same reason bf16 on CPU runs attention as explicit matmuls
(``use_matmul_attention``), and bf16 training keeps the plain Linear kernels: the fused ones' hand-written
backward loses to autocast's.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..fast import checkpoint_blocks, fused_adamw, quantize_int8, use_fused_kernels, use_matmul_attention
from ..models.layers import every_token
from .timing import Candidate, Step
from .workloads import Forward, forward_flops, inference_step, random_batch, synchronized, training_step

MODES = ("infer-fp32", "infer-bf16", "infer-int8", "train-fp32", "train-bf16")
TRAIN_FLOPS_FACTOR = 3  # backward costs about twice the forward pass: the usual convention for MFU
LEARNING_RATE = 1e-4


def is_training(mode: str) -> bool:
    """Whether ``mode`` times a training step."""
    return mode.startswith("train")


def vitkit_candidate(name: str, build: Callable[[], nn.Module], mode: str, batch: int, shape: tuple[int, ...],
                     classes: int, device: str = "cpu", checkpointing: bool = False) -> Candidate:
    """vitkit's model ``build()`` prepared with every fast path that suits ``mode``."""

    def setup() -> tuple[Step, float]:
        model = build().to(device).eval()
        inputs, labels = random_batch(batch, shape, classes, device)
        flops = _architecture_flops(model, inputs, mode)
        if mode == "infer-int8":
            return inference_step(quantize_int8(model), inputs), flops
        if mode == "infer-bf16":
            model, inputs = model.to(torch.bfloat16), inputs.to(torch.bfloat16)
            if device == "cpu":
                use_fused_kernels(model)
        if device == "cpu" and mode.endswith("bf16"):
            use_matmul_attention(model)
        if checkpointing:
            checkpoint_blocks(model)
        if not is_training(mode):
            return synchronized(inference_step(model.eval(), inputs), device), flops
        model.train()
        autocast = torch.bfloat16 if mode == "train-bf16" else None
        return synchronized(training_step(model, inputs, labels, _adamw(model.parameters()), autocast), device), flops

    return Candidate(name, setup, items=batch)


def peer_candidate(name: str, build: Callable[[], nn.Module], mode: str, batch: int, shape: tuple[int, ...],
                   classes: int, device: str = "cpu", forward: Callable[[nn.Module], Forward] | None = None,
                   ) -> Candidate:
    """A peer library's model run the standard PyTorch way for ``mode`` (see the table above)."""

    def setup() -> tuple[Step, float]:
        model = build().to(device).eval()
        inputs, labels = random_batch(batch, shape, classes, device)
        flops = _flops(forward(model) if forward else model, inputs, mode)
        if mode == "infer-bf16":
            model, inputs = model.to(torch.bfloat16), inputs.to(torch.bfloat16)
        model.train(is_training(mode))
        call = forward(model) if forward else model
        if not is_training(mode):
            return synchronized(inference_step(call, inputs), device), flops
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
        autocast = torch.bfloat16 if mode == "train-bf16" else None
        return synchronized(training_step(call, inputs, labels, optimizer, autocast), device), flops

    return Candidate(name, setup, items=batch)


def _adamw(params) -> torch.optim.Optimizer:
    return fused_adamw(params, lr=LEARNING_RATE)


def _architecture_flops(model: nn.Module, inputs: torch.Tensor, mode: str) -> float:
    """FLOPs of the whole architecture, without vitkit's [CLS] read-out shortcut, so that MFU compares like
    with like (the shortcut shows as throughput, not as fewer FLOPs)."""
    with every_token(model):
        return _flops(model, inputs, mode)


def _flops(forward: Forward, inputs: torch.Tensor, mode: str) -> float:
    factor = TRAIN_FLOPS_FACTOR if is_training(mode) else 1
    return float(forward_flops(forward, inputs)) * factor
