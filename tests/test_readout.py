"""The [CLS] read-out shortcut: ``forward`` runs the last block for the [CLS] token alone.

Reference: the same model with the shortcut off (``prune_readout = False``: every block on every token, the
path the timm / transformers parity tests pinned down), and the analytic FLOPs the shortcut must save.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import vitkit
from vitkit.explain.attention import attention_maps
from vitkit.fast import checkpoint_blocks, quantize_int8, use_fused_kernels, use_matmul_attention
from vitkit.models.vivit import VideoVisionTransformer
from vitkit.models.vivit_config import ViViTConfig

TINY = dict(image_size=32, patch_size=8, dim=64, depth=3, heads=4, num_classes=5)
TOKENS = 1 + (32 // 8) ** 2


def vit(**overrides) -> vitkit.VisionTransformer:
    torch.manual_seed(0)
    return vitkit.VisionTransformer(vitkit.ViTConfig(**(TINY | overrides)))


def full(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with the shortcut off."""
    model = copy.deepcopy(model)
    model.prune_readout = False
    return model


def flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of ``model(x)``, counted on the meta device, where attention runs as matmuls the counter sees."""
    model = copy.deepcopy(model).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x.to("meta"))
    return counter.get_total_flops()


def last_mlp_tokens(model: torch.nn.Module, x: torch.Tensor) -> int:
    """How many tokens the last block's MLP processed in ``model(x)``."""
    seen = []
    hook = model.blocks[-1].mlp.fc2.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen[0]


def saved_flops(dim: int, hidden: int, tokens: int, batch: int) -> int:
    """What the last block no longer computes: its output projection and MLP for tokens 2..N, and the attention
    (scores and weighted sum) of those tokens' queries."""
    per_token = 2 * (dim * dim + 2 * dim * hidden) + 2 * 2 * tokens * dim
    return batch * (tokens - 1) * per_token


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_logits_equal_the_full_model_and_the_last_block_costs_less(norm: str) -> None:
    model = vit(norm=norm).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), full(model)(x), rtol=1e-5, atol=1e-5)
    assert flops(full(model), x) - flops(model, x) == saved_flops(64, 256, TOKENS, 4)


def test_training_gradients_equal_the_full_model_with_stochastic_depth() -> None:
    model = vit(drop_path=0.3).train()
    reference = full(model)
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 0])
    for m in (model, reference):
        torch.manual_seed(1)  # the same drop-path draws: the shortcut draws one mask per sample, as before
        F.cross_entropy(m(x), y).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("prepare", ["fused", "matmul_attention", "int8", "checkpoint_blocks", "grad_checkpointing"])
def test_shortcut_agrees_under_every_fast_path(prepare: str) -> None:
    model, x = vit(), torch.randn(3, 3, 32, 32)
    if prepare == "fused":
        use_fused_kernels(model)
    elif prepare == "matmul_attention":
        use_matmul_attention(model)
    elif prepare == "int8":
        model = quantize_int8(model)
    elif prepare == "checkpoint_blocks":
        checkpoint_blocks(model)
    else:
        model.grad_checkpointing = True
    model.train(prepare in ("checkpoint_blocks", "grad_checkpointing"))
    reference = full(model)
    # int8 quantises activations with one scale per tensor, so the [CLS] row alone gets its own scale.
    tolerance = 2e-2 if prepare == "int8" else 1e-5
    torch.testing.assert_close(model(x), reference(x), rtol=tolerance, atol=tolerance)
    assert (last_mlp_tokens(model, x), last_mlp_tokens(reference, x)) == (1, TOKENS)


@pytest.mark.parametrize("overrides", [dict(pool="mean"), dict(attention_axis="batch", norm="post")])
def test_no_shortcut_where_the_head_reads_every_token(overrides: dict) -> None:
    model, x = vit(**overrides).eval(), torch.randn(2, 3, 32, 32)
    assert flops(model, x) == flops(full(model), x)


def test_explain_still_records_the_full_attention_of_the_last_block() -> None:
    model, x = vit().eval(), torch.randn(2, 3, 32, 32)
    output, maps = attention_maps(model, x)
    assert maps.shape == (2, 3, 4, TOKENS, TOKENS)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 4, TOKENS))  # whole rows of every token
    with torch.no_grad():
        torch.testing.assert_close(output, full(model)(x), rtol=1e-5, atol=1e-5)


def test_summary_traces_every_token_of_the_last_block() -> None:
    summary = vitkit.summarize_model("vit_ti16")
    last = [s for s in summary.stages if s.name.startswith("blocks.")][-1]
    assert last.output_shape == [1, 197, 192]


VIDEO = dict(image_size=32, num_frames=4, tubelet_size=(2, 8, 8), dim=64, depth=2, heads=4, num_classes=3)


@pytest.mark.parametrize("variant, pool, pruned", [
    ("spatiotemporal", "cls", True), ("factorised_encoder", "cls", True), ("factorised_encoder", "mean", False),
    ("factorised_self_attention", "mean", False), ("factorised_dot_product", "mean", False)])
def test_video_models(variant: str, pool: str, pruned: bool) -> None:
    torch.manual_seed(0)
    model = VideoVisionTransformer(ViViTConfig(variant=variant, temporal_depth=2, pool=pool, **VIDEO)).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), full(model)(x), rtol=1e-5, atol=1e-5)
    assert (flops(model, x) < flops(full(model), x)) == pruned


def test_factorised_encoder_prunes_the_spatial_and_the_temporal_encoder() -> None:
    torch.manual_seed(0)
    config = ViViTConfig(variant="factorised_encoder", temporal_depth=2, **VIDEO)
    model, x = VideoVisionTransformer(config).eval(), torch.randn(2, 3, 4, 32, 32)
    frames = 2 * config.temporal_tokens  # spatial sequences: one per frame of each clip
    spatial = saved_flops(64, 256, config.spatial_tokens + 1, frames)
    temporal = saved_flops(64, 256, config.temporal_tokens + 1, 2)
    assert flops(full(model), x) - flops(model, x) == spatial + temporal
