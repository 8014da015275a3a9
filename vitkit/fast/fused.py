"""Fused Linear (+ bias, + GELU) on CPU through oneDNN, with a plain-PyTorch fallback everywhere else.

Why: ``F.linear`` on CPU runs ``addmm``, which first copies the broadcast bias into the output and then
accumulates the product into it (``beta=1``): an extra pass over every activation. oneDNN's inner-product
primitive adds the bias (and can apply GELU) in the GEMM's epilogue instead. On ViT-Ti that copy plus the
separate GELU is about a fifth of the forward time.

The oneDNN op (``torch.ops.mkldnn._linear_pointwise``, the one Inductor emits for CPU) has no autograd
formula, so :class:`_FusedLinear` supplies the usual one: the backward pass is the same as ``F.linear``'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fused CPU linear."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls in hardware (AVX-512-BF16 or AMX). Without it, oneDNN has no bf16
    kernels at all and PyTorch's bf16 GEMM is an emulation many times slower than fp32."""
    return onednn_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


_ONEDNN = onednn_available()
_DTYPES = (torch.float32, torch.bfloat16) if cpu_has_native_bf16() else (torch.float32,)


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return _ONEDNN and x.device.type == "cpu" and x.dtype in _DTYPES and weight.dtype == x.dtype


class _FusedLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` with oneDNN in the forward pass and matmuls in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad2d = grad.reshape(-1, grad.shape[-1])
        grad_x = (grad2d @ weight).view(x.shape) if ctx.needs_input_grad[0] else None
        grad_w = grad2d.t() @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        grad_b = _column_sum(grad2d) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _column_sum(matrix: torch.Tensor) -> torch.Tensor:
    """Sum over rows as a matrix-vector product in fp32: on CPU ``sum(0)`` of a tall matrix is a strided
    reduction many times slower than a GEMV, and a bf16 reduction also loses precision."""
    ones = matrix.new_ones(matrix.shape[0], dtype=torch.float32)
    return torch.mv(matrix.t().float(), ones).to(matrix.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with the bias fused into the GEMM on CPU."""
    if not _use_onednn(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _FusedLinear.apply(x.contiguous(), weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu(F.linear(x))`` (exact erf GELU); fully fused into one oneDNN call when no gradient is needed."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if needs_grad or not _use_onednn(x, weight):
        # Training keeps the pre-activation for GELU's backward, so only the bias is fused.
        return F.gelu(linear(x, weight, bias))
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
