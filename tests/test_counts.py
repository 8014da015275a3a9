"""``vitkit models`` counts parameters and FLOPs from the config alone (``analysis/counts.py``); the dry run
traces the built model on the meta device. They must agree exactly, for every registered model and for the
options no registered model uses; ViT-B/16's 17.6 GMACs is the figure timm and the ViT paper quote."""

from __future__ import annotations

import json

import pytest

import vitkit
from conftest import run_cli
from vitkit.analysis.counts import count, swin3d_params
from vitkit.models import get_config, list_models
from vitkit.models.swin3d.config import Swin3DConfig

GRID_MODELS = [name for name in list_models() if hasattr(get_config(name), "input_shape")]  # not point clouds
SMALL = [name for name in GRID_MODELS if not name.endswith(("_b", "_l")) and name not in ("vit_l16", "vit_l32",
                                                                                             "vit_h14")]
VIT_OPTIONS = [dict(pool="mean", class_token=False), dict(pos_embed="sincos2d"), dict(pos_embed="none"),
               dict(stem="conv"), dict(num_classes=0, mlp_dim=100, qkv_bias=False),
               dict(image_size=(32, 48), patch_size=(8, 16)), dict(norm="post", attention_axis="batch"),
               dict(init_values=1e-5, reg_tokens=4), dict(reg_tokens=2, pos_embed="learned_patches"),
               dict(distilled=True), dict(distilled=True, num_classes=0, pos_embed="learned_patches"),
               dict(qk_norm=True, norm_pre=True), dict(pool="map", class_token=False), dict(pool="map", reg_tokens=2),
               dict(pool="mean", fc_norm=False), dict(swiglu=True, mlp_norm=True, key_bias=False, rope=True),
               dict(swiglu=True, mlp_dim=100, pool="mean"), dict(key_bias=False, qkv_layout="split", rope=True),
               dict(pool="cls_mean", reg_tokens=1),
               dict(norm_pre=True, pool="mean", final_norm=False), dict(pos_embed="sincos2d_jax", patch_dropout=0.5)]


def dry_run(config) -> tuple[int, int]:
    model = vitkit.build_model(config, device="meta")
    summary = vitkit.summarize(model, (1, *config.input_shape))
    return summary.total_params, summary.total_flops


@pytest.mark.parametrize("name", SMALL)
def test_counts_equal_the_dry_run(name: str) -> None:
    config = get_config(name)
    counts = count(config)
    assert (counts.params, counts.flops) == dry_run(config)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(GRID_MODELS) - set(SMALL)))
def test_counts_equal_the_dry_run_for_the_large_models(name: str) -> None:
    config = get_config(name)
    counts = count(config)
    assert (counts.params, counts.flops) == dry_run(config)


@pytest.mark.parametrize("overrides", VIT_OPTIONS, ids=lambda o: ",".join(o))
def test_counts_equal_the_dry_run_for_every_vit_option(overrides: dict) -> None:
    config = get_config("vit_ti16", image_size=64).replace(**overrides)
    counts = count(config)
    assert (counts.params, counts.flops) == dry_run(config)


@pytest.mark.parametrize("variant", ["vivit_m1_ti", "vivit_m2_ti", "vivit_m3_ti", "vivit_m4_ti", "timesformer_b16"])
def test_counts_equal_the_dry_run_for_video_options(variant: str) -> None:
    config = get_config(variant, num_frames=8, image_size=64, mlp_dim=100, qkv_bias=False, num_classes=0, heads=6)
    counts = count(config)
    assert (counts.params, counts.flops) == dry_run(config)


@pytest.mark.parametrize("variant", ["vivit_m1_ti", "vivit_m2_ti", "vivit_m3_ti", "timesformer_b16"])
def test_counts_equal_the_dry_run_without_a_key_bias(variant: str) -> None:
    """VideoMAE's attention (q and v biases only) in every variant that takes it; Model 2 with fc_norm."""
    pool = "cls" if variant in ("vivit_m1_ti", "timesformer_b16") else "mean"
    config = get_config(variant, num_frames=8, image_size=64, key_bias=False, pool=pool, fc_norm=pool == "mean")
    counts = count(config)
    assert (counts.params, counts.flops) == dry_run(config)


POINT_MODELS = [name for name in list_models() if isinstance(get_config(name), Swin3DConfig)]
SWIN3D_OPTIONS = [dict(mlp_ratio=2.5, crse=("rgb", "norm"), in_channels=6, num_classes=5),
                  dict(depths=(1, 2), channels=(8, 24), heads=(2, 3), window_sizes=(3, 5), up_attention=False)]


@pytest.mark.parametrize("name, overrides", [*[(name, {}) for name in POINT_MODELS],
                                             *[("swin3d_tiny", options) for options in SWIN3D_OPTIONS]])
def test_swin3d_params_equal_the_built_model(name: str, overrides: dict) -> None:
    config = get_config(name).replace(**overrides)
    model = vitkit.build_model(config, device="meta")
    assert swin3d_params(config) == sum(p.numel() for p in model.parameters())


def test_vit_b16_is_17_6_gmacs_as_timm_and_the_paper_say() -> None:
    assert round(count(get_config("vit_b16")).macs / 1e9, 1) == 17.6
    assert count(get_config("vit_b16")).params == 86_567_656  # timm's vit_base_patch16_224


def test_models_command_shows_gmacs_and_gflops() -> None:
    result = run_cli("models", "--json")
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(list_models())
    assert round(rows["vit_b16"]["gmacs"], 1) == 17.6 and round(rows["vit_b16"]["gflops"], 1) == 35.1
    header = run_cli("models").stdout.splitlines()[0]
    assert "GMACs" in header and "GFLOPs" in header
