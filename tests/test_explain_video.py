"""Explaining video models (ViViT): rollout of each model against products written out here, the structure of
the factorised models' token maps, heat shapes and sums for every variant and method, and the CLI (GIF +
timeline PNG) on a generated video."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from vitkit.data.video import ClipSampler, decode_video
from vitkit.explain import (
    attention_maps, block_mixing, explain, factorised_steps, figure_size, load_clip, recording,
    rollout, timeline_size, token_shares,
)
from vitkit.inference import default_preprocess
from vitkit.models.vivit import VideoVisionTransformer
from vitkit.models.vivit_config import ViViTConfig
from vitkit.store import save_model

av = pytest.importorskip("av")

# 4 frames of 16 px in 2x8x8 tubelets: T' = 2 temporal tokens of N = 2 x 2 = 4 patches.
FRAMES, TOKENS, GRID, PATCHES = 4, 2, (2, 2), 4
VARIANTS = [("spatiotemporal", "cls"), ("spatiotemporal", "mean"), ("factorised_encoder", "cls"),
            ("factorised_encoder", "mean"), ("factorised_self_attention", "mean"), ("factorised_dot_product", "mean")]


def tiny(variant: str, pool: str = "mean", **overrides) -> VideoVisionTransformer:
    options = dict(variant=variant, pool=pool, image_size=16, num_frames=FRAMES, tubelet_size=(2, 8, 8), dim=16,
                   depth=2, temporal_depth=2, heads=2, mlp_dim=16, num_classes=3) | overrides
    return VideoVisionTransformer(ViViTConfig(**options)).eval()


def clips(batch: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(batch, 3, FRAMES, size, size)


def with_uniform_attention(model: VideoVisionTransformer) -> VideoVisionTransformer:
    """Zero query and key projections: every score is 0, so each token attends equally to all it may see."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "qkv"):
                dim = module.qkv.in_features
                module.qkv.weight[: 2 * dim] = 0
                module.qkv.bias[: 2 * dim] = 0
    return model


def residual_product(layers: list[torch.Tensor]) -> torch.Tensor:
    """Rollout written out: per layer 0.5 I + 0.5 (head mean), rows renormalised, the last layer leftmost."""
    size = layers[0].shape[-1]
    result = torch.eye(size, dtype=torch.float64)
    for attention in layers:
        step = 0.5 * torch.eye(size, dtype=torch.float64) + 0.5 * attention.double().mean(dim=0)
        step = step / step.sum(dim=1, keepdim=True)
        result = step @ result
    return result


# --- (a) rollout against the hand-computed value ---------------------------------------------------------

def test_model1_rollout_of_uniform_attention_is_known_in_closed_form() -> None:
    """Uniform attention over n = 1 + T'N = 9 tokens, 2 layers: each is 0.5 I + J / 18, and
    (0.5 I + J / 18)^2 = 0.25 I + J / 12: every patch gets 1/12 of the [CLS] row."""
    heat = explain(with_uniform_attention(tiny("spatiotemporal", "cls")), clips(), "rollout").heat
    assert heat.shape == (2, 1, TOKENS, *GRID)
    torch.testing.assert_close(heat, torch.full_like(heat, 1 / 12), rtol=0, atol=1e-6)


def test_model1_rollout_equals_the_product_of_its_recorded_layers() -> None:
    model, x = tiny("spatiotemporal", "cls"), clips()
    _, attention = attention_maps(model, x)  # [B, layers, heads, 1 + T'N, 1 + T'N]
    heat = explain(model, x, "rollout").heat
    for b in range(2):
        expected = residual_product(list(attention[b]))[0, 1:]  # the [CLS] row over the patches, frame-major
        torch.testing.assert_close(heat[b, 0].double(), expected.reshape(TOKENS, *GRID), rtol=0, atol=1e-6)


