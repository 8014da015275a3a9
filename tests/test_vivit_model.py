"""ViViT's four models: parameter and FLOP counts against analytic formulas, and the attention structure of
Models 3 and 4 (who can see whom), measured with autograd rather than read from the code."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vitkit
from vitkit.errors import ConfigError
from vitkit.models.vivit import FactorisedSelfAttentionBlock

SIZES = {"ti": (192, 12, 3), "s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}
TINY = dict(image_size=32, num_frames=6, tubelet_size=(2, 8, 8), dim=32, depth=2, heads=4, num_classes=5)


def block_params(dim: int) -> int:
    """Two LayerNorms, qkv and output projections, the 4x MLP."""
    return 2 * 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (4 * dim * dim + 4 * dim) + (4 * dim * dim + dim)


def analytic_params(model: int, dim: int, depth: int, temporal_depth: int = 4, frames: int = 16, patches: int = 196,
                    tubelet: int = 3 * 2 * 16 * 16, classes: int = 400) -> int:
    """Parameters of the paper's ViViT models (frames = T', patches = N)."""
    embed = tubelet * dim + dim
    tail = 2 * dim + dim * classes + classes  # final norm and head
    if model == 1:
        return embed + dim + (frames * patches + 1) * dim + depth * block_params(dim) + tail
    if model == 2:
        spatial = dim + (patches + 1) * dim + depth * block_params(dim) + 2 * dim
        temporal = dim + (frames + 1) * dim + temporal_depth * block_params(dim)
        return embed + spatial + temporal + tail
    temporal_attention = 2 * dim + 4 * dim * dim + 4 * dim  # Model 3: a LayerNorm and a second attention
    per_block = block_params(dim) + (temporal_attention if model == 3 else 0)
    return embed + frames * patches * dim + depth * per_block + tail


def analytic_flops(model: int, dim: int, depth: int, frames: int = 16, patches: int = 196, temporal_depth: int = 4,
                   heads: int = 12, tubelet: int = 3 * 2 * 16 * 16, classes: int = 400) -> int:
    """2 x multiply-adds of the embedding, the projections, the attention products and the head."""
    tokens = frames * patches
    embed = 2 * tokens * tubelet * dim
    head = 2 * dim * classes

    def dense(length: int) -> int:  # qkv, output projection, MLP
        return 2 * length * dim * (3 * dim + dim + 8 * dim)

    def attention(groups: int, length: int, width: int) -> int:  # QK^T and AV over `groups` sequences
        return 2 * 2 * groups * length * length * width

    if model == 1:
        return embed + depth * (dense(tokens + 1) + attention(1, tokens + 1, dim)) + head
    if model == 2:
        spatial = depth * (dense(frames * (patches + 1)) + attention(frames, patches + 1, dim))
        temporal = temporal_depth * (dense(frames + 1) + attention(1, frames + 1, dim))
        return embed + spatial + temporal + head
    if model == 3:
        second_attention = 2 * tokens * dim * 4 * dim + attention(patches, frames, dim)
        return embed + depth * (dense(tokens) + attention(frames, patches, dim) + second_attention) + head
    spatial_width = heads // 2 * dim // heads
    split = attention(frames, patches, spatial_width) + attention(patches, frames, dim - spatial_width)
    return embed + depth * (dense(tokens) + split) + head


@pytest.mark.parametrize("model", [1, 2, 3, 4])
@pytest.mark.parametrize("size", list(SIZES))
def test_registered_parameter_counts_match_the_analytic_formula(model: int, size: str) -> None:
    dim, depth, heads = SIZES[size]
    net = vitkit.create_model(f"vivit_m{model}_{size}", device="meta")
    assert (net.config.dim, net.config.depth, net.config.heads) == (dim, depth, heads)
    assert sum(p.numel() for p in net.parameters()) == analytic_params(model, dim, depth)


@pytest.mark.parametrize("model", [1, 2, 3, 4])
def test_summary_flops_match_the_analytic_count(model: int) -> None:
    summary = vitkit.summarize_model(f"vivit_m{model}_b", input_size=(3, 8, 224, 224))
    expected = analytic_flops(model, 768, 12, frames=4)
    assert abs(summary.total_flops - expected) / expected < 0.005, (summary.total_flops, expected)


def test_factorised_models_cost_less_attention_than_joint_attention() -> None:
    flops = {m: vitkit.summarize_model(f"vivit_m{m}_b").total_flops for m in (1, 3, 4)}
    assert flops[4] < flops[1] and flops[3] < flops[1], flops


def dependency(function, tokens: int, dim: int = 32) -> torch.Tensor:
    """[tokens, tokens] boolean: does output token i depend on input token j? (the gradient of a random
    projection of output token i with respect to every input token)"""
    x = torch.randn(1, tokens, dim, dtype=torch.float64, requires_grad=True)
    out = function(x)
    rows = []
    for i in range(tokens):
        (grad,) = torch.autograd.grad((out[0, i] * torch.randn(dim, dtype=torch.float64)).sum(), x, retain_graph=True)
        rows.append(grad[0].abs().sum(dim=1) > 0)
    return torch.stack(rows)


def same_frame(frames: int, positions: int) -> torch.Tensor:
    index = torch.arange(frames * positions)
    return (index[:, None] // positions) == (index[None, :] // positions)


def same_position(frames: int, positions: int) -> torch.Tensor:
    index = torch.arange(frames * positions)
    return (index[:, None] % positions) == (index[None, :] % positions)


def _silence(*linears: nn.Linear) -> None:
    """Zero a residual branch's output projection so that the branch adds nothing."""
    for linear in linears:
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)


