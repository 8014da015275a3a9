"""Checkpoints in and out against torchvision's ``VisionTransformer`` (``vit_b_16`` and smaller ones built the
same way; random init, no downloads; peers environment)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import max_diff, randomize_
import vitkit
from vitkit.interop.save import save_as

torchvision = pytest.importorskip("torchvision")
pytestmark = pytest.mark.peers

from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

# torchvision's own arguments; its attention always has a qkv bias.
TV_CONFIGS = {
    "d64_p16": dict(image_size=64, patch_size=16, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=256,
                    num_classes=7),
    "d96_p8": dict(image_size=48, patch_size=8, num_layers=3, num_heads=3, hidden_dim=96, mlp_dim=200,
                   num_classes=5),
    "d128_p14": dict(image_size=56, patch_size=14, num_layers=2, num_heads=8, hidden_dim=128, mlp_dim=512,
                     num_classes=10),
}


@pytest.mark.parametrize("name", list(TV_CONFIGS))
def test_torchvision_weights_load_with_equal_logits(name, tmp_path) -> None:
    kwargs = TV_CONFIGS[name]
    reference = randomize_(VisionTransformer(**kwargs))
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    model = vitkit.load(tmp_path / "tv.pth", heads=kwargs["num_heads"])
    assert model.config.extra["source"]["format"] == "torchvision"
    images = torch.randn(3, 3, kwargs["image_size"], kwargs["image_size"])
    with torch.no_grad():
        diff = max_diff(model(images), reference(images))
    assert diff <= 1e-5, f"{name}: max |vitkit - torchvision| = {diff:.2e}"


@pytest.mark.parametrize("name", list(TV_CONFIGS))
def test_vitkit_weights_export_to_torchvision_with_equal_logits(name, tmp_path) -> None:
    kwargs = TV_CONFIGS[name]
    config = vitkit.ViTConfig(
        image_size=kwargs["image_size"], patch_size=kwargs["patch_size"], depth=kwargs["num_layers"],
        heads=kwargs["num_heads"], dim=kwargs["hidden_dim"], mlp_dim=kwargs["mlp_dim"],
        num_classes=kwargs["num_classes"],
    )
    model = randomize_(vitkit.VisionTransformer(config))
    written = save_as(model, "torchvision", tmp_path / "tv.safetensors")
    reference = VisionTransformer(**kwargs).eval()
    reference.load_state_dict(load_file(written), strict=True)
    images = torch.randn(3, 3, kwargs["image_size"], kwargs["image_size"])
    with torch.no_grad():
        diff = max_diff(model(images), reference(images))
    assert diff <= 1e-5, f"{name}: max |vitkit - torchvision| = {diff:.2e}"


@pytest.mark.slow
def test_vit_b_16_loads_with_inferred_config(tmp_path) -> None:
    reference = randomize_(torchvision.models.vit_b_16(weights=None, num_classes=10))
    torch.save(reference.state_dict(), tmp_path / "vit_b_16.pth")
    model = vitkit.load(tmp_path / "vit_b_16.pth")
    c = model.config
    assert (c.dim, c.depth, c.heads, c.patch_size, c.image_size) == (768, 12, 12, (16, 16), (224, 224))
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        diff = max_diff(model(images), reference(images))
    assert diff <= 1e-5, f"vit_b_16: max |vitkit - torchvision| = {diff:.2e}"


def test_torchvision_pre_logits_heads_are_refused(tmp_path) -> None:
    reference = VisionTransformer(**{**TV_CONFIGS["d64_p16"], "representation_size": 32})
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    with pytest.raises(vitkit.VitkitError, match="pre-logits"):
        vitkit.load(tmp_path / "tv.pth", heads=4)