def test_model2_rollout_is_the_spatial_rollout_weighted_by_the_frame_relevance() -> None:
    model, x = tiny("factorised_encoder", "cls"), clips()
    with torch.no_grad(), recording(model) as maps:
        model(x)
    spatial, temporal = maps[:2], maps[2:]  # [B T', heads, 1 + N, 1 + N] x depth, [B, heads, 1 + T', 1 + T'] x 2
    heat = explain(model, x, "rollout").heat
    for b in range(2):
        frames = residual_product([m[b] for m in temporal])[0, 1:]  # [CLS] over the frame tokens
        for t in range(TOKENS):
            patches = residual_product([m[b * TOKENS + t] for m in spatial])[0, 1:]  # frame t's [CLS] over patches
            torch.testing.assert_close(heat[b, 0, t].double(), (frames[t] * patches).reshape(GRID), rtol=0,
                                       atol=1e-6)


def test_model2_rollout_of_uniform_attention_is_known_in_closed_form() -> None:
    """One layer each: spatial 0.5 I + J / 10 over 1 + N = 5 tokens, temporal 0.5 I + J / 6 over 1 + T' = 3:
    every patch gets 1/10 of its frame's [CLS], every frame 1/6 of the clip's [CLS]: 1/60."""
    model = with_uniform_attention(tiny("factorised_encoder", "cls", depth=1, temporal_depth=1))
    heat = explain(model, clips(), "rollout").heat
    torch.testing.assert_close(heat, torch.full_like(heat, 1 / 60), rtol=0, atol=1e-6)


# --- (b) the factorised models' token maps ---------------------------------------------------------------

def frame_of(token: int) -> int:
    return token // PATCHES


def position_of(token: int) -> int:
    return token % PATCHES


def test_model3_steps_keep_to_the_frame_then_to_the_position() -> None:
    model, x = tiny("factorised_self_attention", depth=1), clips()
    with torch.no_grad(), recording(model) as maps:
        model(x)
    spatial, temporal = maps  # [B T', heads, N, N], [B N, heads, T', T']
    steps = factorised_steps(spatial, temporal, batch=2)
    assert steps.shape == (2, 2, 1, TOKENS * PATCHES, TOKENS * PATCHES)
    block = block_mixing(spatial, temporal, batch=2)
    size = TOKENS * PATCHES
    for b in range(2):
        space, time = steps[b, 0, 0], steps[b, 1, 0]
        for i in range(size):
            token = torch.zeros(size)
            token[i] = 1.0
            t, n = frame_of(i), position_of(i)
            reached = token @ space  # where token i's output draws from after the spatial step
            assert all(reached[j] == 0 for j in range(size) if frame_of(j) != t)
            torch.testing.assert_close(reached[t * PATCHES : (t + 1) * PATCHES],
                                       spatial[b * TOKENS + t, :, n].mean(dim=0))
            reached = token @ time
            assert all(reached[j] == 0 for j in range(size) if position_of(j) != n)
            torch.testing.assert_close(reached[n::PATCHES], temporal[b * PATCHES + n, :, t].mean(dim=0))
        # The block: time after space, each with its residual; token (t, n) reaches (u, m) through (u, n) only.
        eye = torch.eye(size)
        torch.testing.assert_close(block[b], (0.5 * eye + 0.5 * time) @ (0.5 * eye + 0.5 * space))
        for i in range(size):
            for j in range(size):
                through = frame_of(j) * PATCHES + position_of(i)  # token (u, n): frame of j, position of i
                direct = 0.25 * (i == j) + 0.25 * space[i, j] + 0.25 * time[i, j]
                expected = direct + 0.25 * time[i, through] * space[through, j]
                torch.testing.assert_close(block[b, i, j], expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(block[b].sum(dim=1), torch.ones(size))


def test_model4_records_one_token_map_per_head_without_changing_the_output() -> None:
    model, x = tiny("factorised_dot_product", heads=4), clips()
    with torch.no_grad():
        fused = model(x)
        with recording(model) as maps:
            explicit = model(x)
    torch.testing.assert_close(explicit, fused, rtol=0, atol=1e-5)
    size = TOKENS * PATCHES
    for weights in maps:
        assert weights.shape == (2, 4, size, size)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 4, size))
        tokens = torch.arange(size)
        same_frame = frame_of(tokens)[:, None] == frame_of(tokens)[None, :]
        same_position = position_of(tokens)[:, None] == position_of(tokens)[None, :]
        assert (weights[:, :2][:, :, ~same_frame] == 0).all()  # heads 0-1 attend within the frame
        assert (weights[:, 2:][:, :, ~same_position] == 0).all()  # heads 2-3 across frames at one position