def _model_3_block(frames: int) -> FactorisedSelfAttentionBlock:
    config = vitkit.ViViTConfig(**TINY | {"variant": "factorised_self_attention", "pool": "mean",
                                         "num_frames": 2 * frames})
    return FactorisedSelfAttentionBlock(config, drop_path=0.0).double().eval()


def test_model_3_spatial_step_mixes_only_tokens_of_the_same_frame() -> None:
    frames, positions = 3, 16
    block = _model_3_block(frames)
    _silence(block.temporal_attn.proj, block.mlp.fc2)
    assert torch.equal(dependency(block, frames * positions), same_frame(frames, positions))


def test_model_3_temporal_step_mixes_only_tokens_of_the_same_position() -> None:
    frames, positions = 3, 16
    block = _model_3_block(frames)
    _silence(block.attn.proj, block.mlp.fc2)
    assert torch.equal(dependency(block, frames * positions), same_position(frames, positions))


def test_model_3_full_block_mixes_every_token() -> None:
    frames, positions = 3, 16
    assert dependency(_model_3_block(frames), frames * positions).all()


@pytest.mark.parametrize("heads", [2, 4, 3])
def test_model_4_heads_split_between_space_and_time(heads: int) -> None:
    frames, positions, dim = 3, 16, 24
    config = vitkit.ViViTConfig(**TINY | {"variant": "factorised_dot_product", "pool": "mean", "dim": dim,
                                         "heads": heads, "num_frames": 2 * frames})
    attention = vitkit.VideoVisionTransformer(config).blocks[0].attn.double().eval()
    width = dim // heads * (heads // 2)  # output features of the spatial heads come first
    for rows, expected in [(slice(0, width), same_frame(frames, positions)),
                           (slice(width, dim), same_position(frames, positions))]:
        # Keep only one group of heads in the output projection: the result then comes from that group alone.
        keep = torch.zeros(dim, dtype=torch.float64)
        keep[rows] = 1
        with torch.no_grad():
            attention.proj.weight.copy_(torch.diag(keep))
            attention.proj.bias.zero_()
        assert torch.equal(dependency(attention, frames * positions, dim), expected)


def test_model_1_mixes_every_token_of_the_clip() -> None:
    model = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**TINY | {"pool": "mean"})).double().eval()
    assert dependency(model.blocks[0], 3 * 16).all()


