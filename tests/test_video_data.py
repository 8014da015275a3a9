"""Video decoding, frame sampling, consistent spatial transforms, the decoded-clip cache, multi-view evaluation,
and skipping bad videos. References: frame numbers written into synthetic videos, and UCF101's manifest."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

from conftest import shared_data
from vitkit.data.video import (
    BadVideo, ClipSampler, DecodedCache, clip_starts, decode_video, random_box, spatial_boxes, strided_indices,
    uniform_indices,
)
from vitkit.data.video_folder import VideoFolder, find_videos

av = pytest.importorskip("av")

CODECS = {".avi": "mpeg4", ".mp4": "mpeg4", ".mkv": "mpeg4", ".webm": "libvpx"}


def write_numbered_video(path: Path, frames: int, width: int = 96, height: int = 48) -> None:
    """Frame i is black with a white vertical band at columns 3i..3i+2: decoding it back gives the frame number
    (a position survives lossy compression far better than a grey level)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODECS[path.suffix], rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 4_000_000
        for i in range(frames):
            image = torch.zeros((height, width, 3), dtype=torch.uint8)
            image[:, 3 * i : 3 * i + 3] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image.numpy(), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_numbers(video: torch.Tensor) -> list[int]:
    """The band position of each decoded frame, in units of the original 3-pixel columns."""
    columns = video.float().mean(dim=(1, 2))  # [T, W]
    scale = 96 / video.shape[-1]
    x = torch.arange(video.shape[-1], dtype=torch.float32) + 0.5
    centre = (columns * x).sum(1) / columns.sum(1) * scale
    return [round((float(c) - 1.5) / 3) for c in centre]


@pytest.mark.parametrize("suffix", list(CODECS))
def test_every_container_decodes_all_frames_in_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    write_numbered_video(path, 20)
    video = decode_video(path)
    assert video.dtype == torch.uint8 and video.shape == (20, 3, 48, 96)
    assert frame_numbers(video) == list(range(20))


def test_decoding_resizes_the_shorter_side_and_subsamples_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_numbered_video(path, 30)
    video = decode_video(path, short_side=24, max_frames=10)
    assert video.shape == (10, 3, 24, 48)
    assert frame_numbers(video) == [int((i + 0.5) * 3) for i in range(10)]


def test_uniform_sampling_takes_one_frame_per_segment() -> None:
    assert uniform_indices(40, 4, train=False) == [5, 15, 25, 35]
    rng = random.Random(0)
    for _ in range(50):
        picks = uniform_indices(40, 4, train=True, rng=rng)
        assert all(10 * i <= p < 10 * (i + 1) for i, p in enumerate(picks)), picks


def test_strided_sampling_and_random_offsets_stay_inside_the_video() -> None:
    assert strided_indices(30, 4, 3, start=5) == [5, 8, 11, 14]
    sampler = ClipSampler(num_frames=4, sampling="strided", stride=3)
    rng = random.Random(1)
    starts = {sampler.indices(30, train=True, rng=rng)[0] for _ in range(200)}
    assert min(starts) == 0 and max(starts) == 30 - 10, "random offsets must reach both ends"
    assert sampler.indices(30, train=False, rng=rng) == [10, 13, 16, 19]  # central


def test_too_short_videos_are_refused() -> None:
    with pytest.raises(BadVideo, match="too short: 9 frames, a clip needs 10"):
        strided_indices(9, 4, 3, start=0)
    with pytest.raises(BadVideo, match="too short: 3 frames, a clip needs 4"):
        uniform_indices(3, 4, train=False)


def test_spatial_transform_is_the_same_on_every_frame() -> None:
    # A video whose frames are identical must give a clip whose frames are identical, whatever the crop and flip.
    frame = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8)
    video = frame[None].expand(12, -1, -1, -1).contiguous()
    sampler = ClipSampler(num_frames=6, size=32)
    rng = random.Random(3)
    for _ in range(10):
        clip = sampler.clip(video, train=True, rng=rng)
        assert clip.shape == (3, 6, 32, 32)
        assert torch.equal(clip, clip[:, :1].expand_as(clip))


@pytest.mark.parametrize("policy", ["randaugment", "trivial"])
def test_augment_policy_draws_once_per_clip_and_applies_it_to_every_frame(policy: str) -> None:
    # Frames A, A, B, B: each frame of the clip must be what the same draws give on a video of only A (or only B),
    # so every frame gets the same operations at the same strengths, and no frame's content leaks into another.
    a, b = (torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8) for _ in range(2))
    sampler = ClipSampler(num_frames=4, size=24, policy=policy, randaugment=(2, 20))
    changed = 0
    for seed in range(12):
        mixed = sampler.clip(torch.stack([a, a, b, b]), True, random.Random(seed))
        only_a = sampler.clip(torch.stack([a] * 4), True, random.Random(seed))
        only_b = sampler.clip(torch.stack([b] * 4), True, random.Random(seed))
        torch.testing.assert_close(mixed[:, :2], only_a[:, :2], rtol=0, atol=1e-6)
        torch.testing.assert_close(mixed[:, 2:], only_b[:, 2:], rtol=0, atol=1e-6)
        torch.testing.assert_close(only_a, only_a[:, :1].expand_as(only_a), rtol=0, atol=1e-6)  # one draw per clip
        plain = ClipSampler(num_frames=4, size=24).clip(torch.stack([a] * 4), True, random.Random(seed))
        changed += not torch.allclose(only_a, plain, atol=1e-3)
    assert changed >= 8  # the policy really acts (identity and a few near-identity draws aside)


