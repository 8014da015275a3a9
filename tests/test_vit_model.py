"""The ViT family: shapes, options, parameter counts and FLOPs against analytic values, isolation of images."""

from __future__ import annotations

import resource

import pytest
import torch

import vitkit
from vitkit.errors import ConfigError
from vitkit.models.layers import sincos_2d

SIZES = {  # name: (dim, depth, heads, patch), as in the ViT paper / DeiT
    "vit_ti16": (192, 12, 3, 16), "vit_s16": (384, 12, 6, 16), "vit_s32": (384, 12, 6, 32),
    "vit_b16": (768, 12, 12, 16), "vit_b32": (768, 12, 12, 32), "vit_l16": (1024, 24, 16, 16),
    "vit_h14": (1280, 32, 16, 14),
}


def analytic_params(dim: int, depth: int, patch: int, classes: int = 1000, image: int = 224) -> int:
    """Parameters of a paper ViT: patch conv, [CLS], pos-embed, blocks, final norm, head."""
    tokens = (image // patch) ** 2 + 1
    block = 2 * 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + 2 * (dim * 4 * dim) + 4 * dim + dim
    return (3 * patch * patch * dim + dim) + dim + tokens * dim + depth * block + 2 * dim + dim * classes + classes


def analytic_flops(dim: int, depth: int, patch: int, classes: int = 1000, image: int = 224) -> int:
    """Multiply-adds x 2 of the matmuls and the patch convolution (what `vitkit summary` counts)."""
    n = (image // patch) ** 2
    t = n + 1
    embed = 2 * n * dim * 3 * patch * patch
    attention = 2 * t * dim * 3 * dim + 2 * 2 * t * t * dim + 2 * t * dim * dim
    mlp = 2 * 2 * t * dim * 4 * dim
    return embed + depth * (attention + mlp) + 2 * dim * classes


@pytest.mark.parametrize("name", list(SIZES))
def test_parameter_count_matches_the_analytic_formula(name: str) -> None:
    dim, depth, heads, patch = SIZES[name]
    model = vitkit.create_model(name, device="meta")
    assert (model.config.dim, model.config.depth, model.config.heads) == (dim, depth, heads)
    assert sum(p.numel() for p in model.parameters()) == analytic_params(dim, depth, patch)


def test_vit_b16_has_timms_parameter_count() -> None:
    model = vitkit.create_model("vit_b16", device="meta")
    assert sum(p.numel() for p in model.parameters()) == 86_567_656


def test_summary_flops_of_vit_b16_match_the_analytic_count() -> None:
    summary = vitkit.summarize_model("vit_b16")
    expected = analytic_flops(768, 12, 16)
    assert abs(summary.total_flops - expected) / expected < 0.01, (summary.total_flops, expected)


def test_summary_of_vit_h14_allocates_no_weights() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    summary = vitkit.summarize_model("vit_h14")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert summary.total_params == analytic_params(1280, 32, 14)
    assert grown_mib < 300, f"summary grew peak memory by {grown_mib:.0f} MiB; fp32 weights would be ~2,400 MiB"


@pytest.mark.parametrize(
    "overrides, tokens",
    [
        ({}, 17),
        ({"class_token": False, "pool": "mean"}, 16),
        ({"pos_embed": "sincos2d"}, 17),
        ({"pos_embed": "learned_patches"}, 17),
        ({"pos_embed": "none", "pool": "mean"}, 17),
        ({"norm": "post"}, 17),
        ({"image_size": (32, 64), "patch_size": (8, 16)}, 17),
        ({"mlp_dim": 40, "qkv_bias": False}, 17),
        ({"stem": "conv"}, 17),
    ],
)
def test_options_give_expected_token_and_output_shapes(overrides: dict, tokens: int) -> None:
    config = dict(image_size=32, patch_size=8, dim=32, depth=2, heads=4, num_classes=5)
    config.update(overrides)
    model = vitkit.VisionTransformer(vitkit.ViTConfig(**config)).eval()
    images = torch.randn(3, 3, *model.config.image_size)
    assert model.forward_features(images).shape == (3, tokens, 32)
    assert model(images).shape == (3, 5)


def test_num_classes_zero_returns_features() -> None:
    model = vitkit.create_model("vit_ti16", num_classes=0, depth=1).eval()
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 192)


def test_mlp_dim_overrides_mlp_ratio() -> None:
    model = vitkit.VisionTransformer(vitkit.ViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=4,
                                                      mlp_dim=40))
    assert model.blocks[0].mlp.fc1.out_features == 40


def test_sincos_embedding_matches_the_formula_at_one_position() -> None:
    dim, grid = 16, (3, 5)
    table = sincos_2d(grid, dim)
    y, x = 2, 3  # position index y * grid_w + x
    omega = [1.0 / 10000 ** (i / (dim // 4)) for i in range(dim // 4)]
    expected = ([torch.sin(torch.tensor(x * w)) for w in omega] + [torch.cos(torch.tensor(x * w)) for w in omega]
                + [torch.sin(torch.tensor(y * w)) for w in omega] + [torch.cos(torch.tensor(y * w)) for w in omega])
    torch.testing.assert_close(table[y * grid[1] + x], torch.stack(expected).float())


def test_drop_path_rates_rise_linearly_to_the_configured_value() -> None:
    model = vitkit.VisionTransformer(vitkit.ViTConfig(image_size=32, patch_size=8, dim=32, depth=5, heads=4,
                                                      drop_path=0.2))
    assert [round(b.drop_path.p, 6) for b in model.blocks] == [0.0, 0.05, 0.1, 0.15, 0.2]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"image_size": 225}, "not a multiple of the patch size"),
        ({"dim": 100, "heads": 3}, "not divisible by heads"),
        ({"heads": 0}, "heads must be positive, got 0"),
        ({"class_token": False}, "pool='cls' needs class_token=True"),
        ({"pos_embed": "rope"}, "pos_embed must be one of"),
        ({"dropout": 1.5}, "dropout must be in [0, 1)"),
        ({"colour": "red"}, "unknown ViT option"),
        ({"stem": "conv", "patch_size": 14, "image_size": 224}, "power-of-two patch size"),
    ],
)
def test_bad_configs_raise_one_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        vitkit.create_model("vit_ti16", device="meta", **overrides)


def test_unknown_model_name_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match="did you mean vit_s16"):
        vitkit.create_model("vit_s61")


def test_wrong_input_size_is_a_clear_error() -> None:
    model = vitkit.create_model("vit_ti16", depth=1)
    with pytest.raises(ValueError, match="expected images of shape Bx3x224x224, got 1x3x160x160"):
        model(torch.randn(1, 3, 160, 160))


def test_config_round_trips_through_a_dict() -> None:
    config = vitkit.get_config("seed")
    assert vitkit.ViTConfig.from_dict(config.to_dict()) == config


def test_default_models_are_paper_correct() -> None:
    config = vitkit.get_config("vit_b16")
    assert (config.norm, config.pos_embed, config.attention_axis, config.class_token) == (
        "pre", "learned", "tokens", True)
