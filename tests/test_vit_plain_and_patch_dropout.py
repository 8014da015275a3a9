"""Patch dropout in training (Liu et al. 2022) and the JAX plain-ViT head (big_vision: fixed 2-D sincos, no [CLS],
global average pool), each against its definition written out here. timm parity is in
``test_interop_peers_timm_heads.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import randomize_

import vitkit
from vitkit.analysis.counts import count
from vitkit.errors import ConfigError
from vitkit.models.patch_dropout import PatchDropout


def small(**overrides) -> vitkit.VisionTransformer:
    options = dict(image_size=32, patch_size=8, dim=32, depth=2, heads=4, num_classes=5) | overrides
    return randomize_(vitkit.VisionTransformer(vitkit.ViTConfig(**options)))


@pytest.mark.parametrize("patches, p, prefix", [(16, 0.5, 1), (49, 0.25, 5), (10, 0.95, 0), (3, 0.9, 2)])
def test_patch_dropout_keeps_the_prefix_and_an_ordered_subset_of_the_patches(patches, p, prefix) -> None:
    tokens = torch.randn(4, prefix + patches, 8)
    drop = PatchDropout(p, prefix).train()
    out = drop(tokens)
    kept = max(1, int(patches * (1 - p)))
    assert out.shape == (4, prefix + kept, 8)
    assert torch.equal(out[:, :prefix], tokens[:, :prefix])
    for image in range(4):  # every kept row is one of this image's patches, in increasing position
        rows = out[image, prefix:]
        where = [int((tokens[image, prefix:] == row).all(-1).nonzero()) for row in rows]
        assert where == sorted(set(where))
    assert drop.eval()(tokens) is tokens


def test_patch_dropout_keeps_each_patch_with_probability_one_minus_p() -> None:
    torch.manual_seed(0)
    patches, p, draws = 20, 0.3, 4000
    tokens = torch.arange(patches, dtype=torch.float32).reshape(1, patches, 1).expand(draws, -1, -1)
    out = PatchDropout(p, 0).train()(tokens)
    frequency = torch.bincount(out.flatten().long(), minlength=patches) / draws
    expected = int(patches * (1 - p)) / patches  # 14 of 20
    sigma = math.sqrt(expected * (1 - expected) / draws)
    assert (frequency - expected).abs().max() < 5 * sigma, frequency


def test_a_model_with_patch_dropout_is_unchanged_in_eval_and_runs_fewer_tokens_in_training() -> None:
    model = small(patch_dropout=0.5, reg_tokens=2)
    plain = vitkit.VisionTransformer(model.config.replace(patch_dropout=0.0))
    plain.load_state_dict(model.state_dict())
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(images), plain.eval()(images))
    seen = []
    model.blocks[0].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    model.train()(images).sum().backward()
    assert seen == [(3, 1 + 2 + 8, 32)]  # [CLS], 2 registers, 8 of the 16 patches


def test_patch_dropout_outside_its_range_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"patch_dropout must be in \[0, 1\), got 1.0"):
        vitkit.ViTConfig(patch_dropout=1.0)


def big_vision_posemb(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """big_vision's ``posemb_sincos_2d`` ("Better plain ViT baselines", Beyer et al. 2022), in float64."""
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1))
    y = np.einsum("m,d->md", y.flatten(), omega)
    x = np.einsum("m,d->md", x.flatten(), omega)
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)


@pytest.mark.parametrize("grid, dim", [((4, 4), 32), ((3, 5), 64), ((14, 14), 384)])
def test_the_jax_sincos_table_is_big_visions_formula(grid, dim) -> None:
    model = small(image_size=(grid[0] * 8, grid[1] * 8), dim=dim, heads=4, pos_embed="sincos2d_jax",
                  class_token=False, pool="mean", fc_norm=False)
    table = model.pos_embed.weight[0].double().numpy()
    assert np.abs(table - big_vision_posemb(*grid, dim)).max() < 1e-6
    moco = small(image_size=(grid[0] * 8, grid[1] * 8), dim=dim, heads=4, pos_embed="sincos2d")
    assert np.abs(moco.pos_embed.weight[0].double().numpy() - big_vision_posemb(*grid, dim)).max() > 1e-3


def test_the_plain_vit_head_averages_the_normed_tokens_after_the_fixed_table() -> None:
    model = small(pos_embed="sincos2d_jax", class_token=False, pool="mean", fc_norm=False, dynamic_img_size=True)
    for size in (32, 48):
        images = torch.randn(2, 3, size, size)
        grid = size // 8
        x = model.patch_embed(images) + torch.from_numpy(big_vision_posemb(grid, grid, 32)).float()
        with torch.no_grad():
            expected = model.head(model.norm(model.blocks(x)).mean(dim=1))
            torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)
    assert not any("pos_embed" in name for name, _ in model.named_parameters())


def test_plain_vit_s16_is_registered_with_its_parameter_count() -> None:
    config = vitkit.get_config("plain_vit_s16")
    assert (config.pos_embed, config.class_token, config.pool, config.fc_norm) == ("sincos2d_jax", False, "mean",
                                                                                  False)
    model = vitkit.create_model("plain_vit_s16", device="meta")
    # ViT-S/16 without [CLS] and without a learned position table: 22,050,664 - 384 - 197 * 384.
    assert sum(p.numel() for p in model.parameters()) == count(config).params == 22_050_664 - 384 - 197 * 384
