"""vitkit.load on vitkit's own checkpoints, position-embedding resampling, and one-line errors for bad files.

Parity with timm / transformers / torchvision / JAX is in the ``test_interop_peers_*`` files.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
import zipfile

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import save_file

import vitkit
from vitkit.errors import VitkitError
from vitkit.interop.resample import resample_pos_embed
from vitkit.store import save_model

TINY = dict(image_size=32, patch_size=8, dim=32, depth=1, heads=2, num_classes=3)


class NotAWeight:
    """A custom class: pickling it records a reference to this module, which loading would import and run."""


def tiny_model(**overrides) -> vitkit.VisionTransformer:
    return vitkit.VisionTransformer(vitkit.ViTConfig(**{**TINY, **overrides})).eval()


def test_a_constant_embedding_stays_constant_and_cls_is_kept() -> None:
    # Interpolating a constant field gives the same constant at every new position (any kernel summing to 1).
    cls = torch.randn(1, 1, 4)
    patches = torch.full((1, 9, 4), 0.5)
    out = resample_pos_embed(torch.cat([cls, patches], dim=1), (5, 7), (3, 3), num_prefix_tokens=1)
    assert out.shape == (1, 1 + 35, 4)
    assert torch.equal(out[:, :1], cls), "the [CLS] position must be carried over unchanged"
    torch.testing.assert_close(out[:, 1:], torch.full((1, 35, 4), 0.5), rtol=0, atol=1e-6)


def test_resampling_without_prefix_tokens_keeps_the_row_order() -> None:
    # A ramp along the width axis must stay a ramp along the width axis (not get transposed).
    ramp = torch.arange(4.0).repeat(4).reshape(1, 16, 1)
    out = resample_pos_embed(ramp, (4, 8), num_prefix_tokens=0).reshape(4, 8)
    assert (out[:, 1:] >= out[:, :-1] - 1e-6).all() and torch.allclose(out[0], out[3]), out


def test_same_grid_is_the_identity() -> None:
    pos = torch.randn(1, 17, 8)
    assert resample_pos_embed(pos, (4, 4)) is pos


def test_vitkit_folder_loads_with_class_names(tmp_path) -> None:
    model = tiny_model()
    save_model(tmp_path, model, class_names=["a", "b", "c"])
    loaded = vitkit.load(tmp_path)
    assert isinstance(loaded, vitkit.VisionTransformer) and not loaded.training
    assert loaded.config.extra["source"]["class_names"] == ["a", "b", "c"]
    assert loaded.config.extra["source"]["format"] == "vitkit"


def test_new_classes_replace_the_head_with_a_one_line_message(tmp_path, caplog) -> None:
    save_model(tmp_path, tiny_model())
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        model = vitkit.load(tmp_path, num_classes=5, image_size=48)
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 5)
    messages = [r.getMessage() for r in caplog.records]
    assert any("new 5-class head" in m and "3" in m for m in messages), messages
    assert any("4x4 to 6x6" in m for m in messages), messages
    assert all("\n" not in m for m in messages)


def test_a_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(VitkitError, match="does not exist"):
        vitkit.load(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".npz"])
def test_truncated_checkpoints_give_a_one_line_error(tmp_path, suffix) -> None:
    state = {k: v.contiguous() for k, v in tiny_model().state_dict().items()}
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    elif suffix == ".pth":
        torch.save(state, path)
    else:
        np.savez(path, **{k: v.numpy() for k, v in state.items()})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VitkitError, match="truncated") as error:
        vitkit.load(path)
    assert "\n" not in str(error.value)


def test_a_pickle_with_a_custom_class_is_refused(tmp_path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"model": tiny_model().state_dict(), "extra": NotAWeight()}, path)
    with pytest.raises(VitkitError, match=r"needs the Python class .*NotAWeight") as error:
        vitkit.load(path)
    assert "\n" not in str(error.value) and "state_dict" in str(error.value)


def test_a_whole_pickled_module_is_refused(tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_model(), path)
    with pytest.raises(VitkitError, match="refuses"):
        vitkit.load(path)


def test_an_npz_with_python_objects_is_refused(tmp_path) -> None:
    path = tmp_path / "model.npz"
    np.savez(path, payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(VitkitError, match="pickled Python objects"):
        vitkit.load(path)


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path) -> None:
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                              torch.nn.Linear(8, 2))
    path = tmp_path / "resnet.safetensors"
    save_file(cnn.state_dict(), path)
    with pytest.raises(VitkitError, match="not a ViT checkpoint vitkit knows") as error:
        vitkit.load(path)
    assert "\n" not in str(error.value) and "0.weight" in str(error.value)


def test_a_vit_with_extra_parts_is_refused_not_half_loaded(tmp_path) -> None:
    # timm names, plus a pre-logits layer (old in21k checkpoints): loading it silently without it would be wrong.
    state = {k.replace("cls_token.token", "cls_token").replace("pos_embed.weight", "pos_embed"): v
             for k, v in tiny_model().state_dict().items()}
    state["pre_logits.fc.weight"] = torch.zeros(32, 32)
    path = tmp_path / "deit.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    with pytest.raises(VitkitError, match="unexpected keys pre_logits.fc.weight"):
        vitkit.load(path)


def test_a_zip_that_is_not_a_checkpoint_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(VitkitError, match="not a readable PyTorch checkpoint"):
        vitkit.load(path)


def test_hub_names_without_huggingface_hub_or_network_say_how_to_pass_a_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(VitkitError, match="pass the file's path") as error:
        vitkit.load("timm:vit_tiny_patch16_224.augreg_in21k")
    assert "\n" not in str(error.value)


def test_convert_to_timm_and_back_keeps_the_model(tmp_path) -> None:
    model = tiny_model(qkv_bias=False, pool="mean")
    save_model(tmp_path / "run", model)
    result = run_cli("convert", str(tmp_path / "run"), "--to", "timm", str(tmp_path / "timm.safetensors"))
    assert result.returncode == 0, result.stderr
    back = vitkit.load(tmp_path / "timm.safetensors")
    assert back.config.heads == 2 and back.config.pool == "mean" and not back.config.qkv_bias
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(images), model(images), rtol=0, atol=0)


def test_convert_refuses_what_the_target_cannot_express(tmp_path) -> None:
    save_model(tmp_path / "run", tiny_model(norm="post", pos_embed="learned_patches"))
    result = run_cli("convert", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "hf"))
    assert result.returncode == 2
    assert "cannot express post-norm blocks" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_export_pt2_with_dynamic_batch_runs_any_batch(tmp_path) -> None:
    model = tiny_model()
    save_model(tmp_path / "run", model)
    result = run_cli("export", str(tmp_path / "run"), "--format", "pt2", "--dynamic-batch")
    assert result.returncode == 0, result.stderr
    assert "max abs diff" in result.stdout and "1, 7" in result.stdout
    program = torch.export.load(str(tmp_path / "run" / "model.pt2")).module()
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(program(images), model(images), rtol=0, atol=1e-5)


def test_pickle_module_is_never_used_unsafely(tmp_path) -> None:
    # A raw pickle (not torch's zip format) with a custom class must be refused too.
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps({"w": NotAWeight()}))
    with pytest.raises(VitkitError):
        vitkit.load(path)


def test_onnx_export_without_onnx_installed_says_what_to_install(tmp_path) -> None:
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        pytest.skip("onnx is installed here; tests/test_interop_peers_onnx.py covers the export")
    save_model(tmp_path / "run", tiny_model())
    result = run_cli("export", str(tmp_path / "run"), "--format", "onnx")
    assert result.returncode == 2 and "pip install onnx" in result.stderr, result.stderr
