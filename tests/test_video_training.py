"""Training ViViT on video folders: train -> eval -> predict through the CLI, exact resume, initialisation
from an image ViT by inflation, and clear errors for task / model mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from vitkit.errors import VitkitError
from vitkit.models import create_model
from vitkit.models.inflate import inflate_kernel
from vitkit.store import read_weights, save_model
from vitkit.train.config import TrainConfig
from vitkit.train.loop import Trainer, train
from vitkit.train.run_folder import resume_config

av = pytest.importorskip("av")

# A tiny Model 2 (factorised encoder) on 4 frames of 32 px: 2x8x8 tubelets, 2 frame tokens of 16 patches.
TINY_VIDEO = {"image_size": 32, "num_frames": 4, "tubelet_size": [2, 8, 8], "dim": 32, "depth": 1,
              "temporal_depth": 1, "heads": 2}


def write_moving_square(path: Path, direction: int, frames: int = 8, size: int = 32, seed: int = 0) -> None:
    """A bright square sliding left (direction -1) or right (+1) over noise: only motion tells the classes apart."""
    rng = np.random.default_rng(seed)
    top = int(rng.integers(4, size - 12))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(frames):
            image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
            left = 2 + 2 * i if direction > 0 else size - 10 - 2 * i
            image[top : top + 8, left : left + 8] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_video_folder(root: Path, per_class: int = 6) -> Path:
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for direction, name in ((-1, "left"), (1, "right")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                write_moving_square(folder / f"{name}_{i}.avi", direction, seed=i + (100 if split == "val" else 0))
    return root


def video_config(data: Path, out: Path, **changes) -> TrainConfig:
    base = dict(task="video", data=str(data), model="vivit_m2_ti", model_args=TINY_VIDEO, out=str(out), epochs=2,
                batch_size=4, lr=1e-3, warmup_epochs=0.5, precision="fp32", flip=False)
    return TrainConfig(**(base | changes))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return make_video_folder(tmp_path_factory.mktemp("videos") / "motion")


def test_video_train_eval_predict_end_to_end(videos, tmp_path) -> None:
    run = tmp_path / "run"
    args = ["train", "--task", "video", "--data", str(videos), "--model", "vivit_m2_ti", "--epochs", "2",
            "--batch-size", "4", "--precision", "fp32", "--no-flip", "--out", str(run)]
    for key, value in TINY_VIDEO.items():
        args += ["--model-arg", f"{key}={json.dumps(value)}"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "12 train / 6 val videos" in result.stderr and "4 frames x 32 px" in result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["architecture"] == "VideoVisionTransformer" and config["class_names"] == ["left", "right"]
    assert config["preprocess"]["task"] == "video" and config["preprocess"]["num_frames"] == 4
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2

    evaluated = run_cli("eval", str(run), "--data", str(videos), "--views", "2x2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "on 6 videos (2x2 views each)" in evaluated.stdout
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == 6 and sum(map(sum, metrics["confusion_matrix"])) == 6

    predicted = run_cli("predict", str(run), str(videos / "val" / "left"), "--top-k", "2", "--format", "json")
    assert predicted.returncode == 0, predicted.stderr
    rows = json.loads(predicted.stdout)
    assert [Path(r["file"]).name for r in rows] == ["left_0.avi", "left_1.avi", "left_2.avi"]
    for row in rows:
        probabilities = [p["probability"] for p in row["predictions"]]
        assert {p["class"] for p in row["predictions"]} == {"left", "right"}
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)


def test_video_resume_gives_the_weights_of_an_uninterrupted_run(videos, tmp_path) -> None:
    train(video_config(videos, tmp_path / "straight", epochs=2))
    first = Trainer(video_config(videos, tmp_path / "stopped", epochs=2))
    assert first.fit(stop_after_steps=4)["interrupted"]  # 3 steps per epoch: stops inside epoch 2
    Trainer(resume_config(tmp_path / "stopped"), resume=True).fit()
    straight = read_weights(tmp_path / "straight" / "last.safetensors")
    resumed = read_weights(tmp_path / "stopped" / "last.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_video_training_batches_are_a_function_of_their_position(videos, tmp_path) -> None:
    trainer = Trainer(video_config(videos, tmp_path / "run", flip=True, crop_scale=(0.5, 1.0)))
    clips, targets = trainer.task.batch([0, 5, 7, 2], (0, 1, 2))
    again, _ = trainer.task.batch([0, 5, 7, 2], (0, 1, 2))
    other, _ = trainer.task.batch([0, 5, 7, 2], (0, 1, 3))
    shard, _ = trainer.task.batch([0, 5, 7, 2], (0, 1, 2), range(2, 4))
    assert clips.shape == (4, 3, 4, 32, 32) and targets.shape == (4, 2)
    assert torch.equal(clips, again) and not torch.equal(clips, other)
    assert torch.equal(shard, clips[2:4]), "a process's shard is the matching rows of the whole batch"
    assert targets[:, 1].tolist() == [float(trainer.task.train_set.labels[i]) for i in (0, 5, 7, 2)]


def test_video_init_from_a_video_model_of_another_clip_size_resamples_its_positions(videos, tmp_path) -> None:
    """A pretrained video model (8 frames x 48 px) fine-tuned on 4 x 32 clips: its tables are resampled, the
    rest of its weights kept, and the head sized for the data."""
    pretrained = create_model("vivit_m2_ti", **{**TINY_VIDEO, "num_frames": 8, "image_size": 48, "num_classes": 5})
    save_model(tmp_path / "video", pretrained)
    video = Trainer(video_config(videos, tmp_path / "run", init=str(tmp_path / "video"))).model
    assert (video.config.num_frames, video.config.image_size, video.head.out_features) == (4, (32, 32), 2)
    assert torch.equal(video.pos_embed.weight, pretrained.pos_embed.table((1, 4, 4)))
    assert torch.equal(video.temporal_pos_embed.weight, pretrained.temporal_pos_embed.table((2, 1, 1)))
    assert torch.equal(video.spatial_blocks[0].mlp.fc1.weight, pretrained.spatial_blocks[0].mlp.fc1.weight)


def test_video_init_from_an_image_vit_inflates_it(videos, tmp_path) -> None:
    image = create_model("vit_ti16", image_size=32, patch_size=8, dim=32, depth=1, heads=2, num_classes=5)
    save_model(tmp_path / "image", image)
    model_args = {**TINY_VIDEO, "variant": "spatiotemporal"}
    trainer = Trainer(video_config(videos, tmp_path / "run", model="vivit_m1_ti", model_args=model_args,
                                   init=str(tmp_path / "image")))
    video = trainer.model
    expected = inflate_kernel(image.patch_embed.proj.weight, 2, "central_frame")
    assert torch.equal(video.patch_embed.proj.weight, expected)
    assert torch.equal(video.patch_embed.proj.weight[:, :, 0], torch.zeros_like(expected[:, :, 0]))
    for name, tensor in image.blocks.state_dict().items():
        assert torch.equal(video.blocks.state_dict()[name], tensor), name
    assert video.head.out_features == 2, "the head is sized for the video classes"


@pytest.mark.parametrize("changes, message", [
    ({"model": "vit_ti16", "model_args": {}}, "--task video needs a video model"),
    ({"task": "image"}, "is a video model: add --task video"),
])
def test_video_task_mismatches_are_one_clear_error(videos, tmp_path, changes, message) -> None:
    with pytest.raises(VitkitError, match=message):
        Trainer(video_config(videos, tmp_path / "run", **changes))


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_video_mixup_and_cutmix_mix_each_clip_with_its_partner(videos, tmp_path, mixup, cutmix) -> None:
    task = Trainer(video_config(videos, tmp_path / "run", mixup=mixup, cutmix=cutmix)).task
    indices, where = [0, 5, 7, 11], (0, 1, 3)
    mixed, targets = task.batch(indices, where)
    clips, labels = task.clips(indices, where, [0, 1, 2, 3])
    partner = [3, 2, 1, 0]
    own_share = targets[range(4), labels.argmax(1)]
    assert labels[0].argmax() != labels[3].argmax() and bool((own_share < 1).all()), "the targets are mixed"
    if cutmix == 0:
        lam = float(own_share[0])
        assert torch.allclose(mixed, lam * clips + (1 - lam) * clips[partner], atol=1e-4)
    else:  # one box, the same in every frame and channel, holds the partner's pixels; the rest is the clip's own
        from_partner = (mixed == clips[partner]) & (mixed != clips)
        box = from_partner[0, 0, 0]
        assert box.any() and torch.equal(from_partner.any(dim=(0, 1, 2)), box)
        assert torch.equal(mixed[..., ~box], clips[..., ~box])
        lam = 1 - float(box.float().mean())
    assert torch.allclose(targets, lam * labels + (1 - lam) * labels[partner])
    top, _ = task.batch(indices, where, range(0, 2))  # a process that builds half the batch gets its rows
    assert torch.equal(top, mixed[:2])


def test_moving_digits_trains_through_the_same_loop(tmp_path) -> None:
    config = TrainConfig(task="video", data="moving-digits", model="vivit_digits",
                         model_args={"depth": 1, "dim": 32, "heads": 2}, out=str(tmp_path / "run"), epochs=1,
                         batch_size=64, precision="fp32", flip=False, augment="none")
    trainer = Trainer(config)
    assert trainer.task.sizes == (4000, 1000) and trainer.class_names == ["right", "left", "down", "up"]
    assert trainer.fit(stop_after_steps=3)["interrupted"]


def test_video_eval_refuses_other_classes_before_decoding_a_video(videos, tmp_path, monkeypatch) -> None:
    import vitkit.data.video_folder as video_folder
    from vitkit.data.video_preprocess import VideoPreprocess, video_preprocess
    from vitkit.data.video import ClipSampler
    from vitkit.errors import VitkitError

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded videos before checking the classes")

    monkeypatch.setattr(video_folder.VideoFolder, "__init__", no_decoding)
    prep = VideoPreprocess.from_dict(video_preprocess(ClipSampler(4, size=32), 36))
    with pytest.raises(VitkitError, match=r"has classes \['left', 'right'\] but the model was trained on \['up'"):
        prep.eval_set(str(videos), ["up", "down"])
