"""A checkpoint's resize interpolation travels with its weights (issue 19), as its crop does
(``test_checkpoint_crop.py``): timm's ``pretrained_cfg['interpolation']`` and a transformers processor's
``resample`` become the ``--init`` run's, ``vitkit convert``'s and ``vitkit.open``'s; eval and predict then fit
the shorter side with it (checked against Pillow's own filters), the run's start line says where it came from,
and ``--interpolation`` overrides it. No peers needed: the timm file is vitkit's own ``--to timm`` export with a
hand-written timm ``config.json`` beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from conftest import run_cli
from test_train_normalisation import HALF, config, half_run  # noqa: F401 (half_run: fixture)
from vitkit.cli import build_parser
from vitkit.commands.train import build_train_config
from vitkit.data.pipeline import Preprocess
from vitkit.errors import VitkitError
from vitkit.inference.transforms import ImageTransform
from vitkit.interop.normalisation import checkpoint_normalisation
from vitkit.store import read_config
from vitkit.train.loop import Trainer

SIZE = 32  # the half_run model's image size; crop 0.8 gives a shorter side of 40


@pytest.fixture(scope="module")
def bilinear_file(half_run, tmp_path_factory) -> Path:  # noqa: F811 (the fixture imported above)
    """half_run's weights as a timm file whose pretrained_cfg says bilinear (as Google's original ViTs' do)."""
    folder = tmp_path_factory.mktemp("timm")
    result = run_cli("convert", str(half_run / "run"), "--to", "timm", str(folder / "model.safetensors"))
    assert result.returncode == 0, result.stderr
    cfg = {"num_classes": 2, "pretrained_cfg": {"input_size": [3, SIZE, SIZE], "crop_pct": 0.8,
                                                 "interpolation": "bilinear", "mean": HALF, "std": HALF}}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder / "model.safetensors"


def pillow_fit(image: Image.Image, side: int, resample: int) -> np.ndarray:
    """The shorter side resized to ``side`` by Pillow's own filter: [h, w, 3] as int."""
    scale = side / min(image.size)
    size = (round(image.size[0] * scale), round(image.size[1] * scale))
    return np.asarray(image.resize(size, resample)).astype(int)


def closest_filter(fitted: torch.Tensor, image: Image.Image, side: int) -> str:
    """Which of Pillow's bilinear and bicubic filters ``fitted`` (uint8 [3, h, w]) is; it must be within 2 levels."""
    ours = fitted.permute(1, 2, 0).numpy().astype(int)
    errors = {name: np.abs(ours - pillow_fit(image, side, number)) for name, number in
              (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC))}
    best = min(errors, key=lambda name: errors[name].mean())
    assert errors[best].max() <= 2, {name: int(error.max()) for name, error in errors.items()}
    return best


def noise_image(width: int = 30, height: int = 24) -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_init_from_a_bilinear_checkpoint_evaluates_bilinear_and_says_so(half_run, bilinear_file, tmp_path) -> None:  # noqa: F811
    trainer = Trainer(config(half_run / "data", tmp_path / "run", init=str(bilinear_file)))
    origin = f"timm's pretrained_cfg in {bilinear_file.parent / 'config.json'}"
    assert trainer.config.interpolation == "bilinear" == trainer.model_json["preprocess"]["interpolation"]
    assert trainer.model_json["train"]["interpolation"] == "bilinear"
    assert trainer.normalisation.endswith(f"; resize bilinear from the checkpoint ({origin})")
    val = trainer.task.val_set
    first = Image.open(val.paths[0]).convert("RGB")
    assert closest_filter(val.images[0], first, 40) == "bilinear"


def test_interpolation_given_wins_and_without_init_it_is_bicubic(half_run, bilinear_file, tmp_path) -> None:  # noqa: F811
    given = Trainer(config(half_run / "data", tmp_path / "given", init=str(bilinear_file), interpolation="bicubic"))
    assert given.model_json["preprocess"]["interpolation"] == "bicubic" and "resize" not in given.normalisation
    scratch = Trainer(config(half_run / "data", tmp_path / "scratch"))
    assert scratch.model_json["preprocess"]["interpolation"] == "bicubic"
    first = Image.open(scratch.task.val_set.paths[0]).convert("RGB")
    assert closest_filter(scratch.task.val_set.images[0], first, 37) == "bicubic"
    assert build_train_config(build_parser().parse_args(["train", "--interpolation", "bilinear"])).interpolation \
        == "bilinear"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--interpolation", "lanczos"])


def test_convert_and_open_keep_the_interpolation_and_predict_resizes_with_it(bilinear_file, tmp_path) -> None:
    result = run_cli("convert", str(bilinear_file), "--to", "vitkit", str(tmp_path / "converted"))
    assert result.returncode == 0, result.stderr
    assert read_config(tmp_path / "converted")["preprocess"]["interpolation"] == "bilinear"
    image = noise_image()
    for source in (bilinear_file, tmp_path / "converted"):
        prep = vitkit.open(source, device="cpu").preprocess
        assert (prep.interpolation, prep.short_side) == ("bilinear", 40)
        assert closest_filter(ImageTransform(prep).pixels(image), image, 40) == "bilinear"
    bicubic = Preprocess(SIZE, 40, (0.5,) * 3, (0.5,) * 3)
    assert closest_filter(ImageTransform(bicubic).pixels(image), image, 40) == "bicubic"
    result = run_cli("convert", str(bilinear_file), "--to", "hf", str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())["resample"] == 2
    assert checkpoint_normalisation(str(tmp_path / "hf")).interpolation == "bilinear"


def test_transformers_resample_is_read_and_an_unsupported_filter_is_named(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    processor = tmp_path / "preprocessor_config.json"
    base = {"image_mean": HALF, "image_std": HALF}
    for resample, expected in ((2, "bilinear"), (3, "bicubic"), (None, None)):
        processor.write_text(json.dumps(base | ({"resample": resample} if resample is not None else {})))
        assert checkpoint_normalisation(str(tmp_path)).interpolation == expected
    processor.write_text(json.dumps(base | {"resample": 1}))
    with pytest.raises(VitkitError) as error:
        checkpoint_normalisation(str(tmp_path))
    message = str(error.value)
    assert "preprocessor_config.json: interpolation 'lanczos' is not one vitkit resizes with" in message
    assert "--interpolation" in message and "\n" not in message


def test_a_folder_saved_before_interpolation_was_recorded_resizes_bicubic() -> None:
    prep = Preprocess.from_dict({"image_size": 32, "short_side": 37, "mean": HALF, "std": HALF})
    assert prep.interpolation == "bicubic" and prep.to_dict()["interpolation"] == "bicubic"
    with pytest.raises(VitkitError, match="interpolation must be one of bicubic, bilinear, got 'nearest'"):
        Preprocess.from_dict({"image_size": 32, "short_side": 37, "mean": HALF, "std": HALF,
                              "interpolation": "nearest"})
