"""Video models at run-time clip sizes (``dynamic_img_size``), their ``forward_intermediates`` maps, and the
VideoMAE / TimeSformer options checked against direct computations (the transformers comparisons are in
``test_interop_peers_video.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import block_outputs, intermediates_every_way, max_diff

import vitkit
from vitkit.explain.video import explain_video
from vitkit.interop.save import save_as
from vitkit.models import video_positions
from vitkit.models.inflate import inflate_from_image
from vitkit.models.layers import Attention, QVBiasAttention
from vitkit.models.video_positions import resample_grid, sinusoid_table
from vitkit.store import save_model

TINY = dict(image_size=32, num_frames=4, tubelet_size=(2, 8, 8), dim=32, depth=3, heads=4, num_classes=5)
VARIANTS = {
    "m1": {}, "m2": dict(variant="factorised_encoder", temporal_depth=2),
    "m3": dict(variant="factorised_self_attention", pool="mean"),
    "m4": dict(variant="factorised_dot_product", pool="mean"),
    "videomae": dict(pool="mean", fc_norm=True, fc_norm_eps=1e-5, pos_embed="sincos", key_bias=False),
    "timesformer": dict(variant="divided_space_time", tubelet_size=(1, 8, 8)),
}


def tiny(kind: str, **overrides) -> vitkit.VideoVisionTransformer:
    torch.manual_seed(0)
    model = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**{**TINY, **VARIANTS[kind], **overrides}))
    with torch.no_grad():  # no zero-initialised parameters: a wrong mapping or layout must show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def same_weights(model: vitkit.VideoVisionTransformer, **overrides) -> vitkit.VideoVisionTransformer:
    other = vitkit.VideoVisionTransformer(model.config.replace(**overrides)).eval()
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_dynamic_size_at_the_configured_size_is_the_fixed_path_bit_for_bit(kind: str, monkeypatch) -> None:
    fixed = tiny(kind)
    dynamic = same_weights(fixed, dynamic_img_size=True)

    def no_resampling(*args, **kwargs):
        raise AssertionError("the configured size must not resample or recompute a position table")

    monkeypatch.setattr(video_positions, "resample_grid", no_resampling)
    monkeypatch.setattr(video_positions, "sinusoid_table", no_resampling)
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(dynamic(clips), fixed(clips))


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_other_clip_sizes_are_an_error_without_dynamic_size_and_run_with_it(kind: str) -> None:
    model = tiny(kind)
    with pytest.raises(ValueError, match="expected clips of shape Bx3x4x32x32"):
        model(torch.randn(1, 3, 8, 48, 40))
    dynamic = same_weights(model, dynamic_img_size=True)
    clips = torch.randn(2, 3, 8, 48, 40)
    with torch.no_grad():
        logits = dynamic(clips)
        # Each clip alone gives its row: nothing of the other size leaks between clips or stays behind.
        assert torch.allclose(dynamic(clips[1:]), logits[1:], atol=1e-5)
        assert torch.equal(dynamic(torch.zeros(1, 3, 4, 32, 32)), model(torch.zeros(1, 3, 4, 32, 32)))
    assert logits.shape == (2, 5)
    with pytest.raises(ValueError, match="multiples of the tubelet"):
        dynamic(torch.randn(1, 3, 4, 36, 40))


def test_a_frame_count_change_resamples_linearly_in_time_like_numpy_interp() -> None:
    """align_corners=False: output frame j samples the input at (j + 0.5) * T / T' - 0.5, clamped at the ends."""
    table = torch.randn(1, 5 * 2 * 3, 4, dtype=torch.float64)
    resampled = resample_grid(table, (5, 2, 3), (8, 2, 3), "bicubic").reshape(8, 6, 4).numpy()
    cells = table.reshape(5, 6, 4).numpy()
    where = (np.arange(8) + 0.5) * 5 / 8 - 0.5
    for cell in range(6):
        for channel in range(4):
            expected = np.interp(where, np.arange(5), cells[:, cell, channel])
            np.testing.assert_allclose(resampled[:, cell, channel], expected, rtol=0, atol=1e-6)  # float32


