"""Training end to end on small generated folders: train -> eval -> predict, exact resume, bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli, shared_data
from vitkit.errors import VitkitError
from vitkit.store import read_weights
from vitkit.train.config import TrainConfig
from vitkit.train.loop import Trainer, train
from vitkit.train.metrics import classification_report
from vitkit.train.run_folder import resume_config

TINY = {"image_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "heads": 2}


def make_folder(root: Path, per_class: int = 12, classes: tuple[str, ...] = ("circle", "square"), size: int = 40,
                seed: int = 0, modes: bool = True) -> Path:
    """A two-class image folder: reddish discs vs bluish squares on noise; with ``modes`` some files are
    grayscale PNG or CMYK JPEG (the loader must turn them all into RGB)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                array = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                yy, xx = np.mgrid[:size, :size]
                c = size // 2 + rng.integers(-4, 5, 2)
                mask = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 < 100) if label == 0 else (
                    (abs(yy - c[0]) < 9) & (abs(xx - c[1]) < 9))
                array[mask] = (230, 60, 60) if label == 0 else (60, 60, 230)
                image = Image.fromarray(array)
                if not modes:
                    pass
                elif i % 4 == 1:
                    image = image.convert("L")
                elif i % 4 == 2:
                    image = image.convert("CMYK")
                image.save(folder / f"{name}_{i}.{'jpg' if i % 4 == 2 else 'png'}")
    return root


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    base = dict(data=str(data), model="vit_ti16", model_args=TINY, out=str(out), epochs=3, batch_size=8, lr=3e-3,
                warmup_epochs=0.5, precision="fp32", augment="trivial", workers=1)
    return TrainConfig(**(base | changes))


