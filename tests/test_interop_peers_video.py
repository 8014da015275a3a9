"""Pretrained video models: transformers' VideoMAE and TimeSformer folders load into vitkit's ViViT and equal the
transformers models; ``--to hf`` writes them (and ViViT) back; registered sizes have transformers' parameter
counts; run-time clip sizes equal what transformers does at those sizes (peers env)."""

from __future__ import annotations

import pytest
import torch

import vitkit
from conftest import max_diff, randomize_, run_cli
from vitkit.interop.save import save_as
from vitkit.interop.transformers_timesformer import from_transformers_timesformer, transformers_timesformer_kwargs
from vitkit.interop.transformers_videomae import from_transformers_videomae, transformers_videomae_kwargs
from vitkit.interop.transformers_vivit import transformers_vivit_kwargs

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peers

LABELS = dict(id2label={0: "run", 1: "jump", 2: "sit"}, label2id={"run": 0, "jump": 1, "sit": 2})
SMALL = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80, num_labels=3)


def _videomae(**overrides) -> torch.nn.Module:
    options = dict(image_size=32, patch_size=8, num_frames=8, tubelet_size=2, **SMALL, **LABELS) | overrides
    return randomize_(transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**options)))


def _timesformer(**overrides) -> torch.nn.Module:
    options = dict(image_size=32, patch_size=8, num_frames=4, **SMALL, **LABELS) | overrides
    return randomize_(transformers.TimesformerForVideoClassification(transformers.TimesformerConfig(**options)))


def _logits(reference: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return reference(pixel_values=clips.transpose(1, 2)).logits  # transformers takes [B, T, C, H, W]


def _same(model: torch.nn.Module, reference: torch.nn.Module, clips: torch.Tensor) -> None:
    with torch.no_grad():
        diff = max_diff(model(clips), _logits(reference, clips))
    assert diff <= 1e-5, f"max |vitkit - transformers| = {diff:.2e}"


@pytest.mark.parametrize("overrides", [{}, {"image_size": [32, 48], "qv_bias": False, "tubelet_size": 1}])
def test_vitkit_load_reads_a_saved_videomae_folder(tmp_path, overrides: dict) -> None:
    reference = _videomae(**overrides).eval()
    reference.save_pretrained(tmp_path / "videomae")
    model = vitkit.load(tmp_path / "videomae")
    assert model.config.extra["source"]["format"] == "transformers-videomae"
    assert model.config.extra["source"]["class_names"] == ["run", "jump", "sit"]
    assert (model.config.pos_embed, model.config.fc_norm) == ("sincos", True)
    assert model.config.key_bias != ("qv_bias" not in overrides)  # q and v biases, no key bias, unless none at all
    height, width = model.config.image_size
    _same(model, reference, torch.randn(2, 3, 8, height, width))


def test_vitkit_load_reads_a_saved_timesformer_folder(tmp_path) -> None:
    reference = _timesformer().eval()
    reference.save_pretrained(tmp_path / "timesformer")
    model = vitkit.load(tmp_path / "timesformer")
    assert model.config.variant == "divided_space_time"
    assert model.config.extra["source"]["class_names"] == ["run", "jump", "sit"]
    _same(model, reference, torch.randn(2, 3, 4, 32, 32))


def _reference_of(config: vitkit.ViViTConfig) -> torch.nn.Module:
    if config.variant == "divided_space_time":
        return transformers.TimesformerForVideoClassification(
            transformers.TimesformerConfig(**transformers_timesformer_kwargs(config)))
    if config.pos_embed == "sincos":
        return transformers.VideoMAEForVideoClassification(
            transformers.VideoMAEConfig(**transformers_videomae_kwargs(config)))
    return transformers.VivitForVideoClassification(transformers.VivitConfig(**transformers_vivit_kwargs(config)))


ROUND_TRIPS = {
    "vivit": dict(image_size=32, num_frames=8, tubelet_size=(2, 8, 8)),
    "videomae": dict(image_size=32, num_frames=8, tubelet_size=(2, 8, 8), pool="mean", fc_norm=True,
                     fc_norm_eps=1e-5, pos_embed="sincos", key_bias=False),
    "timesformer": dict(variant="divided_space_time", image_size=32, num_frames=4, tubelet_size=(1, 8, 8)),
}


@pytest.mark.parametrize("kind", list(ROUND_TRIPS))
def test_to_hf_writes_a_folder_transformers_loads_and_vitkit_reads_back(tmp_path, kind: str) -> None:
    config = vitkit.ViViTConfig(dim=48, depth=2, heads=4, num_classes=3, **ROUND_TRIPS[kind])
    model = randomize_(vitkit.VideoVisionTransformer(config))
    save_as(model, "hf", tmp_path / kind, class_names=["a", "b", "c"])
    reference = type(_reference_of(config)).from_pretrained(tmp_path / kind).eval()
    assert reference.config.id2label[2] == "c"
    clips = torch.randn(2, *config.input_shape)
    _same(model, reference, clips)
    again = vitkit.load(tmp_path / kind)
    with torch.no_grad():
        assert max_diff(again(clips), model(clips)) <= 1e-6


def test_convert_cli_round_trips_a_timesformer_folder(tmp_path) -> None:
    reference = _timesformer().eval()
    reference.save_pretrained(tmp_path / "source")
    result = run_cli("convert", str(tmp_path / "source"), "--to", "hf", str(tmp_path / "out"))
    assert "ViViT dim 48" in result.stdout and "tubelet 1x8x8" in result.stdout
    written = transformers.TimesformerForVideoClassification.from_pretrained(tmp_path / "out").eval()
    clips = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(written(pixel_values=clips).logits, reference(pixel_values=clips).logits) <= 1e-6


def test_a_model_transformers_cannot_hold_is_refused_in_one_line(tmp_path) -> None:
    model = vitkit.create_model("vivit_m3_ti", num_frames=4, image_size=32)
    with pytest.raises(vitkit.VitkitError, match="cannot express Model 'factorised_self_attention'"):
        save_as(model, "hf", tmp_path / "m3")


def test_unsupported_transformers_video_options_are_refused_in_one_line(tmp_path) -> None:
    _videomae(use_mean_pooling=False).save_pretrained(tmp_path / "first_token")
    with pytest.raises(vitkit.VitkitError, match="use_mean_pooling=False"):
        vitkit.load(tmp_path / "first_token")
    _timesformer(attention_type="joint_space_time").save_pretrained(tmp_path / "joint")
    with pytest.raises(vitkit.VitkitError, match="attention_type='joint_space_time'"):
        vitkit.load(tmp_path / "joint")


@pytest.mark.parametrize("name", ["videomae_s16", "videomae_b16", "videomae_l16", "timesformer_b16",
                                  "timesformer_hr_b16"])
def test_registered_video_models_have_transformers_parameter_counts(name: str) -> None:
    config = vitkit.get_config(name)
    with torch.device("meta"):
        reference = _reference_of(config)
    model = vitkit.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


def test_videomae_at_another_clip_size_equals_videomae_built_at_that_size() -> None:
    """transformers' VideoMAE has no interpolate_pos_encoding: built at another size, it computes its sinusoid
    table for that many tokens (the weights do not depend on the size). vitkit's dynamic_img_size does the same."""
    reference = _videomae().eval()
    model = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(
        **{**ROUND_TRIPS["videomae"], "dim": 48, "depth": 2, "heads": 4, "mlp_dim": 80, "num_classes": 3,
           "norm_eps": 1e-12, "dynamic_img_size": True})).eval()
    model.load_state_dict(from_transformers_videomae(reference.state_dict()))
    other = _videomae(num_frames=4, image_size=[40, 24]).eval()
    other.load_state_dict(reference.state_dict())
    _same(model, other, torch.randn(2, 3, 4, 40, 24))
    _same(model, reference, torch.randn(2, 3, 8, 32, 32))


