"""A checkpoint's evaluation crop fraction travels with its weights (issue 19): timm's ``pretrained_cfg``
``crop_pct`` (and a transformers processor's) becomes the ``--init`` run's, ``vitkit convert --to vitkit``'s and
``vitkit.open``'s ``short_side = round(image_size / crop_pct)``, beside the checkpoint's mean and std; the run's
start line says where both came from, and ``--crop-pct`` overrides it. No peers needed: the timm file is
vitkit's own ``--to timm`` export with a hand-written timm ``config.json`` beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vitkit
from conftest import run_cli
from test_train_normalisation import HALF, config, half_run, normalisation_of  # noqa: F401 (half_run: fixture)
from vitkit.cli import build_parser
from vitkit.commands.train import build_train_config
from vitkit.errors import VitkitError
from vitkit.interop.normalisation import checkpoint_normalisation
from vitkit.store import read_config
from vitkit.train.loop import Trainer

SIZE = 32  # the half_run model's image size; round(32 / 0.9) = 36, where the default crop 0.875 gives 37


@pytest.fixture(scope="module")
def timm_file(half_run, tmp_path_factory) -> Path:  # noqa: F811 (the fixture imported above)
    """half_run's weights as a timm file, with timm's Hub config.json: mean = std = 0.5, crop_pct 0.9."""
    folder = tmp_path_factory.mktemp("timm")
    result = run_cli("convert", str(half_run / "run"), "--to", "timm", str(folder / "model.safetensors"))
    assert result.returncode == 0, result.stderr
    cfg = {"num_classes": 2,  # no "architecture": its name would say 3 heads, this model has 2
           "pretrained_cfg": {"input_size": [3, SIZE, SIZE], "crop_pct": 0.9, "crop_mode": "center",
                              "interpolation": "bicubic", "mean": HALF, "std": HALF}}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder / "model.safetensors"


def test_init_from_a_timm_file_takes_its_crop_and_says_so(half_run, timm_file, tmp_path) -> None:  # noqa: F811
    trainer = Trainer(config(half_run / "data", tmp_path / "run", init=str(timm_file)))
    assert trainer.config.crop_pct == pytest.approx(0.9)
    assert trainer.model_json["preprocess"]["short_side"] == 36 and trainer.model_json["train"]["crop_pct"] == 0.9
    assert normalisation_of(trainer) == (HALF, HALF)
    assert trainer.normalisation == (f"normalisation mean=std=0.5 from the checkpoint (timm's pretrained_cfg in "
                                     f"{timm_file.parent / 'config.json'}); eval crop 0.9 from the checkpoint "
                                     f"(timm's pretrained_cfg in {timm_file.parent / 'config.json'}); resize bicubic "
                                     f"from the checkpoint (timm's pretrained_cfg in {timm_file.parent / 'config.json'})")


def test_crop_pct_given_wins_and_without_init_it_is_the_default(half_run, timm_file, tmp_path) -> None:  # noqa: F811
    given = Trainer(config(half_run / "data", tmp_path / "given", init=str(timm_file), crop_pct=0.8))
    assert given.model_json["preprocess"]["short_side"] == 40 and "eval crop" not in given.normalisation
    scratch = Trainer(config(half_run / "data", tmp_path / "scratch"))
    assert scratch.config.crop_pct == 0.875 and scratch.model_json["preprocess"]["short_side"] == 37
    # The embedded recipe's crop (1.0 for digits) is for training from scratch; with --init the checkpoint decides.
    assert build_train_config(build_parser().parse_args(["train"])).crop_pct == 1.0
    assert build_train_config(build_parser().parse_args(["train", "--init", str(timm_file)])).crop_pct is None


def test_convert_to_vitkit_and_open_keep_the_crop(timm_file, tmp_path) -> None:
    result = run_cli("convert", str(timm_file), "--to", "vitkit", str(tmp_path / "converted"))
    assert result.returncode == 0, result.stderr
    assert read_config(tmp_path / "converted")["preprocess"] == {"image_size": SIZE, "short_side": 36,
                                                                 "mean": HALF, "std": HALF,
                                                                 "interpolation": "bicubic"}
    for source in (timm_file, tmp_path / "converted"):
        prep = vitkit.open(source, device="cpu").preprocess
        assert (prep.image_size, prep.short_side, tuple(prep.mean), tuple(prep.std)) == (SIZE, 36, (0.5,) * 3,
                                                                                          (0.5,) * 3)
    found = checkpoint_normalisation(str(tmp_path / "converted"))  # the folder's crop is read back as 32 / 36
    assert found.crop_pct == pytest.approx(SIZE / 36)


def test_transformers_crop_fields_are_read_and_a_bad_crop_is_named(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    processor = tmp_path / "preprocessor_config.json"
    base = {"image_mean": HALF, "image_std": HALF}
    processor.write_text(json.dumps(base | {"crop_pct": 0.95}))
    assert checkpoint_normalisation(str(tmp_path)).crop_pct == pytest.approx(0.95)
    processor.write_text(json.dumps(base | {"do_center_crop": True, "size": {"shortest_edge": 256},
                                            "crop_size": {"height": 224, "width": 224}}))
    assert checkpoint_normalisation(str(tmp_path)).crop_pct == pytest.approx(0.875)
    processor.write_text(json.dumps(base | {"size": {"height": 224, "width": 224}}))  # ViTImageProcessor: no crop
    assert checkpoint_normalisation(str(tmp_path)).crop_pct is None
    processor.write_text(json.dumps(base | {"crop_pct": 1.5}))
    with pytest.raises(VitkitError, match=r"preprocessor_config.json: crop fraction 1.5 is not a number in \(0, 1\]"):
        checkpoint_normalisation(str(tmp_path))
