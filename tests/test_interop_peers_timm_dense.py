"""Layer scale, register tokens, run-time input sizes and ``forward_intermediates`` against timm's
``VisionTransformer`` (random-init reference models built here and saved to disk, no downloads; peers env)."""

from __future__ import annotations

import pytest
import torch
from conftest import max_diff, randomize_
from safetensors.torch import load_file, save_file

import vitkit
from vitkit.interop.save import save_as
from vitkit.interop.timm import timm_kwargs

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

from timm.models.vision_transformer import VisionTransformer  # noqa: E402

BASE = dict(img_size=64, patch_size=16, embed_dim=64, depth=3, num_heads=4, num_classes=7)
# timm's options as the families use them: DeiT-3 (layer scale, no position for [CLS]), DINOv2-reg (registers
# too), registers covered by the position embedding, the plain ViT, and no [CLS] with mean pooling.
OPTIONS = {
    "deit3": dict(init_values=1e-6, no_embed_class=True),
    "dinov2_reg": dict(init_values=1e-5, reg_tokens=4, no_embed_class=True),
    "reg_with_positions": dict(reg_tokens=2, init_values=0.1),
    "plain": dict(),
    "gap_reg": dict(class_token=False, global_pool="avg", reg_tokens=1),
}
SIZES = [(64, 64), (96, 48), (128, 112)]


def timm_reference(options: dict, tmp_path, **extra) -> tuple[torch.nn.Module, object]:
    reference = randomize_(VisionTransformer(**BASE, **options, **extra))
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    return reference, path


@pytest.mark.parametrize("name", list(OPTIONS))
def test_timm_files_load_with_equal_logits_at_two_sizes(name, tmp_path) -> None:
    reference, path = timm_reference(OPTIONS[name], tmp_path)
    model = vitkit.load(path, heads=4)
    assert model.config.reg_tokens == OPTIONS[name].get("reg_tokens", 0)
    assert (model.config.init_values is None) == ("init_values" not in OPTIONS[name])
    for size in (64, 128):
        resized = vitkit.load(path, heads=4, image_size=size)
        timm_resized = VisionTransformer(**{**BASE, "img_size": size}, **OPTIONS[name]).eval()
        timm_resized.load_state_dict(timm.models.vision_transformer.checkpoint_filter_fn(
            reference.state_dict(), timm_resized), strict=True)
        images = torch.randn(2, 3, size, size)
        with torch.no_grad():
            diff = max_diff(resized(images), timm_resized(images))
        assert diff <= 1e-5, f"{name} at {size}: max |vitkit - timm| = {diff:.2e}"


@pytest.mark.parametrize("name", list(OPTIONS))
def test_vitkit_weights_export_to_timm_with_equal_logits(name, tmp_path) -> None:
    _, path = timm_reference(OPTIONS[name], tmp_path)
    model = randomize_(vitkit.load(path, heads=4))  # vitkit's own weights now: written back for timm
    exported = VisionTransformer(**timm_kwargs(model.config)).eval()
    exported.load_state_dict(load_file(save_as(model, "timm", tmp_path / "out.safetensors")), strict=True)
    with torch.no_grad():
        images = torch.randn(2, 3, 64, 64)
        assert max_diff(model(images), exported(images)) <= 1e-5, name


@pytest.mark.parametrize("name", list(OPTIONS))
def test_run_time_sizes_equal_timms_dynamic_img_size(name, tmp_path) -> None:
    reference, path = timm_reference(OPTIONS[name], tmp_path, dynamic_img_size=True)
    model = vitkit.load(path, heads=4, dynamic_img_size=True)
    for size in SIZES:
        images = torch.randn(2, 3, *size)
        with torch.no_grad():
            diff = max_diff(model(images), reference(images))
        assert diff <= 1e-5, f"{name} at {size}: max |vitkit - timm| = {diff:.2e}"


@pytest.mark.parametrize("indices", [None, 2, [0, -1], [1]])
@pytest.mark.parametrize("name", ["dinov2_reg", "plain", "gap_reg"])
def test_forward_intermediates_equal_timms(name, indices, tmp_path) -> None:
    reference, path = timm_reference(OPTIONS[name], tmp_path, dynamic_img_size=True)
    model = vitkit.load(path, heads=4, dynamic_img_size=True)
    for size in [(64, 64), (96, 48)]:
        images = torch.randn(2, 3, *size)
        for options in [{}, {"norm": True}, {"output_fmt": "NLC"}]:
            with torch.no_grad():
                final, maps = model.forward_intermediates(images, indices=indices, **options)
                timm_final, timm_maps = reference.forward_intermediates(images, indices=indices, **options)
                only = model.forward_intermediates(images, indices=indices, intermediates_only=True, **options)
            assert len(maps) == len(timm_maps) == len(only)
            assert final.shape == timm_final.shape and max_diff(final, timm_final) <= 1e-5
            for ours, theirs, alone in zip(maps, timm_maps, only):
                assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
                diff = max_diff(ours, theirs)
                assert diff <= 1e-5, f"{name} {indices} {options} at {size}: max |vitkit - timm| = {diff:.2e}"
                assert torch.equal(alone, ours)
