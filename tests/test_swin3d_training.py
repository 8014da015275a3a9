"""Swin3D training on point clouds: the height input, the default recipe (it must fit one crop quickly) and the
learning-rate schedule of timed runs. The fitting test failed at the old default (lr 2e-3: 42% mIoU after 40
steps, the logits of a 16-wide head grew too slowly); the height test failed when the features had 9 columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vitkit
from vitkit.data.points.cloud import S3DIS_CLASSES, estimate_normals
from vitkit.data.points.indoor_rooms import generate_room
from vitkit.data.points.pipeline import crop, make_batch
from vitkit.models.swin3d import voxelize
from vitkit.train.segmentation3d import Seg3DConfig, Segmentation3DRun, confusion, iou_scores, make_optimizer


def test_features_end_with_the_height_above_the_lowest_voxel_boundary() -> None:
    # Two points in the voxel [0.3, 0.4) of z and one at z = 1.02; voxels of 0.1 m, so the grid starts at 0.3 m.
    xyz = torch.tensor([[0.01, 0.01, 0.33], [0.02, 0.02, 0.37], [0.05, 0.05, 1.02]])
    inputs = voxelize(xyz, torch.zeros(3, 3), voxel_size=0.1)
    heights = sorted(inputs.features[:, 9].tolist())
    assert heights == pytest.approx([0.35 - 0.3, 1.02 - 0.3], abs=1e-6)
    moved = voxelize(xyz + torch.tensor([0.0, 0.0, 0.5]), torch.zeros(3, 3), voxel_size=0.1)  # whole voxels
    assert sorted(moved.features[:, 9].tolist()) == pytest.approx(heights, abs=1e-5)


def test_tiny_model_reads_the_height() -> None:
    model = vitkit.create_model("swin3d_tiny", num_classes=13)
    assert model.config.in_channels == 10
    assert model.stem.conv.weight.shape[1] == 10


def test_default_recipe_fits_one_crop_quickly() -> None:
    """A correct model and optimiser reach ~100% on the crop they train on; 40 steps at the default lr."""
    torch.manual_seed(0)
    room = generate_room(3, density=200.0)
    room.normal = estimate_normals(room.xyz)
    batch = make_batch([crop(room, 2.0, np.random.default_rng(0))], 0.1)
    model = vitkit.create_model("swin3d_tiny", num_classes=13)
    optimizer = make_optimizer(model, Seg3DConfig())
    for step in range(40):
        for group in optimizer.param_groups:
            group["lr"] = Seg3DConfig().lr * min(1.0, (step + 1) / 5)
        loss = torch.nn.functional.cross_entropy(model(batch.inputs), batch.labels)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = iou_scores(confusion(model(batch.inputs), batch.labels, 13), S3DIS_CLASSES)
    assert scores["accuracy"] > 0.95 and scores["miou"] > 0.8, scores["per_class_iou"]


def test_timed_run_ends_its_cosine_at_the_time_limit() -> None:
    run = Segmentation3DRun.__new__(Segmentation3DRun)
    run.config, run.steps_per_epoch = Seg3DConfig(epochs=1000, lr=1.0, warmup_epochs=1, time_limit=2.0), 10
    assert run.lr_at(4) == pytest.approx(0.5)  # warm-up by steps
    assert run.lr_at(10, seconds=60.0) == pytest.approx(0.5)  # half the budget: half-way down the cosine
    assert run.lr_at(11, seconds=120.0) == pytest.approx(0.0, abs=1e-12)
    untimed = Seg3DConfig(epochs=2, lr=1.0, warmup_epochs=1)
    run.config = untimed
    assert run.lr_at(15, seconds=1e9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))


class FakeClock:
    """``time.perf_counter`` of the runner: a training step costs 1 s, the evaluation of a scan 2 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_time_limit_is_the_wall_time_of_the_run_with_its_evaluations(tmp_path, monkeypatch) -> None:
    from vitkit.train import segmentation3d

    clock, real_logits = FakeClock(), segmentation3d.logits_of
    lrs = []

    def timed_logits(model, batch):
        clock.now += 1.0 if model.training else 2.0
        if model.training:
            lrs.append(run.optimizer.param_groups[0]["lr"])
        return real_logits(model, batch)

    monkeypatch.setattr(segmentation3d, "time", clock)
    monkeypatch.setattr(segmentation3d, "logits_of", timed_logits)
    config = Seg3DConfig(model="point_mlp", out=str(tmp_path / "run"), epochs=1000, time_limit=0.5, train_scans=4,
                         val_scans=1, batch_size=2, warmup_epochs=1)
    run = Segmentation3DRun(config)
    summary = run.fit()
    # 2 steps (2 s) per epoch, 2 s per evaluation, 30 s in all: evaluations after epoch 1, then every
    # ceil(2 / (0.1 x 2)) = 10 epochs, and after the last, which ends when another epoch and evaluation would not fit.
    assert clock.now <= 30.0 and 30.0 - clock.now < 2.0 + 2.0, clock.now
    evaluated = [row["epoch"] for row in run.history if "val_miou" in row]
    assert evaluated == [1, 10, run.epoch] and summary["last_val_miou"] == run.history[-1]["val_miou"]
    assert run.history[-1]["train_minutes"] == pytest.approx(clock.now / 60)
    saved = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert saved and set(saved) <= set(evaluated) and saved[-1] == run.epoch  # saved with each evaluation
    assert lrs[-1] < 0.05 * config.lr  # the cosine follows the run's clock (over 1000 epochs it would be at its top)
    done = run.epoch
    assert Segmentation3DRun(config, resume=True).fit()["epochs_done"] == done  # a finished run trains no more