def test_nearest_resampling_repeats_whole_frames_and_patches() -> None:
    table = torch.arange(2 * 2 * 2, dtype=torch.float32).reshape(1, 8, 1)
    resampled = resample_grid(table, (2, 2, 2), (4, 4, 4), "nearest").reshape(4, 4, 4)
    expected = table.reshape(2, 2, 2).repeat_interleave(2, 0).repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert torch.equal(resampled, expected)


def test_the_sinusoid_table_is_vaswanis_formula() -> None:
    table = sinusoid_table(7, 6)
    for position in range(7):
        for i in range(6):
            angle = position / 10000 ** (2 * (i // 2) / 6)
            expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert abs(table[position, i].item() - expected) < 1e-7
    assert "pos_embed.weight" not in tiny("videomae").state_dict()  # computed, not saved


def test_a_key_bias_changes_nothing_so_videomae_attention_has_none() -> None:
    torch.manual_seed(0)
    plain = Attention(16, 4).eval()
    without = QVBiasAttention(16, 4).eval()
    with torch.no_grad():
        plain.qkv.bias.normal_()
        without.qkv.weight.copy_(plain.qkv.weight)
        without.proj.load_state_dict(plain.proj.state_dict())
        without.q_bias.copy_(plain.qkv.bias[:16])
        without.v_bias.copy_(plain.qkv.bias[32:])
        x = torch.randn(2, 9, 16)
        torch.testing.assert_close(without(x), plain(x), rtol=0, atol=1e-6)


def test_fc_norm_normalises_the_pooled_vector() -> None:
    model = tiny("videomae")
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(clips)
        expected = model.head(torch.nn.functional.layer_norm(tokens.mean(1), (32,), model.norm.weight,
                                                             model.norm.bias, eps=1e-5))
        torch.testing.assert_close(model(clips), expected)


def test_timesformer_class_token_takes_the_mean_of_its_per_frame_copies() -> None:
    """Spatial step: [CLS] attends within each frame separately; its update is the mean over frames. So a clip
    whose frames are all the same gives the [CLS] of one frame, whichever frame count."""
    block = tiny("timesformer").blocks[0]
    cls, frame = torch.randn(1, 1, 32), torch.randn(1, 16, 32)
    with torch.no_grad():
        block.frames = 4
        four = block(torch.cat([cls, frame.repeat(1, 4, 1)], dim=1))
        block.frames = 1
        one = block(torch.cat([cls, frame], dim=1))
    torch.testing.assert_close(four[:, :1], one[:, :1], rtol=0, atol=1e-5)
    torch.testing.assert_close(four[:, 1:17], one[:, 1:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_loading_at_another_clip_size_equals_running_the_original_at_it(kind: str, tmp_path) -> None:
    """``vitkit.load(FOLDER, image_size=, num_frames=)`` resamples the tables once as dynamic_img_size does each
    forward pass."""
    model = tiny(kind)
    save_model(tmp_path / kind, model)
    resized = vitkit.load(tmp_path / kind, image_size=(48, 40), num_frames=8)
    assert resized.config.grid_size == (8 // model.config.tubelet_size[0], 6, 5)
    dynamic = same_weights(model, dynamic_img_size=True)
    clips = torch.randn(2, 3, 8, 48, 40)
    with torch.no_grad():
        assert max_diff(resized(clips), dynamic(clips)) <= 1e-6


@pytest.mark.parametrize("kind", ["videomae", "timesformer"])
def test_inflating_an_image_vit_into_videomae_or_timesformer_is_refused_in_one_line(kind: str) -> None:
    image = vitkit.VisionTransformer(vitkit.ViTConfig(image_size=32, patch_size=8, dim=32, depth=3, heads=4))
    with pytest.raises(vitkit.VitkitError, match="inflating an image ViT supports ViViT Models 1-4, not"):
        inflate_from_image(tiny(kind), image)


def test_explaining_a_timesformer_is_refused_in_one_line() -> None:
    with pytest.raises(vitkit.VitkitError, match="explain does not draw TimeSformer"):
        explain_video(tiny("timesformer"), torch.randn(1, 3, 4, 32, 32), "rollout")


@pytest.mark.parametrize("fmt", ["timm", "torchvision"])
def test_converting_a_video_model_to_an_image_library_is_refused_in_one_line(fmt: str, tmp_path) -> None:
    with pytest.raises(vitkit.VitkitError, match=f"{fmt} has no video models: convert a ViViT --to vitkit or --to hf"):
        save_as(tiny("videomae"), fmt, tmp_path / "out.safetensors")


@pytest.mark.parametrize("options, message", [
    (dict(variant="divided_space_time", pool="mean"), "use pool='cls'"),
    (dict(pos_embed="sincos"), "needs pool='mean'"),
    (dict(fc_norm=True), "needs pool='mean'"),
    (dict(key_bias=False, qkv_bias=False), "needs qkv_bias=True"),
])
def test_bad_pretrained_video_options_raise_one_line(options: dict, message: str) -> None:
    with pytest.raises(vitkit.ConfigError, match=message):
        vitkit.ViViTConfig(**{**TINY, **options})


@pytest.mark.parametrize("indices, taken", [(None, [0, 1, 2]), (2, [1, 2]), ([0, -1], [0, 2])])
@pytest.mark.parametrize("kind", list(VARIANTS))
def test_forward_intermediates_are_the_chosen_blocks_patch_tokens_as_maps(kind: str, indices, taken) -> None:
    model = tiny(kind, dynamic_img_size=True)
    clips = torch.randn(2, 3, 8, 48, 32)  # another size than configured: T', H', W' = 4 (8 for 1-frame tubelets), 6, 4
    grid = (8 // model.config.tubelet_size[0], 6, 4)
    hooked = block_outputs(model, clips, model.spatial_blocks if kind == "m2" else model.blocks)
    prefix = model.num_prefix_tokens
    out = intermediates_every_way(model, clips, indices)
    assert torch.equal(out["final"], out["features"])
    assert len(out["maps"]) == len(taken) and all(m.shape == (2, 32, *grid) for m in out["maps"])
    norm = model.spatial_norm if kind == "m2" else (lambda x: x) if kind == "videomae" else model.norm
    with torch.no_grad():
        for i, index in enumerate(taken):
            patches = hooked[index][:, prefix:].reshape(2, -1, 32)  # Model 2: [B T', N, D] frame by frame
            assert torch.equal(out["tokens"][i], patches)
            assert torch.equal(out["maps"][i], patches.transpose(1, 2).reshape(2, 32, *grid))
            assert torch.equal(out["early"][i], out["maps"][i])
            expected = norm(hooked[index])[:, prefix:].reshape(2, -1, 32).transpose(1, 2).reshape(2, 32, *grid)
            torch.testing.assert_close(out["normed"][i], expected)


@pytest.mark.parametrize("kind", ["m1", "timesformer"])
def test_forward_intermediates_maps_put_each_tubelet_at_its_place(kind: str) -> None:
    """With identity blocks and no positions, a clip that is zero but for one pixel gives a map that is zero
    but at that pixel's tubelet (t, h, w)."""
    model = tiny(kind)
    model.blocks[0] = torch.nn.Identity()
    with torch.no_grad():
        for name in ("pos_embed", "temporal_pos_embed"):
            if hasattr(model, name):
                getattr(model, name).weight.zero_()
        model.patch_embed.proj.bias.zero_()
        clips = torch.zeros(1, 3, 4, 32, 32)
        clips[0, 1, 3, 19, 26] = 1.0  # frame 3, row 19, column 26: tubelet (3 // t, 2, 3)
        maps = model.forward_intermediates(clips, indices=[0], intermediates_only=True)[0]
    t = 3 // model.config.tubelet_size[0]
    nonzero = maps.abs().sum(1)[0].nonzero().tolist()
    assert nonzero == [[t, 2, 3]]
