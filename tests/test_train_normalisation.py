"""``--init`` keeps the normalisation the checkpoint's weights expect (issue 17): a vitkit run or model folder's
``preprocess``, timm's ``pretrained_cfg``, transformers' ``preprocessor_config.json``; ``--mean`` / ``--std``
override it, and with neither the run uses ImageNet's. The run saves what it used (config.json), so eval and
predict use the same. The timm and transformers cases need the peers environment (checkpoints made offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from vitkit.cli import build_parser
from vitkit.commands.train import build_train_config
from vitkit.errors import VitkitError
from vitkit.store import read_config
from vitkit.train.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
from vitkit.train.loop import Trainer, train

TINY = {"image_size": 32, "patch_size": 8, "dim": 32, "depth": 1, "heads": 2}
HALF = [0.5, 0.5, 0.5]


def image_folder(root: Path) -> Path:
    """Two classes of random 32 px images, 8 train and 4 val each."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def config(data: Path, out: Path, **changes) -> TrainConfig:
    base = dict(data=str(data), model="vit_ti16", model_args=TINY, out=str(out), epochs=1, batch_size=8,
                precision="fp32", workers=0, augment="none")
    return TrainConfig(**(base | changes))


def normalisation_of(trainer: Trainer) -> tuple[list[float], list[float]]:
    """The mean and std the run saves for eval / predict (config.json's ``preprocess``), checked against ``train``."""
    prep, saved = trainer.model_json["preprocess"], trainer.model_json["train"]
    assert (list(saved["mean"]), list(saved["std"])) == (list(prep["mean"]), list(prep["std"]))
    return [round(v, 6) for v in prep["mean"]], [round(v, 6) for v in prep["std"]]


@pytest.fixture(scope="module")
def half_run(tmp_path_factory) -> Path:
    """A one-epoch run trained with mean = std = 0.5, the normalisation of Google's augreg ViTs."""
    root = tmp_path_factory.mktemp("half")
    train(config(image_folder(root / "data"), root / "run", mean=(0.5,) * 3, std=(0.5,) * 3))
    return root


def test_a_run_given_as_init_passes_its_normalisation_on(half_run, tmp_path) -> None:
    out = tmp_path / "finetune"
    result = run_cli("train", "--data", str(half_run / "data"), "--init", str(half_run / "run"), "--epochs", "1",
                     "--img-size", "32", "--batch-size", "8", "--precision", "fp32", "--workers", "0",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"normalisation mean=std=0.5 from the checkpoint (the vitkit config {half_run / 'run'}" in result.stderr
    saved = read_config(out)
    assert saved["preprocess"]["mean"] == HALF and saved["preprocess"]["std"] == HALF
    assert saved["train"]["mean"] == HALF and saved["train"]["std"] == HALF


def test_the_mean_and_std_flags_override_the_checkpoint(half_run, tmp_path) -> None:
    args = build_parser().parse_args(["train", "--data", str(half_run / "data"), "--init", str(half_run / "run"),
                                      "--mean", "0.25", "0.5", "0.75", "--img-size", "32", "--batch-size", "8",
                                      "--workers", "0", "--out", str(tmp_path / "r")])
    trainer = Trainer(build_train_config(args))
    assert normalisation_of(trainer) == ([0.25, 0.5, 0.75], HALF)  # std still the checkpoint's
    assert trainer.normalisation.startswith("normalisation mean=0.25,0.5,0.75 given, std=0.5 from the checkpoint")
    both = build_parser().parse_args(["train", "--init", str(half_run / "run"), "--mean", "0.1", "0.2", "0.3",
                                      "--std", "0.4", "0.5", "0.6"])
    assert (build_train_config(both).mean, build_train_config(both).std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))


