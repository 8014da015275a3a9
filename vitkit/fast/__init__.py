"""Fast paths: fused CPU kernels, bf16 weights with fp32 masters, fused AdamW, int8 inference, activation
checkpointing, token merging (approximate). Each is opt-in, leaves state-dict names unchanged, and is checked
against the fp32 reference (``tests/test_fast_paths.py``, ``tests/test_merge.py``).

Two speed-ups need no opting in, since they change no result: they are part of the models themselves (the
[CLS]-only last block, in-place GELU and residual sums without autograd; ``models/layers.py``).
"""

from .allocator import resolve_heap, tune_allocator
from .checkpoint import checkpoint_blocks
from .int8 import quantize_int8
from .merge import use_token_merging
from .precision import MasterWeights, bf16_is_native, fused_adamw, precision_choice, resolve_precision, to_bf16
from .swap import use_fused_kernels, use_matmul_attention, use_plain_kernels

__all__ = ["MasterWeights", "bf16_is_native", "checkpoint_blocks", "fused_adamw", "quantize_int8", "resolve_heap",
           "precision_choice", "resolve_precision", "to_bf16", "tune_allocator", "use_fused_kernels", "use_matmul_attention",
           "use_plain_kernels", "use_token_merging"]