def test_train_eval_predict_end_to_end(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes")
    result = run_cli("train", "--data", str(data), "--model", "vit_ti16", "--model-arg", "image_size=32",
                     "--model-arg", "patch_size=8", "--model-arg", "dim=32", "--model-arg", "depth=2",
                     "--model-arg", "heads=2", "--epochs", "2", "--batch-size", "8", "--out", str(tmp_path / "run"),
                     "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "last.safetensors", "checkpoints/latest", "metrics.jsonl",
                 "plots/curves.png", "plots/confusion_matrix.png", "summary.json"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["class_names"] == ["circle", "square"]
    assert config["train"]["cache"] == "ram", "--cache auto's choice is saved, so a resumed run keeps it"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert list((run / "tensorboard").glob("events.*")), "TensorBoard events are written"

    evaluated = run_cli("eval", str(run), "--data", str(data / "val"))
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == 12 and sum(map(sum, metrics["confusion_matrix"])) == 12

    predicted = run_cli("predict", str(run), str(data / "val" / "circle"), "--top-k", "2", "--format", "json")
    assert predicted.returncode == 0, predicted.stderr
    rows = json.loads(predicted.stdout)
    assert len(rows) == 6
    assert all(abs(sum(p["probability"] for p in row["predictions"]) - 1) < 1e-4 for row in rows)
    csv_out = run_cli("predict", str(run), str(data / "val"), "--format", "csv").stdout.splitlines()
    assert csv_out[0] == "file,rank,class,probability" and len(csv_out) == 13

    int8 = run_cli("predict", str(run), str(data / "val" / "circle"), "--top-k", "2", "--format", "json", "--int8")
    assert int8.returncode == 0, int8.stderr
    for fp32_row, int8_row in zip(rows, json.loads(int8.stdout)):
        fp32_p = {p["class"]: p["probability"] for p in fp32_row["predictions"]}
        int8_p = {p["class"]: p["probability"] for p in int8_row["predictions"]}
        assert abs(fp32_p["circle"] - int8_p["circle"]) < 0.05, (fp32_row, int8_row)

    merged = run_cli("eval", str(run), "--data", str(data / "val"), "--merge", "2", "--out", str(tmp_path / "m"))
    assert merged.returncode == 0, merged.stderr
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["samples"] == 12
    refused = run_cli("eval", str(run), "--data", str(data / "val"), "--merge", "-1")
    assert refused.returncode == 2 and "one non-negative count per block" in refused.stderr


def test_training_learns_a_separable_task(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes", per_class=24, modes=False)
    summary = train(tiny_config(data, tmp_path / "run", epochs=8, augment="none", crop="center", flip=True))
    assert summary["best_val_accuracy"] >= 0.9, summary


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes")
    train(tiny_config(data, tmp_path / "straight", mixup=0.2, cutmix=1.0, ema=0.9, model_args=TINY | {"drop_path": 0.1}))
    first = Trainer(tiny_config(data, tmp_path / "stopped", mixup=0.2, cutmix=1.0, ema=0.9,
                                model_args=TINY | {"drop_path": 0.1}))
    assert first.fit(stop_after_steps=4)["interrupted"]  # 3 steps per epoch: stops inside epoch 2
    train(resume_config(tmp_path / "stopped"), resume=True)
    straight, resumed = read_weights(tmp_path / "straight" / "last.safetensors"), read_weights(
        tmp_path / "stopped" / "last.safetensors")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    lines = (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_bad_images_are_skipped_and_reported(tmp_path) -> None:
    bad = shared_data("bad_images")
    data = make_folder(tmp_path / "shapes")
    for file in bad.glob("*.jpg"):
        shutil.copy(file, data / "train" / "circle" / file.name)
    result = run_cli("train", "--data", str(data), "--model", "vit_ti16", "--model-arg", "image_size=32",
                     "--model-arg", "patch_size=8", "--model-arg", "dim=32", "--model-arg", "depth=1",
                     "--model-arg", "heads=2", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "skipped 3 unreadable file(s)" in result.stderr
    for name, reason in [("zero_bytes.jpg", "empty file"), ("html_error_page_named.jpg", "not an image"),
                         ("truncated_half_of_cat.1.jpg", "truncated")]:
        assert any(name in line and reason in line for line in result.stderr.splitlines()), name
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_files"] == 3


@pytest.mark.parametrize("layout, message", [
    ("empty", "contains no image files"),
    ("empty_class", "has no images"),
    ("single", "a single class"),
    ("mismatch", "train and val classes differ"),
    ("missing", "does not exist"),
])
def test_unusable_folders_give_one_clear_line(tmp_path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout != "missing":
        make_folder(root)
    if layout == "empty":
        for f in root.rglob("*.*"):
            f.unlink()
    elif layout == "empty_class":
        (root / "train" / "triangle").mkdir()
    elif layout == "single":
        shutil.rmtree(root / "train" / "square")
        shutil.rmtree(root / "val")
    elif layout == "mismatch":
        shutil.move(root / "val" / "square", root / "val" / "rectangle")
    result = run_cli("train", "--data", str(root), "--epochs", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_refuses_a_dataset_with_other_classes(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes")
    train(tiny_config(data, tmp_path / "run", epochs=1))
    other = make_folder(tmp_path / "other", classes=("cat", "dog"))
    result = run_cli("eval", str(tmp_path / "run"), "--data", str(other / "val"))
    assert result.returncode == 2 and "trained on ['circle', 'square']" in result.stderr


def test_val_fraction_split_is_stratified_and_seeded(tmp_path) -> None:
    from vitkit.data.folders import find_dataset

    root = make_folder(tmp_path / "d", per_class=20)
    flat = tmp_path / "flat"
    shutil.copytree(root / "train", flat)
    a, b = find_dataset(flat, 0.25, seed=3), find_dataset(flat, 0.25, seed=3)
    assert a.val.paths == b.val.paths
    assert a.val.labels.count(0) == a.val.labels.count(1) == 5
    assert set(a.val.paths).isdisjoint(a.train.paths)
    assert find_dataset(flat, 0.25, seed=4).val.paths != a.val.paths


def test_metrics_agree_with_hand_computed_values() -> None:
    # 3 classes; predictions (argmax) vs targets:
    #   t=0: p=0, p=0, p=1   t=1: p=1, p=2   t=2: p=2
    logits = torch.tensor([[5., 0, 0], [4, 1, 0], [0, 3, 1], [0, 2, 1], [0, 1, 2], [0, 0, 9]])
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    r = classification_report(logits, targets, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert r["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert "top5_accuracy" not in r


def test_top5_with_five_or_more_classes() -> None:
    logits = torch.tensor([[6., 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6]])
    r = classification_report(logits, torch.tensor([4, 0]), list("abcdef"))
    assert r["top5_accuracy"] == 0.5 and r["accuracy"] == 0.0


def test_a_run_folder_is_not_overwritten(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes")
    train(tiny_config(data, tmp_path / "run", epochs=1))
    with pytest.raises(VitkitError, match="already holds a run"):
        Trainer(tiny_config(data, tmp_path / "run", epochs=1))


def test_ema_decay_ramps_up_and_tracks_batchnorm_statistics() -> None:
    from torch.optim.swa_utils import AveragedModel

    from vitkit.train.ema import ema_with_warmup

    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(0.9), use_buffers=True)
    expected = None
    for n, value in enumerate([1.0, 5.0, -3.0, 2.0, 7.0, 0.5] * 4):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(2 * value)
        ema.update_parameters(model)
        # By hand: the first update copies; update n (n >= 1) moves by 1 - min(0.9, (1 + n) / (10 + n)).
        expected = value if expected is None else expected + (1 - min(0.9, (1 + n) / (10 + n))) * (value - expected)
        assert float(ema.module[0].weight) == pytest.approx(expected, rel=1e-6)
        assert float(ema.module[1].running_mean) == pytest.approx(2 * expected, rel=1e-6)


def test_the_embedded_default_trains_from_the_command_line(tmp_path) -> None:
    """`make demo` runs `vitkit train` with no --data: the embedded MNIST-5k and its recipe (two epochs here)."""
    result = run_cli("train", "--epochs", "2", "--warmup-epochs", "0.5", "--out", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "on mnist-5k: 4000 train / 1000 val images, 10 classes" in result.stderr
    config = json.loads((tmp_path / "demo" / "config.json").read_text())
    assert config["train"]["model"] == "vit_mnist" and config["train"]["data"] == "mnist-5k"
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["best_val_accuracy"] > 0.2, "chance is 0.1; two epochs of the demo recipe give ~0.33"


def test_a_run_records_the_precision_auto_chose(tmp_path) -> None:
    from vitkit.fast import resolve_precision

    data = make_folder(tmp_path / "shapes")
    trainer = Trainer(tiny_config(data, tmp_path / "run", epochs=1, precision="auto"))
    assert trainer.config.precision == resolve_precision("auto", "cpu") != "auto"
    assert trainer.model_json["train"]["precision"] == trainer.config.precision
