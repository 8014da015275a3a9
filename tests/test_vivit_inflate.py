"""Inflating an image ViT into a ViViT (paper Sec. 3.4). The image model is the independent reference.

Properties tested, for weights inflated from an image ViT with random (non-zero) parameters:

- Embedding: with ``central_frame``, tubelet k of any clip is embedded exactly as the image model embeds frame
  ``k t + t // 2`` (the central frame of the tubelet); with ``filter_average``, as it embeds the tubelet's mean
  frame.
- Model 1 (without [CLS]): for a clip made of one image repeated, every frame's output tokens equal the image
  model's tokens (attention over T' identical copies of each key averages the same values as over one copy, and
  the position embedding is repeated over time). With a [CLS] token this is not exact: the single [CLS] key is
  outnumbered T'-fold by the repeated patch keys, so its attention weight shrinks.
- Model 2: the spatial encoder's output for frame-token k equals the image model's pooled features for the
  central frame of tubelet k, for any clip; the temporal encoder is the only part that differs.
- Model 3: temporal attention starts at zero, so every frame's tokens equal the image model's tokens of the
  central frame of that tubelet, for any clip.
"""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.errors import VitkitError
from vitkit.models.inflate import inflate_from_image

IMAGE = dict(image_size=32, patch_size=8, dim=32, depth=2, heads=4, num_classes=5)
VIDEO = dict(image_size=32, num_frames=8, tubelet_size=(2, 8, 8), dim=32, depth=2, heads=4, num_classes=5)


def _image_model(**overrides) -> vitkit.VisionTransformer:
    model = vitkit.VisionTransformer(vitkit.ViTConfig(**IMAGE | overrides)).eval()
    with torch.no_grad():  # ViT starts [CLS] at ~0 and biases at 0; random values make the test able to fail
        for tensor in model.parameters():
            tensor.add_(torch.randn_like(tensor) * 0.1)
    return model


def _inflated(image: vitkit.VisionTransformer, mode: str, **overrides) -> vitkit.VideoVisionTransformer:
    video = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**VIDEO | overrides)).eval()
    inflate_from_image(video, image, mode)  # type: ignore[arg-type]
    return video


def _central_frames(clips: torch.Tensor, t: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, T', C, H, W]: the central frame of each tubelet."""
    return clips[:, :, t // 2 :: t].transpose(1, 2)


@pytest.mark.parametrize("t", [1, 2, 3])
def test_central_frame_tubelet_embeds_the_central_frame(t: int) -> None:
    image = _image_model()
    video = _inflated(image, "central_frame", num_frames=4 * t, tubelet_size=(t, 8, 8), pool="mean")
    clips = torch.randn(2, 3, 4 * t, 32, 32)
    with torch.no_grad():
        got = video.patch_embed(clips).reshape(2, 4, 16, 32)
        expected = torch.stack([image.patch_embed(frame) for frame in _central_frames(clips, t).unbind(1)], dim=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_filter_average_tubelet_embeds_the_mean_frame() -> None:
    image = _image_model()
    video = _inflated(image, "filter_average", num_frames=6, tubelet_size=(3, 8, 8), pool="mean")
    clips = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        got = video.patch_embed(clips).reshape(2, 2, 16, 32)
        means = clips.reshape(2, 3, 2, 3, 32, 32).mean(dim=3).transpose(1, 2)  # [B, T', C, H, W]
        expected = torch.stack([image.patch_embed(frame) for frame in means.unbind(1)], dim=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["central_frame", "filter_average"])
@pytest.mark.parametrize("pos_embed", ["learned", "sincos2d"])
def test_model_1_on_a_repeated_image_gives_the_image_tokens_in_every_frame(mode: str, pos_embed: str) -> None:
    image = _image_model(class_token=False, pool="mean", pos_embed=pos_embed)
    video = _inflated(image, mode, pool="mean")
    images = torch.randn(3, 3, 32, 32)
    clips = images[:, :, None].expand(-1, -1, 8, -1, -1)
    with torch.no_grad():
        got = video.forward_features(clips).reshape(3, 4, 16, 32)
        expected = image.norm(image.forward_features(images))[:, None].expand(-1, 4, -1, -1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_model_1_on_a_moving_clip_differs_from_the_image_tokens() -> None:
    """The same comparison on frames that change must fail: the property above is not vacuous."""
    image = _image_model(class_token=False, pool="mean")
    video = _inflated(image, "central_frame", pool="mean")
    clips = torch.randn(3, 3, 8, 32, 32)
    with torch.no_grad():
        got = video.forward_features(clips).reshape(3, 4, 16, 32)[:, 0]
        assert (got - image.norm(image.forward_features(clips[:, :, 1]))).abs().max() > 1e-2


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_model_2_spatial_encoder_is_the_image_model_on_each_central_frame(pool: str) -> None:
    image = _image_model(**({"class_token": False, "pool": "mean"} if pool == "mean" else {}))
    video = _inflated(image, "central_frame", variant="factorised_encoder", pool=pool)
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        got = video.forward_frames(clips)  # [B, T', D]
        frames = _central_frames(clips, 2)
        if pool == "cls":
            expected = torch.stack([image.pool(image.forward_features(f)) for f in frames.unbind(1)], dim=1)
        else:  # the video model normalises tokens, then averages (as the paper's code)
            expected = torch.stack([image.norm(image.forward_features(f)).mean(dim=1) for f in frames.unbind(1)], 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_model_3_starts_as_the_image_model_on_every_central_frame() -> None:
    image = _image_model(class_token=False, pool="mean")  # Model 3 has no [CLS] token
    video = _inflated(image, "central_frame", variant="factorised_self_attention", pool="mean")
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        got = video.forward_features(clips).reshape(2, 4, 16, 32)
        expected = torch.stack([image.norm(image.forward_features(f)) for f in _central_frames(clips, 2).unbind(1)], 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant, pool, fresh_prefixes", [
    ("spatiotemporal", "cls", set()),
    ("factorised_encoder", "cls", {"temporal_cls_token", "temporal_pos_embed", "temporal_blocks", "norm"}),
    ("factorised_self_attention", "mean", {"blocks.0.temporal_norm", "blocks.1.temporal_norm"}),
    ("factorised_dot_product", "mean", set()),
])
def test_inflation_reports_exactly_the_parameters_it_did_not_set(variant: str, pool: str, fresh_prefixes: set) -> None:
    video = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**VIDEO | {"variant": variant, "pool": pool,
                                                                       "num_classes": 9}))
    fresh = inflate_from_image(video, _image_model())
    assert {name.rsplit(".", 1)[0] for name in fresh} - {"head"} == {
        name.rsplit(".", 1)[0] for name, _ in video.named_parameters() if name.startswith(tuple(fresh_prefixes))
    } - {"head"}
    assert {"head.weight", "head.bias"} <= set(fresh), "a head for 9 classes cannot come from a 5-class image head"


def test_incompatible_image_model_is_a_clear_error() -> None:
    video = vitkit.VideoVisionTransformer(vitkit.ViViTConfig(**VIDEO | {"tubelet_size": (2, 16, 16)}))
    with pytest.raises(VitkitError, match=r"the image ViT has patch size \(8, 8\) but the video model \(16, 16\)"):
        inflate_from_image(video, _image_model())