def test_no_policy_leaves_the_clip_as_crop_resize_flip_and_normalise() -> None:
    # Written out here: with policy "none" the training clip is the crop of the drawn box, resized, normalised.
    video = torch.randint(0, 256, (8, 3, 30, 50), dtype=torch.uint8)
    sampler = ClipSampler(num_frames=8, size=16, mean=(0.5,) * 3, std=(0.25,) * 3, flip=False)
    clip = sampler.clip(video, True, random.Random(5))
    rng = random.Random(5)
    frames = video[uniform_indices(8, 8, True, rng)]
    top, left, h, w = random_box(frames.shape[-2:], sampler.scale, rng)
    x = torch.nn.functional.interpolate(frames[:, :, top:top + h, left:left + w].float() / 255, size=(16, 16),
                                        mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(clip, ((x - 0.5) / 0.25).transpose(0, 1))


def test_evaluation_clip_is_the_centre_crop_normalised() -> None:
    video = torch.zeros(8, 3, 40, 60, dtype=torch.uint8)
    video[..., 10:50] = 255  # the central 40 x 40 square is white, the borders black
    clip = ClipSampler(num_frames=4, size=20, mean=(0.5,) * 3, std=(0.5,) * 3).clip(video, train=False)
    torch.testing.assert_close(clip, torch.ones(3, 4, 20, 20))


def test_multi_view_covers_start_middle_end_and_three_crops() -> None:
    assert clip_starts(100, 10, 3) == [0, 45, 90]
    assert spatial_boxes((48, 64), 3) == [(0, 0, 48, 48), (0, 8, 48, 48), (0, 16, 48, 48)]
    video = torch.arange(40).view(40, 1, 1, 1).expand(40, 3, 48, 64).to(torch.uint8)
    views = ClipSampler(num_frames=4, sampling="strided", stride=2, size=16, mean=(0,) * 3, std=(1 / 255,) * 3,
                        ).views(video, clips=2, crops=3)
    assert views.shape == (6, 3, 4, 16, 16)
    firsts = [round(float(v[0, 0].mean())) for v in views]
    assert firsts == [0, 0, 0, 33, 33, 33]  # clip 1 starts at frame 0, clip 2 at 40 - 7 = 33


def test_multi_view_logits_are_the_log_of_the_mean_of_the_view_softmaxes() -> None:
    from vitkit.train.evaluate import predict_clip_logits

    videos = torch.randn(2, 6, 3, 2, 4, 4)  # 2 videos of 2 clips x 3 crops
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(96, 5))
    data = type("Views", (), {"class_names": list("abcde"), "__len__": lambda self: 2,
                              "views": lambda self, index, clips, crops: videos[index]})()
    expected = torch.stack([torch.stack([model(v[None]).softmax(-1)[0] for v in video]).mean(0) for video in videos])
    logits = predict_clip_logits(model, data, views=(2, 3), desc=None)
    torch.testing.assert_close(logits.softmax(-1), expected)
    torch.testing.assert_close(logits.exp(), expected)


def test_cache_decodes_each_file_once_and_evicts_beyond_its_budget(tmp_path: Path) -> None:
    for name in "abc":
        write_numbered_video(tmp_path / f"{name}.avi", 10)
    one = 10 * 3 * 48 * 96
    cache = DecodedCache(max_bytes=2 * one)
    for name in "abab":
        cache.get(tmp_path / f"{name}.avi", None)
    assert (cache.misses, cache.hits, cache.bytes) == (2, 2, 2 * one)
    cache.get(tmp_path / "c.avi", None)  # evicts a (least recently used)
    cache.get(tmp_path / "b.avi", None)
    cache.get(tmp_path / "a.avi", None)
    assert (cache.misses, cache.hits) == (4, 3)


def _bad_video_folder(tmp_path: Path) -> Path:
    for split in ("train", "val"):
        for cls in ("left", "right"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            write_numbered_video(folder / "good.avi", 12)
    bad = tmp_path / "train" / "left"
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "page.webm").write_text("<html>404 Not Found</html>")
    write_numbered_video(bad / "short.mkv", 3)
    data = (bad / "good.avi").read_bytes()
    (bad / "truncated.avi").write_bytes(data[: len(data) // 3])
    (bad / "notes.txt").write_text("not a video")
    return tmp_path


def test_unreadable_empty_and_short_videos_are_skipped_and_reported(tmp_path: Path) -> None:
    names, splits = find_videos(_bad_video_folder(tmp_path))
    assert names == ["left", "right"]
    sampler = ClipSampler(num_frames=4, size=16)
    train = VideoFolder(*splits["train"], names, sampler, train=True, short_side=16)
    reasons = {path.name: reason for path, reason in train.skipped}
    assert set(reasons) >= {"empty.mp4", "page.webm", "short.mkv"}, reasons
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["short.mkv"] == "too short: 3 frames, a clip needs 4"
    assert reasons["page.webm"].startswith("not a video FFmpeg can read")
    assert "notes.txt" not in {p.name for p in train.paths} | set(reasons)
    kept = {p.name for p in train.paths}
    assert {"good.avi"} <= kept and not kept & set(reasons)
    clip, label = train.clip_at(0, True, random.Random(0)), train.labels[0]
    assert clip.shape == (3, 4, 16, 16) and label in (0, 1)
    assert "skipped" in train.skipped_report() and "empty.mp4" in train.skipped_report()


def test_ucf101_mini_clips_decode_to_the_manifest_frame_counts() -> None:
    root = shared_data("ucf101_mini")
    with open(root / "manifest.csv") as f:
        rows = sorted((r for r in csv.DictReader(f) if r["split"] == "val"), key=lambda r: int(r["frames"]))[:2]
    for row in rows:  # the two shortest validation clips keep this test quick
        video = decode_video(root / row["path"], short_side=60)
        assert video.shape == (int(row["frames"]), 3, 60, 80), (row["path"], tuple(video.shape))