def test_timesformer_at_another_clip_size_equals_transformers_interpolation() -> None:
    """transformers' TimeSformer resamples its position tables (nearest) when the clip's grid differs: in space
    by itself; in time when built for the new frame count with the original time table left in place."""
    reference = _timesformer().eval()
    config = vitkit.get_config("timesformer_b16", dim=48, depth=2, heads=4, mlp_dim=80, num_classes=3, num_frames=4,
                               image_size=32, tubelet_size=(1, 8, 8), dynamic_img_size=True)
    model = vitkit.VideoVisionTransformer(config).eval()
    model.load_state_dict(from_transformers_timesformer(reference.state_dict()))
    _same(model, reference, torch.randn(2, 3, 4, 48, 48))  # 6x6 patches from the 4x4 table
    longer = _timesformer(num_frames=6).eval()
    state = reference.state_dict()
    longer.load_state_dict({k: v for k, v in state.items() if "time_embeddings" not in k}, strict=False)
    longer.timesformer.embeddings.time_embeddings = torch.nn.Parameter(state["timesformer.embeddings.time_embeddings"])
    _same(model, longer, torch.randn(2, 3, 6, 32, 32))


def test_a_vivit_learned_table_is_resampled_in_each_frame_as_timm_resamples_an_image() -> None:
    """transformers' ViViT cannot be the reference here (its interpolate_pos_encoding takes the T'N table for one
    square grid and fails on clips); within a frame, vitkit resamples as timm resamples an image ViT's table."""
    timm_layers = pytest.importorskip("timm.layers")
    config = vitkit.ViViTConfig(image_size=32, num_frames=8, tubelet_size=(2, 8, 8), dim=48, depth=1, heads=4,
                                dynamic_img_size=True)
    model = randomize_(vitkit.VideoVisionTransformer(config))
    table = model.pos_embed.weight.detach()
    with torch.no_grad():
        resampled = model.pos_embed.table((4, 6, 5))
    assert torch.equal(resampled[:, :1], table[:, :1])
    for t in range(4):
        frame = table[:, 1 + 16 * t : 1 + 16 * (t + 1)]
        expected = timm_layers.resample_abs_pos_embed(frame, (6, 5), (4, 4), num_prefix_tokens=0)
        assert max_diff(resampled[:, 1 + 30 * t : 1 + 30 * (t + 1)], expected) <= 1e-6


def test_loading_a_transformers_folder_at_another_clip_size_equals_transformers_at_that_size(tmp_path) -> None:
    """``vitkit.load(FOLDER, image_size=, num_frames=)`` (what ``vitkit train --task video --init FOLDER`` asks
    for): VideoMAE as transformers builds it at that size; TimeSformer as transformers resamples its tables."""
    videomae = _videomae().eval()
    videomae.save_pretrained(tmp_path / "videomae")
    at_size = _videomae(num_frames=4, image_size=48).eval()
    at_size.load_state_dict(videomae.state_dict())
    _same(vitkit.load(tmp_path / "videomae", image_size=48, num_frames=4), at_size, torch.randn(2, 3, 4, 48, 48))
    timesformer = _timesformer().eval()
    timesformer.save_pretrained(tmp_path / "timesformer")
    _same(vitkit.load(tmp_path / "timesformer", image_size=48), timesformer, torch.randn(2, 3, 4, 48, 48))