# --- (c) shapes and sums for every variant ---------------------------------------------------------------

@pytest.mark.parametrize("variant, pool", VARIANTS)
def test_rollout_heat_shape_and_mass(variant, pool) -> None:
    """Rollout rows of row-stochastic matrices sum to 1 over all tokens, prefix included. Mean-pool models have
    no prefix and read the mean of those rows, so their map sums to exactly 1 (Model 2: each frame's spatial
    map sums to 1 and the frame weights sum to 1). [CLS] models keep some relevance on [CLS] itself, so the
    map sums to less than 1: for Model 1 exactly 1 minus the [CLS] column of the rollout's [CLS] row."""
    model, x = tiny(variant, pool), clips()
    heat = explain(model, x, "rollout").heat
    assert heat.shape == (2, 1, TOKENS, *GRID) and (heat >= 0).all()
    mass = heat.sum(dim=(1, 2, 3, 4))
    if pool == "mean":
        torch.testing.assert_close(mass, torch.ones(2), rtol=0, atol=1e-5)
    elif variant == "spatiotemporal":
        own = rollout(attention_maps(model, x)[1])[:, 0, 0]
        torch.testing.assert_close(mass, 1 - own, rtol=0, atol=1e-5)
    else:
        assert ((0 < mass) & (mass < 1)).all()