@pytest.mark.parametrize("variant, pool, tokens", [
    ("spatiotemporal", "cls", 3 * 16 + 1),
    ("spatiotemporal", "mean", 3 * 16),
    ("factorised_encoder", "cls", 3 + 1),
    ("factorised_encoder", "mean", 3),
    ("factorised_self_attention", "mean", 3 * 16),
    ("factorised_dot_product", "mean", 3 * 16),
])
def test_every_variant_gives_expected_token_and_logit_shapes(variant: str, pool: str, tokens: int) -> None:
    model = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**TINY | {"variant": variant, "pool": pool})).eval()
    clips = torch.randn(2, 3, 6, 32, 32)
    assert model.forward_features(clips).shape == (2, tokens, 32)
    assert model(clips).shape == (2, 5)


def test_clips_of_a_batch_do_not_influence_each_other() -> None:
    for variant in ("spatiotemporal", "factorised_encoder", "factorised_self_attention", "factorised_dot_product"):
        pool = "cls" if variant in ("spatiotemporal", "factorised_encoder") else "mean"
        model = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**TINY | {"variant": variant, "pool": pool})).eval()
        clips = torch.randn(3, 3, 6, 32, 32)
        with torch.no_grad():
            alone = model(clips[:1])
            together = model(clips)[:1]
        torch.testing.assert_close(together, alone, msg=f"{variant}: clip 0 changed with its batch")


def test_summary_shows_spatial_and_temporal_stages_of_model_2() -> None:
    labels = [s.label for s in vitkit.summarize_model("vivit_m2_ti", input_size=(3, 8, 64, 64)).stages]
    assert labels[0] == "tubelet embedding 2x16x16 (tokens per frame)"
    assert "spatial block 12" in labels and "temporal block 4" in labels and "frame tokens ([CLS] of each frame)" in labels


def test_summary_cli_takes_a_video_input_size(tmp_path) -> None:
    from conftest import run_cli

    result = run_cli("summary", "vivit_m1_ti", "--input-size", "3x8x64x64", "--json")
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    assert data["input_shape"] == [1, 3, 8, 64, 64]
    assert data["stages"][0]["output_shape"] == [1, 4 * 4 * 4, 192]
    bad = run_cli("summary", "vivit_m1_ti", "--input-size", "3x64x64")
    assert bad.returncode == 2 and "C x T x H x W" in bad.stderr


@pytest.mark.parametrize("overrides, message", [
    ({"num_frames": 7}, "num_frames 7 is not a multiple of the tubelet size 2"),
    ({"variant": "factorised_self_attention"}, "has no [CLS] token; use pool='mean'"),
    ({"variant": "divided"}, "variant must be one of"),
    ({"tubelet_size": (2, 8)}, "expected a tubelet size (t, h, w)"),
    ({"frames": 8}, "unknown ViViT option"),
    ({"heads": 0}, "heads must be positive, got 0"),
])
def test_bad_video_configs_raise_one_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        vitkit.get_config("vivit_m1_ti", **overrides)


def test_wrong_clip_shape_is_a_clear_error() -> None:
    model = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**TINY))
    with pytest.raises(ValueError, match="expected clips of shape Bx3x6x32x32"):
        model(torch.randn(1, 6, 3, 32, 32))


def test_video_config_round_trips_through_a_dict() -> None:
    config = vitkit.get_config("vivit_m2_s", tubelet_size=(1, 16, 16))
    assert vitkit.ViViTConfig.from_dict(config.to_dict()) == config


def test_saved_video_model_reloads(tmp_path) -> None:
    from vitkit.store import load_model, save_model

    model = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**TINY | {"variant": "factorised_encoder"})).eval()
    save_model(tmp_path, model)
    loaded, _ = load_model(tmp_path)
    clips = torch.randn(1, 3, 6, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clips), model(clips), rtol=0, atol=0)
