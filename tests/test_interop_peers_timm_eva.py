"""EVA-02 against timm's ``Eva`` (random-init reference models built here and saved to disk, no downloads; peers
env): timm files loaded with equal logits at their size and resized on load, run-time sizes against
``dynamic_img_size=True`` (RoPE recomputed for the new grid as timm does), vitkit's weights written back for timm,
``forward_intermediates``, and one-line errors for Eva options vitkit lacks. The registered names' parameter counts
are checked against timm's in test_peers_timm.py."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import max_diff, no_grad_logits as logits, randomize_, save_weights
from safetensors.torch import load_file

import vitkit
from vitkit.errors import VitkitError
from vitkit.interop.save import save_as
from vitkit.interop.timm_eva import eva_kwargs

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

from timm.models.eva import Eva, checkpoint_filter_fn  # noqa: E402

# Small EVA-02s as timm's registered ones are built (patch 16 here, so RoPE's reference grid is 224 / 16 = 14).
EVA02 = dict(img_size=64, patch_size=16, embed_dim=64, depth=3, num_heads=4, num_classes=7, mlp_ratio=4 * 2 / 3,
             swiglu_mlp=True, use_rot_pos_emb=True, ref_feat_shape=(14, 14))
OPTIONS = {
    "tiny_small": dict(),  # fused qkv with q/v biases, packed SwiGLU
    "base_large": dict(qkv_fused=False, scale_mlp=True),  # separate q/k/v, SwiGLU with its norm
    "regs_layer_scale_cls": dict(num_reg_tokens=2, init_values=0.1, global_pool="token", qk_norm=True),
    # Without q/v biases, only layer scale's gamma_1 tells an Eva file from a timm ViT (see timm_eva.SIGNATURE).
    "no_embed_class_no_bias": dict(no_embed_class=True, qkv_bias=False, scale_mlp=True, init_values=1e-5),
}


def timm_reference(options: dict, tmp_path, **extra) -> tuple[torch.nn.Module, object]:
    """A random-init timm EVA-02 (``EVA02`` with ``options``) and the file it is saved in."""
    reference = randomize_(Eva(**EVA02, **options, **extra))
    return reference, save_weights(reference, tmp_path / "eva.safetensors")


@pytest.mark.parametrize("name", list(OPTIONS))
def test_timm_files_load_with_equal_logits_at_two_sizes(name, tmp_path) -> None:
    reference, path = timm_reference(OPTIONS[name], tmp_path)
    model = vitkit.load(path, heads=4)
    assert model.config.rope and model.config.rope_grid == (14, 14) and model.config.swiglu
    assert max_diff(logits(model, images := torch.randn(2, 3, 64, 64)), logits(reference, images)) <= 1e-5
    # Resized on load: the position embedding resampled as timm's checkpoint_filter_fn does, RoPE for 7x7.
    resized = vitkit.load(path, heads=4, image_size=112)
    timm_resized = Eva(**{**EVA02, "img_size": 112}, **OPTIONS[name]).eval()
    timm_resized.load_state_dict(checkpoint_filter_fn(reference.state_dict(), timm_resized), strict=True)
    images = torch.randn(2, 3, 112, 112)
    diff = max_diff(logits(resized, images), logits(timm_resized, images))
    assert diff <= 1e-5, f"{name} at 112: max |vitkit - timm| = {diff:.2e}"


def written_back(model: torch.nn.Module, reference: torch.nn.Module, tmp_path, sizes: list | None = None) -> float:
    """``vitkit convert --to timm`` of ``model`` loaded (strictly) into the timm ``reference``: max |logit diff| at
    the model's image size (or each of ``sizes``)."""
    reference.load_state_dict(load_file(save_as(model, "timm", tmp_path / "out.safetensors")), strict=True)
    diffs = []
    for size in sizes or [model.config.image_size]:
        images = torch.randn(1, 3, *size)
        diffs.append(max_diff(logits(model, images), logits(reference.eval(), images)))
    return max(diffs)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_vitkit_weights_export_to_timm_with_equal_logits_at_two_sizes(name, tmp_path) -> None:
    _, path = timm_reference(OPTIONS[name], tmp_path)
    model = randomize_(vitkit.load(path, heads=4, dynamic_img_size=True))  # vitkit's own weights, written back
    diff = written_back(model, Eva(**eva_kwargs(model.config)), tmp_path, sizes=[(64, 64), (96, 48)])
    assert diff <= 1e-5, name