@pytest.mark.parametrize("variant, pool", VARIANTS)
def test_attention_heat_has_a_map_per_head_and_each_query_row_sums_to_one(variant, pool) -> None:
    """Mean-pool maps are the mean of softmax rows over the patches, so each sums to 1 (Model 2: per frame;
    Model 3: one map per head for the spatial step, then per head for the temporal step). A [CLS] row over
    the patches misses only the weight [CLS] gives itself."""
    model = tiny(variant, pool)
    result = explain(model, clips(), "attention", layer=0)
    maps = 4 if variant == "factorised_self_attention" else 2
    assert result.heat.shape == (2, maps, TOKENS, *GRID) and len(result.captions) == maps
    per_frame = variant == "factorised_encoder"
    mass = result.heat.sum(dim=(3, 4)) if per_frame else result.heat.sum(dim=(2, 3, 4))
    if pool == "mean":
        torch.testing.assert_close(mass, torch.ones_like(mass), rtol=0, atol=1e-5)
    else:
        assert ((0 < mass) & (mass < 1)).all()
    one = explain(model, clips(), "attention", layer=-1, head=1)
    assert one.heat.shape == (2, maps // 2, TOKENS, *GRID) and all("head 1" in c for c in one.captions)


@pytest.mark.parametrize("variant, pool", VARIANTS)
def test_grad_rollout_is_class_specific(variant, pool) -> None:
    model, x = tiny(variant, pool), clips(batch=1)
    first, second = (explain(model, x, "grad-rollout", target=c) for c in (0, 1))
    assert first.heat.shape == (1, 1, TOKENS, *GRID) and (first.heat >= 0).all()
    assert first.target.tolist() == [0] and second.target.tolist() == [1]
    assert not torch.allclose(first.heat, second.heat)


def test_layer_out_of_range_is_a_clear_error() -> None:
    from vitkit.errors import VitkitError

    with pytest.raises(VitkitError, match="--layer 2 is out of range: the model has 2 blocks"):
        explain(tiny("factorised_self_attention"), clips(), "attention", layer=2)
    with pytest.raises(VitkitError, match="the model has 2 spatial layers"):
        explain(tiny("factorised_encoder"), clips(), "attention", layer=-3)


def test_token_shares_sum_to_one_per_token_mass() -> None:
    heat = np.zeros((2, 3, 2, 2))
    heat[0, 0] = 1.0  # map 0: all relevance on token 0
    heat[1] = 1.0  # map 1: uniform over the tokens
    np.testing.assert_allclose(token_shares(heat), [(1 + 1 / 3) / 2, 1 / 6, 1 / 6])


# --- (d) the CLI on a generated video --------------------------------------------------------------------

def write_video(path, frames: int = 8, size: int = 32) -> None:
    """A bright square sliding right over dark noise (as tests/test_video_training.py's moving square)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(frames):
            image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
            image[10:18, 2 + 2 * i : 10 + 2 * i] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


PREPROCESS = {"task": "video", "image_size": 32, "short_side": 36, "num_frames": FRAMES, "sampling": "uniform",
              "stride": 2, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain_video")
    write_video(root / "square.avi")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "still.png")
    torch.manual_seed(0)
    encoder = tiny("factorised_encoder", "cls", image_size=32, depth=1, temporal_depth=1, num_classes=2)
    save_model(root / "m2", encoder, class_names=["left", "right"], preprocess=PREPROCESS)
    save_model(root / "m3", tiny("factorised_self_attention", image_size=32, depth=1, num_classes=2),
               class_names=["left", "right"])  # no preprocess: the clip comes from the model config
    return root


def test_load_clip_cuts_the_clip_vitkit_eval_would(files) -> None:
    prep = default_preprocess(tiny("factorised_encoder", image_size=32).config, {"preprocess": PREPROCESS})
    frames, clip = load_clip(files / "square.avi", prep)
    video = decode_video(files / "square.avi", 36, 96)
    expected = ClipSampler(FRAMES, "uniform", 2, 32, (0.5,) * 3, (0.5,) * 3).clip(video, False, random.Random(0))
    assert torch.equal(clip[0], expected)
    assert frames.shape == (FRAMES, 32, 32, 3) and frames.dtype == np.uint8
    torch.testing.assert_close(torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1, expected,
                               rtol=0, atol=1 / 127.5)


@pytest.mark.parametrize("folder, args, stem, maps", [
    ("m2", ["--method", "rollout"], "square.rollout", 1),
    ("m3", ["--method", "attention"], "square.attention-layer0", 4),  # block 0: 2 spatial + 2 temporal heads
])
def test_cli_writes_a_gif_of_every_frame_and_a_timeline(files, tmp_path, folder, args, stem, maps) -> None:
    result = run_cli("explain", str(files / folder), str(files / "square.avi"), *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "predicted left" in result.stdout or "predicted right" in result.stdout
    with Image.open(tmp_path / f"{stem}.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == FRAMES
        # 32 px frames are drawn 7x (224 px panels), one per map, up to 7 columns.
        assert gif.size == figure_size((224, 224), maps, 7) == (224 * maps, 30 + 224 + 20)
    with Image.open(tmp_path / f"{stem}.timeline.png") as png:
        assert png.format == "PNG" and png.mode == "RGB"
        assert png.size == timeline_size(TOKENS, maps) == (128 * TOKENS, 30 + maps * (20 + 128) + 120)
        assert np.asarray(png).std() > 10, "the figure is not blank"
    assert str(tmp_path / f"{stem}.gif") in result.stdout and f"{FRAMES} frames" in result.stdout


@pytest.mark.parametrize("video, args, message", [
    ("still.png", [], "is not a usable video"),  # an image given to a video model: too short for a clip
    ("square.avi", ["--method", "attention", "--layer", "5"], "--layer 5 is out of range"),
])
def test_cli_errors_are_one_line(files, tmp_path, video, args, message) -> None:
    result = run_cli("explain", str(files / "m2"), str(files / video), *args, "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "error:" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
