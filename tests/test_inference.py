"""``vitkit.open``, ``vitkit.pipeline``, ``vitkit.transforms`` and ``--device``: the pipeline answers what
``vitkit predict`` answers (on real photos and real video clips), takes every input form and gives one answer
per image, its transform is the one eval feeds the model, and a device this machine lacks is one clear line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from conftest import run_cli, shared_data
from vitkit.data.pipeline import Preprocess
from vitkit.data.files import FileImages
from vitkit.data.video_preprocess import VideoPreprocess
from vitkit.errors import VitkitError
from vitkit.inference import device as device_module
from vitkit.inference import resolve_device
from vitkit.models import ViViTConfig, VideoVisionTransformer, create_model
from vitkit.store import load_model, save_model
from vitkit.train.stream_tasks import FolderEval

IMAGE_PREPROCESS = {"image_size": 64, "short_side": 73, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
VIDEO_PREPROCESS = {"task": "video", "image_size": 32, "short_side": 36, "num_frames": 8, "sampling": "uniform",
                    "stride": 2, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    """A random-init two-class ViT at 64 px, its head scaled up so the answers are far from ties."""
    torch.manual_seed(0)
    model = create_model("vit_ti16", image_size=64, depth=2, num_classes=2)
    with torch.no_grad():
        model.head.weight.mul_(20)
    return save_model(tmp_path_factory.mktemp("image") / "model", model, class_names=["cat", "dog"],
                      preprocess=IMAGE_PREPROCESS)


@pytest.fixture(scope="module")
def video_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = ViViTConfig(variant="factorised_encoder", image_size=32, num_frames=8, tubelet_size=(2, 8, 8), dim=32,
                         depth=1, temporal_depth=1, heads=2, mlp_dim=32, num_classes=3)
    model = VideoVisionTransformer(config).eval()
    with torch.no_grad():
        model.head.weight.mul_(20)
    return save_model(tmp_path_factory.mktemp("video") / "model", model, class_names=["a", "b", "c"],
                      preprocess=VIDEO_PREPROCESS)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    root = shared_data("cats_vs_dogs") / "val"
    return sorted((root / "cat").glob("*.jpg"))[:3] + sorted((root / "dog").glob("*.jpg"))[:3]


def predicted(run: Path, inputs: list[Path], *options: str) -> list[dict]:
    result = run_cli("predict", str(run), *map(str, inputs), "--format", "json", "--device", "cpu", *options)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_answers(pipeline_rows: list[list[dict]], predict_rows: list[dict]) -> None:
    assert len(pipeline_rows) == len(predict_rows)
    for ours, theirs in zip(pipeline_rows, predict_rows):
        assert [r["label"] for r in ours] == [p["class"] for p in theirs["predictions"]]
        np.testing.assert_allclose([r["score"] for r in ours], [p["probability"] for p in theirs["predictions"]],
                                   rtol=0, atol=1e-6)


def test_pipeline_answers_what_vitkit_predict_answers_on_real_photos(image_model, photos) -> None:
    classifier = vitkit.pipeline(image_model, device="cpu", top_k=2, batch_size=4)
    rows = classifier(photos)
    assert_same_answers(rows, predicted(image_model, photos, "--top-k", "2"))
    assert {row[0]["label"] for row in rows} == {"cat", "dog"}, "a model that always answers one class tests little"
    # One input -> one list. The scores agree to float noise, not bit for bit: the model's matrix products take
    # another path for a batch of 1 than for a batch of 4.
    assert_same_answers([classifier(photos[0])], [{"predictions": [{"class": r["label"], "probability": r["score"]}
                                                                   for r in rows[0]]}])


def test_every_input_form_of_one_image_gets_the_same_answer(image_model, photos, tmp_path) -> None:
    png = tmp_path / "photo.png"  # lossless: a JPEG path is decoded at reduced scale, as predict does
    Image.open(photos[0]).convert("RGB").save(png)
    pil = Image.open(png)
    array = np.array(pil.convert("RGB"))
    forms = [png, str(png), png.read_bytes(), pil, array, torch.from_numpy(array).permute(2, 0, 1),
             torch.from_numpy(array).permute(2, 0, 1).float() / 255]
    probabilities = vitkit.pipeline(image_model, device="cpu").probabilities(forms)
    assert probabilities.shape == (len(forms), 2)
    for row in probabilities[1:]:
        torch.testing.assert_close(row, probabilities[0], rtol=0, atol=1e-6)
    classifier = vitkit.pipeline(image_model, device="cpu", top_k=2)
    assert_same_answers(classifier([array]), predicted(image_model, [png], "--top-k", "2"))
    assert classifier(torch.stack([forms[5], forms[5]])) == classifier([array, pil])  # a batch tensor [B, 3, H, W]


def test_transforms_is_what_eval_feeds_the_model_and_a_hand_written_reference(image_model, photos) -> None:
    transform = vitkit.transforms(image_model)
    prep = Preprocess.from_dict(IMAGE_PREPROCESS)
    fed = FolderEval(FileImages(photos[:2], prep.short_side), [0, 0], prep)(0, 0).inputs  # vitkit eval's batch
    assert torch.equal(transform(photos[:2]), fed)
    assert torch.equal(transform(photos[1]), fed[1])
    # By hand: shorter side to 73 (Pillow's bicubic), the central 64 x 64, (x / 255 - 0.5) / 0.5. vitkit resizes
    # with torch's uint8 bicubic kernel, which rounds a few pixels one level (rarely two) away from Pillow's: at
    # most 2 levels, on under 1% of the values. A PNG copy, so no reduced-scale JPEG decoding is involved.
    image = Image.open(photos[0]).convert("RGB")
    w, h = image.size
    scale = 73 / min(w, h)
    resized = np.asarray(image.resize((round(w * scale), round(h * scale)), Image.BICUBIC), dtype=np.float32)
    top, left = (resized.shape[0] - 64) // 2, (resized.shape[1] - 64) // 2
    expected = (resized[top:top + 64, left:left + 64] / 255 - 0.5) / 0.5
    got = transform(image).permute(1, 2, 0).numpy()
    level = 1 / 255 / 0.5
    np.testing.assert_allclose(got, expected, rtol=0, atol=2 * level + 1e-5)
    assert (np.abs(got - expected) > 1e-5).mean() < 0.01


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    pytest.importorskip("av")
    root = shared_data("ucf101_mini") / "val"
    return [sorted(folder.glob("*.avi"))[0] for folder in sorted(root.iterdir()) if folder.is_dir()][:2]


def test_video_pipeline_answers_what_vitkit_predict_answers_on_real_clips(video_model, clips) -> None:
    classifier = vitkit.pipeline(video_model, device="cpu", top_k=3)
    assert classifier.opened.kind == "video"
    rows = classifier(clips)
    assert_same_answers(rows, predicted(video_model, clips, "--top-k", "3"))
    # The same clip as decoded frames [T, H, W, 3] gets the same answer.
    frames = classifier.transform.frames(clips[0]).permute(0, 2, 3, 1).numpy()
    torch.testing.assert_close(classifier.probabilities([frames]), classifier.probabilities([clips[0]]),
                               rtol=0, atol=1e-6)


def test_video_transforms_are_predicts_views(video_model, clips) -> None:
    prep = VideoPreprocess.from_dict(VIDEO_PREPROCESS)
    views = prep.files([clips[0]], ["a", "b", "c"]).views(0, 2, 3)  # what vitkit predict / eval run
    assert torch.equal(vitkit.transforms(video_model)(clips[0]), views)
    central = prep.files([clips[0]], ["a", "b", "c"]).clip_at(0, False, None)
    assert torch.equal(vitkit.transforms(video_model, views=None)(str(clips[0])), central)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run of ``vitkit train`` (one epoch of a tiny ViT on two classes of flat colours)."""
    from vitkit.train.config import TrainConfig
    from vitkit.train.loop import train

    root = tmp_path_factory.mktemp("trained")
    for split, count in (("train", 8), ("val", 4)):
        for name, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            (root / "data" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40, 36), tuple(c + 3 * i for c in colour)).save(root / "data" / split / name / f"{i}.png")
    config = TrainConfig(data=str(root / "data"), model="vit_ti16", out=str(root / "run"), epochs=1, batch_size=8,
                         precision="fp32", augment="none", workers=0,
                         model_args=dict(image_size=32, patch_size=8, dim=32, depth=1, heads=2))
    train(config)
    return root / "run"