@pytest.mark.parametrize("name, timm_name", [("eva02_ti14", "eva02_tiny_patch14_224"),
                                             ("eva02_b14", "eva02_base_patch14_224")])
def test_registered_models_export_to_timms_own_architecture(name, timm_name, tmp_path) -> None:
    model = randomize_(vitkit.create_model(name, depth=2, num_classes=5))
    reference = timm.create_model(timm_name, pretrained=False, depth=2, num_classes=5)
    assert written_back(model, reference, tmp_path) <= 1e-5


def test_a_timm_hub_folder_of_a_fine_tuned_classifier_loads_at_its_size(tmp_path) -> None:
    """As ``timm/eva02_tiny_patch14_336.*`` is laid out: weights and timm's config.json (RoPE's reference grid stays
    16x16, 224 px, while the model runs on 24x24)."""
    reference = randomize_(timm.create_model("eva02_tiny_patch14_336", pretrained=False, depth=2, num_classes=5))
    save_weights(reference, tmp_path / "model.safetensors")
    config = {"architecture": "eva02_tiny_patch14_336", "pretrained_cfg": {"input_size": [3, 336, 336]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = vitkit.load(tmp_path)
    assert model.config.image_size == (336, 336) and model.config.rope_grid == (16, 16)
    images = torch.randn(1, 3, 336, 336)
    assert max_diff(logits(model, images), logits(reference, images)) <= 1e-5


@pytest.mark.parametrize("name", list(OPTIONS))
def test_run_time_sizes_equal_timms_dynamic_img_size(name, tmp_path) -> None:
    reference, path = timm_reference(OPTIONS[name], tmp_path, dynamic_img_size=True)
    model = vitkit.load(path, heads=4, dynamic_img_size=True)
    for size in [(64, 64), (96, 48), (128, 112)]:
        images = torch.randn(2, 3, *size)
        diff = max_diff(logits(model, images), logits(reference, images))
        assert diff <= 1e-5, f"{name} at {size}: max |vitkit - timm| = {diff:.2e}"


@pytest.mark.parametrize("indices", [2, [0, -1]])
def test_forward_intermediates_equal_timms(indices, tmp_path) -> None:
    reference, path = timm_reference(OPTIONS["regs_layer_scale_cls"], tmp_path, dynamic_img_size=True)
    model = vitkit.load(path, heads=4, dynamic_img_size=True)
    images = torch.randn(2, 3, 96, 48)
    with torch.no_grad():
        final, maps = model.forward_intermediates(images, indices=indices, norm=True)
        timm_final, timm_maps = reference.forward_intermediates(images, indices=indices, norm=True)
    assert max_diff(final, timm_final) <= 1e-5 and len(maps) == len(timm_maps)
    for ours, theirs in zip(maps, timm_maps):
        assert ours.shape == theirs.shape == (2, 64, 6, 3) and max_diff(ours, theirs) <= 1e-5


@pytest.mark.parametrize("options, key", [
    (dict(scale_attn_inner=True), "blocks.0.attn.norm.bias"),
    (dict(global_pool="map"), "attn_pool.kv.bias"),
])
def test_eva_options_vitkit_lacks_are_refused_naming_the_key(options, key, tmp_path) -> None:
    _, path = timm_reference(options, tmp_path)
    with pytest.raises(VitkitError, match=rf"^this timm Eva uses .*\(key {key}\), which vitkit does not support$"):
        vitkit.load(path, heads=4)
