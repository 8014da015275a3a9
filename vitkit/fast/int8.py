"""int8 inference: dynamic quantisation of every Linear layer (weights int8 per output channel, activations
quantised per batch on the fly), as in ``torch.ao.quantization.quantize_dynamic``.

Linear layers hold ~98% of a ViT's FLOPs, and int8 GEMMs (VNNI on x86) run them at about twice the fp32
rate. Convolution (the patch embedding), attention, norms and GELU stay fp32. CPU only.

Why not torchao, where PyTorch moves quantisation: torchao 0.18 (the newest; it imports and runs with torch
2.13 and 2.14.1, its compiled extensions are CUDA-only) quantises the same way with
``quantize_(model, Int8DynamicActivationInt8WeightConfig())``, but in eager mode on the CPU it runs ViT-S/16
about 3x *slower* than fp32 (its int8 tensor subclass has no fused CPU kernel; it is built for CUDA and
torch.compile), while ``quantize_dynamic`` runs fbgemm's int8 GEMMs at ~1.9x fp32, with logits as close to
fp32 (docs/speed.md has the numbers). So vitkit keeps ``torch.ao.quantization.quantize_dynamic`` and hides
only its deprecation notice; revisit when torchao has a CPU kernel for dynamic int8 Linear.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..errors import VitkitError
from .swap import use_plain_kernels


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for CPU inference with int8 Linear layers; the original is left untouched."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise VitkitError("--int8 runs on the CPU only; drop --int8, or run the model on the CPU")
    engines = torch.backends.quantized.supported_engines
    if "x86" not in engines and "fbgemm" not in engines and "qnnpack" not in engines:
        raise VitkitError(f"this torch build has no int8 engine ({engines}); drop --int8")
    # quantize_dynamic only recognises the exact nn.Linear class, so fused modules go back to plain ones.
    model = use_plain_kernels(copy.deepcopy(model)).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        # One scale per output channel: rows of a ViT weight differ in range, and per-channel costs no speed.
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8)
