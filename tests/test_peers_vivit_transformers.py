"""ViViT Model 1 against transformers' ``VivitForVideoClassification`` (independent reference; peers env)."""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.interop.transformers_vivit import from_transformers_vivit, transformers_vivit_kwargs

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peers


def _randomise_embeddings(reference: torch.nn.Module) -> None:
    # transformers initialises [CLS] and the position embedding to zeros, which would hide a wrong mapping.
    with torch.no_grad():
        reference.vivit.embeddings.cls_token.normal_()
        reference.vivit.embeddings.position_embeddings.normal_(std=0.5)


@pytest.mark.parametrize("overrides", [
    {},
    {"tubelet_size": (1, 8, 8)},  # uniform frame sampling: each frame embedded on its own
    {"image_size": (32, 48), "tubelet_size": (4, 16, 8), "qkv_bias": False, "mlp_dim": 40},
])
def test_model_1_logits_equal_transformers_with_mapped_weights(overrides: dict) -> None:
    options = dict(variant="spatiotemporal", image_size=32, num_frames=8, tubelet_size=(2, 8, 8), dim=48, depth=2,
                   heads=4, num_classes=7) | overrides
    config = vitkit.ViViTConfig(**options)
    reference = transformers.VivitForVideoClassification(
        transformers.VivitConfig(**transformers_vivit_kwargs(config))).eval()
    _randomise_embeddings(reference)
    model = vitkit.VideoVisionTransformer(config).eval()
    model.load_state_dict(from_transformers_vivit(reference.state_dict()), strict=True)
    clips = torch.randn(3, *config.input_shape)
    with torch.no_grad():
        expected = reference(pixel_values=clips.transpose(1, 2)).logits  # transformers takes [B, T, C, H, W]
        diff = (model(clips) - expected).abs().max().item()
    assert diff <= 1e-5, f"max |vitkit - transformers| = {diff:.2e}"


def test_registered_model_1_base_has_transformers_parameter_count() -> None:
    config = vitkit.get_config("vivit_m1_b")
    with torch.device("meta"):
        reference = transformers.VivitForVideoClassification(
            transformers.VivitConfig(**transformers_vivit_kwargs(config)))
    model = vitkit.create_model("vivit_m1_b", device="meta")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


def test_vitkit_load_reads_a_saved_transformers_vivit_folder(tmp_path) -> None:
    """``save_pretrained`` writes the Hub layout (``vivit.encoder.layer.N.attention.attention.query``) and a
    config.json: ``vitkit.load`` detects it and builds the same model from the folder alone."""
    config = transformers.VivitConfig(image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=48,
                                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
                                      hidden_act="gelu", qkv_bias=False, num_labels=3,
                                      id2label={0: "run", 1: "jump", 2: "sit"}, label2id={"run": 0, "jump": 1, "sit": 2})
    reference = transformers.VivitForVideoClassification(config).eval()
    _randomise_embeddings(reference)
    reference.save_pretrained(tmp_path / "vivit")
    model = vitkit.load(tmp_path / "vivit")
    assert isinstance(model, vitkit.VideoVisionTransformer)
    assert model.config.extra["source"]["format"] == "transformers-vivit"
    assert model.config.extra["source"]["class_names"] == ["run", "jump", "sit"]
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=clips.transpose(1, 2)).logits
        diff = (model(clips) - expected).abs().max().item()
    assert diff <= 1e-5, f"max |vitkit - transformers| = {diff:.2e}"


def test_a_transformers_vivit_with_the_tanh_gelu_is_refused_in_one_line(tmp_path) -> None:
    config = transformers.VivitConfig(image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=48,
                                      num_hidden_layers=1, num_attention_heads=4, intermediate_size=80)
    transformers.VivitForVideoClassification(config).save_pretrained(tmp_path / "vivit")
    with pytest.raises(vitkit.VitkitError, match="hidden_act='gelu'"):
        vitkit.load(tmp_path / "vivit")
