"""Checkpoints in and out against transformers' ``ViTForImageClassification`` and ``ViTModel`` (random init,
saved and loaded through their own ``save_pretrained`` / ``from_pretrained``; no downloads; peers environment)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from conftest import max_diff, randomize_
import vitkit
from vitkit.interop.save import save_as

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peers

# Three architectures in transformers' own terms (its default layer_norm_eps of 1e-12 included).
HF_CONFIGS = {
    "d64_p16_bias": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                         image_size=64, patch_size=16, num_labels=7),
    "d96_p8_nobias": dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=3, intermediate_size=384,
                          image_size=48, patch_size=8, qkv_bias=False, num_labels=5),
    "d128_p14_mlp200": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=8, intermediate_size=200,
                            image_size=56, patch_size=14, num_labels=10),
}


def hf_config(name: str, **changes) -> "transformers.ViTConfig":
    return transformers.ViTConfig(**{**HF_CONFIGS[name], **changes})


def images_for(name: str, batch: int = 3) -> torch.Tensor:
    size = HF_CONFIGS[name]["image_size"]
    return torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_hf_classifier_loads_with_equal_logits(name, tmp_path) -> None:
    reference = randomize_(transformers.ViTForImageClassification(hf_config(name)))
    reference.save_pretrained(tmp_path)
    model = vitkit.load(tmp_path)
    assert model.config.norm_eps == 1e-12 and model.config.extra["source"]["format"] == "hf"
    images = images_for(name)
    with torch.no_grad():
        diff = max_diff(model(images), reference(pixel_values=images).logits)
    assert diff <= 1e-5, f"{name}: max |vitkit - transformers| = {diff:.2e}"


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_hf_vitmodel_features_equal_last_hidden_state(name, tmp_path) -> None:
    reference = randomize_(transformers.ViTModel(hf_config(name)))
    reference.save_pretrained(tmp_path)
    model = vitkit.load(tmp_path)
    assert model.config.num_classes == 0
    images = images_for(name)
    with torch.no_grad():
        hidden = reference(pixel_values=images).last_hidden_state
        diff = max_diff(model.forward_features(images), hidden)
        pooled_diff = max_diff(model(images), hidden[:, 0])
    assert diff <= 1e-5 and pooled_diff <= 1e-5, f"{name}: {diff:.2e} (tokens), {pooled_diff:.2e} ([CLS])"


def test_transformers_in_memory_layout_loads_too(tmp_path) -> None:
    # transformers 5 names modules q_proj / o_proj / mlp.fc1 in memory; a state_dict() saved by hand has them.
    reference = randomize_(transformers.ViTForImageClassification(hf_config("d64_p16_bias")))
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, tmp_path / "sd.safetensors")
    model = vitkit.load(tmp_path / "sd.safetensors", heads=4)
    images = images_for("d64_p16_bias")
    with torch.no_grad():
        assert max_diff(model(images), reference(pixel_values=images).logits) <= 1e-5


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_vitkit_weights_export_to_hf_with_equal_logits(name, tmp_path) -> None:
    hf = HF_CONFIGS[name]
    config = vitkit.ViTConfig(
        image_size=hf["image_size"], patch_size=hf["patch_size"], dim=hf["hidden_size"], depth=hf["num_hidden_layers"],
        heads=hf["num_attention_heads"], mlp_dim=hf["intermediate_size"], qkv_bias=hf.get("qkv_bias", True),
        num_classes=hf["num_labels"],  # vitkit's own LayerNorm eps (1e-6) travels in config.json
    )
    model = randomize_(vitkit.VisionTransformer(config))
    save_as(model, "hf", tmp_path / "hf", class_names=[f"c{i}" for i in range(config.num_classes)])
    reference = transformers.ViTForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert reference.config.id2label[1] == "c1"
    images = images_for(name)
    with torch.no_grad():
        diff = max_diff(model(images), reference(pixel_values=images).logits)
    assert diff <= 1e-5, f"{name}: max |vitkit - transformers| = {diff:.2e}"


def test_headless_vitkit_exports_to_hf_vitmodel(tmp_path) -> None:
    config = vitkit.ViTConfig(image_size=32, patch_size=8, dim=64, depth=2, heads=4, num_classes=0)
    model = randomize_(vitkit.VisionTransformer(config))
    save_as(model, "hf", tmp_path / "hf")
    reference = transformers.ViTModel.from_pretrained(tmp_path / "hf", add_pooling_layer=False).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        diff = max_diff(model.forward_features(images), reference(pixel_values=images).last_hidden_state)
    assert diff <= 1e-5, f"max |vitkit - transformers| = {diff:.2e}"


def test_other_sizes_equal_transformers_interpolate_pos_encoding(tmp_path) -> None:
    """transformers' ViT resamples its table plain bicubic; a loaded folder keeps that (pos_embed_antialias)."""
    reference = randomize_(transformers.ViTForImageClassification(hf_config("d96_p8_nobias")))
    reference.save_pretrained(tmp_path)
    model = vitkit.load(tmp_path, dynamic_img_size=True)
    images = torch.randn(2, 3, 64, 40)
    with torch.no_grad():
        expected = reference(pixel_values=images, interpolate_pos_encoding=True).logits
        assert model.config.pos_embed_antialias is False and max_diff(model(images), expected) <= 1e-5
