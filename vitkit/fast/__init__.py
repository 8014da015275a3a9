"""Fast paths: fused CPU kernels, bf16 weights with fp32 masters, fused AdamW, int8 inference, activation
checkpointing. Each is opt-in, leaves state-dict names unchanged, and is checked against the fp32 reference in
``tests/test_fast_paths.py``.
"""

from .checkpoint import checkpoint_blocks
from .int8 import quantize_int8
from .precision import MasterWeights, bf16_is_native, fused_adamw, resolve_precision, to_bf16
from .swap import use_fused_kernels, use_matmul_attention, use_plain_kernels

__all__ = ["MasterWeights", "bf16_is_native", "checkpoint_blocks", "fused_adamw", "quantize_int8", "resolve_precision",
           "to_bf16", "use_fused_kernels", "use_matmul_attention", "use_plain_kernels"]
