"""vitkit's model folder: save, load, and clear errors on damaged files."""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.errors import VitkitError
from vitkit.store import load_model, save_model


def test_saved_model_reloads_with_identical_outputs(tmp_path) -> None:
    model = vitkit.create_model("vit_ti16", depth=2, num_classes=3).eval()
    save_model(tmp_path / "run", model, class_names=["a", "b", "c"])
    loaded, meta = load_model(tmp_path / "run")
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)
    assert meta["class_names"] == ["a", "b", "c"]
    assert not list((tmp_path / "run").glob("*.tmp")), "temporary files must not be left behind"


def test_truncated_weights_give_a_one_line_error(tmp_path) -> None:
    save_model(tmp_path, vitkit.create_model("vit_ti16", depth=1))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(VitkitError, match="not a readable safetensors file"):
        load_model(tmp_path)


def test_a_folder_without_config_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(VitkitError, match="config.json is missing"):
        load_model(tmp_path)