def test_open_a_training_run(trained_run) -> None:
    opened = vitkit.open(trained_run, device="cpu")
    meta = json.loads((trained_run / "config.json").read_text())
    assert opened.kind == "image" and not opened.is_video and opened.device == torch.device("cpu")
    assert opened.class_names == ["blue", "red"] == meta["class_names"]
    assert opened.preprocess == Preprocess.from_dict(meta["preprocess"])
    assert opened.name == "run (vit_ti16)" and not opened.model.training
    reference, _ = load_model(trained_run)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(opened.model(images), reference(images), rtol=0, atol=0)


def test_open_a_video_model_folder(video_model) -> None:
    opened = vitkit.open(str(video_model), device="cpu")
    assert opened.kind == "video" and opened.is_video and opened.class_names == ["a", "b", "c"]
    assert opened.preprocess == VideoPreprocess.from_dict(VIDEO_PREPROCESS)


def test_open_a_registered_name_gives_random_weights_and_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        opened = vitkit.open("vit_ti16", device="cpu")
    assert any("weights are random" in r.getMessage() for r in caplog.records)
    assert opened.kind == "image" and opened.class_names == [str(i) for i in range(1000)]
    assert opened.preprocess == Preprocess(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # 256 = 224 / 0.875
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        assert vitkit.transforms("vit_ti16").prep == opened.preprocess  # the config is enough: nothing loaded
    assert not caplog.records


def test_open_without_saved_preprocessing_uses_the_defaults_for_the_size(tmp_path) -> None:
    save_model(tmp_path / "bare", create_model("vit_ti16", image_size=48, depth=1, num_classes=3))
    opened = vitkit.open(tmp_path / "bare", device="cpu")
    assert opened.preprocess == Preprocess(48, 55, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # round(48 / 0.875) = 55
    assert opened.class_names == ["0", "1", "2"]


def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", int8=True) == torch.device("cpu")  # int8 kernels are CPU ones
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    assert resolve_device("AUTO") == torch.device("cpu") == resolve_device("cpu")


def test_unavailable_devices_are_one_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    for name, fix in [("gpu", "use auto, cpu, cuda"), ("meta", "use auto, cpu, cuda"), ("cuda", "use --device cpu"),
                      ("cuda:1", "use --device cpu"), ("mps", "use --device cpu")]:
        with pytest.raises(VitkitError, match=fix) as error:
            resolve_device(name)
        assert "--device" in str(error.value) and "\n" not in str(error.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(VitkitError, match="has 1 CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(VitkitError, match="--int8 runs on CPU only"):
        resolve_device("cuda", int8=True)


@pytest.mark.parametrize("command", ["eval", "predict", "explain", "bench"])
def test_a_bad_device_on_the_command_line_is_one_line_and_status_2(command, image_model, tmp_path) -> None:
    image = tmp_path / "x.png"
    Image.new("RGB", (70, 80), (10, 200, 30)).save(image)
    argv = {"eval": ["eval", str(image_model), "--data", str(tmp_path)],
            "predict": ["predict", str(image_model), str(image)],
            "explain": ["explain", str(image_model), str(image), "--out", str(tmp_path / "out")],
            "bench": ["bench", "--out", str(tmp_path / "bench")]}[command]
    result = run_cli(*argv, "--device", "tpu0")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--device 'tpu0' is not a device" in result.stderr
    if command == "explain":  # and the same command runs with --device cpu
        ran = run_cli(*argv, "--device", "cpu")
        assert ran.returncode == 0, ran.stderr
        assert (tmp_path / "out" / "x.rollout.png").is_file()