def test_without_init_or_flags_the_run_uses_imagenet(half_run, tmp_path) -> None:
    trainer = Trainer(config(half_run / "data", tmp_path / "scratch"))
    assert normalisation_of(trainer) == (list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert trainer.normalisation == "normalisation mean=0.485,0.456,0.406 std=0.229,0.224,0.225 ImageNet's, the default"


def test_a_model_folder_without_preprocessing_falls_back_to_imagenet(half_run, tmp_path) -> None:
    meta = read_config(half_run / "run")
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({k: v for k, v in meta.items() if k not in ("preprocess", "train")}))
    (folder / "model.safetensors").write_bytes((half_run / "run" / "model.safetensors").read_bytes())
    trainer = Trainer(config(half_run / "data", tmp_path / "r", init=str(folder)))
    assert normalisation_of(trainer) == (list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert trainer.normalisation.endswith(f"ImageNet's, the default ({folder} records none)")


def test_init_replaces_the_embedded_recipes_normalisation(half_run) -> None:
    """mnist-5k's recipe (0.5) is for training from scratch; with --init the checkpoint decides."""
    scratch = build_train_config(build_parser().parse_args(["train"]))
    assert scratch.mean == (0.5,) * 3
    finetune = build_train_config(build_parser().parse_args(["train", "--init", str(half_run / "run")]))
    assert finetune.mean is None and finetune.std is None


def test_timm_and_transformers_files_are_read_and_bad_values_named(tmp_path) -> None:
    from vitkit.interop.normalisation import checkpoint_normalisation

    timm_folder, hf_folder = tmp_path / "timm", tmp_path / "hf"
    timm_folder.mkdir()
    hf_folder.mkdir()
    (timm_folder / "model.safetensors").write_bytes(b"")  # only the files beside the weights are read
    (timm_folder / "config.json").write_text(json.dumps({"architecture": "vit_base_patch16_224",
                                                         "pretrained_cfg": {"mean": HALF, "std": [0.25] * 3}}))
    (hf_folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (hf_folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.7]}))
    found = checkpoint_normalisation(str(timm_folder / "model.safetensors"))
    assert (found.mean, found.std) == ((0.5,) * 3, (0.25,) * 3) and "timm's pretrained_cfg" in found.origin
    found = checkpoint_normalisation(str(hf_folder))
    assert (found.mean, found.std) == ((0.1, 0.2, 0.3), (0.7,) * 3)
    (timm_folder / "config.json").write_text(json.dumps({"pretrained_cfg": {"mean": [0.5, 0.5], "std": HALF}}))
    with pytest.raises(VitkitError, match=r"config.json: mean \[0.5, 0.5\] is not 3 finite numbers.*--mean R G B"):
        checkpoint_normalisation(str(timm_folder))


@pytest.mark.peers
def test_a_timm_checkpoint_keeps_its_pretrained_cfg_normalisation(half_run, tmp_path) -> None:
    timm = pytest.importorskip("timm")
    # Random weights, with the pretrained_cfg of the augreg tag (mean = std = 0.5), saved the way timm's Hub has it.
    model = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=False, img_size=32, depth=1,
                              num_classes=3)
    assert tuple(model.pretrained_cfg["mean"]) != IMAGENET_MEAN
    timm.models.save_for_hf(model, tmp_path / "timm", safe_serialization=True)
    trainer = Trainer(config(half_run / "data", tmp_path / "run", init=str(tmp_path / "timm"), model_args={},
                             img_size=32))
    assert normalisation_of(trainer) == (HALF, HALF)
    assert "from the checkpoint (timm's pretrained_cfg in" in trainer.normalisation


@pytest.mark.peers
def test_a_transformers_folder_keeps_its_image_processor_normalisation(half_run, tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                       intermediate_size=128, image_size=32, patch_size=8, num_labels=3)
    transformers.ViTForImageClassification(hf_config).save_pretrained(tmp_path / "hf")
    processor = transformers.ViTImageProcessor(image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6])
    processor.save_pretrained(tmp_path / "hf")
    trainer = Trainer(config(half_run / "data", tmp_path / "run", init=str(tmp_path / "hf"), model_args={},
                             img_size=32))
    assert normalisation_of(trainer) == ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    assert "from the checkpoint (transformers'" in trainer.normalisation


def test_convert_to_a_vitkit_folder_keeps_the_normalisation(half_run, tmp_path) -> None:
    """`vitkit convert SOURCE --to vitkit DIR` then `--init DIR`: the folder must still say what the weights expect."""
    result = run_cli("convert", str(half_run / "run"), "--to", "vitkit", str(tmp_path / "converted"))
    assert result.returncode == 0, result.stderr
    prep = read_config(tmp_path / "converted")["preprocess"]
    assert (prep["mean"], prep["std"], prep["image_size"]) == (HALF, HALF, 32)
    trainer = Trainer(config(half_run / "data", tmp_path / "run", init=str(tmp_path / "converted")))
    assert normalisation_of(trainer) == (HALF, HALF)
