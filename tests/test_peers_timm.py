"""vitkit's ViT against timm's ``VisionTransformer`` (independent reference; run in the peers environment)."""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.interop.timm import from_timm, timm_kwargs, to_timm

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

TIMM_NAMES = {
    "vit_ti16": "vit_tiny_patch16_224", "vit_s16": "vit_small_patch16_224", "vit_s32": "vit_small_patch32_224",
    "vit_b16": "vit_base_patch16_224", "vit_b32": "vit_base_patch32_224", "vit_l16": "vit_large_patch16_224",
    "vit_l32": "vit_large_patch32_224", "vit_h14": "vit_huge_patch14_224",
    "deit3_s16": "deit3_small_patch16_224", "deit3_b16": "deit3_base_patch16_224",
    "dinov2_s14_reg": "vit_small_patch14_reg4_dinov2",
    # EVA-02 (timm's Eva), and its fine-tuned classifiers' sizes
    "eva02_ti14": "eva02_tiny_patch14_224", "eva02_s14": "eva02_small_patch14_224",
    "eva02_b14": "eva02_base_patch14_224",
    **{name: name for name in ("eva02_tiny_patch14_336", "eva02_small_patch14_336", "eva02_base_patch14_448")},
}


@pytest.mark.parametrize("name", list(TIMM_NAMES))
def test_parameter_counts_equal_timm(name: str) -> None:
    with torch.device("meta"):
        # Some timm configs default to no head (in21k features); ask for timm's 1000 classes like ours.
        reference = timm.create_model(TIMM_NAMES[name], pretrained=False, num_classes=1000)
    model = vitkit.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name", ["vit_ti16", "vit_s16"])
def test_logits_equal_timm_with_mapped_weights(name: str) -> None:
    reference = timm.create_model(TIMM_NAMES[name], pretrained=False, num_classes=10).eval()
    model = vitkit.create_model(name, num_classes=10).eval()
    model.load_state_dict(from_timm(reference.state_dict()), strict=True)
    images = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        diff = (model(images) - reference(images)).abs().max().item()
    assert diff <= 1e-5, f"{name}: max |vitkit - timm| = {diff:.2e}"


@pytest.mark.parametrize("overrides", [
    {"class_token": False, "pool": "mean"},
    {"pool": "mean"},
    {"pos_embed": "learned_patches", "qkv_bias": False},
    {"image_size": (64, 96), "patch_size": 8, "mlp_dim": 100},
])
def test_options_match_timm_in_both_directions(overrides: dict) -> None:
    options = dict(image_size=64, patch_size=16, dim=64, depth=2, heads=4, num_classes=7) | overrides
    config = vitkit.ViTConfig(**options)
    model = vitkit.VisionTransformer(config).eval()
    reference = timm.models.vision_transformer.VisionTransformer(**timm_kwargs(config)).eval()
    reference.load_state_dict(to_timm(model.state_dict(), config), strict=True)
    images = torch.randn(3, 3, *config.image_size)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), rtol=0, atol=1e-5)
        round_trip = vitkit.VisionTransformer(config).eval()
        round_trip.load_state_dict(from_timm(reference.state_dict()), strict=True)
        torch.testing.assert_close(round_trip(images), model(images), rtol=0, atol=0)
