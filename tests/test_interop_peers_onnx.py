"""``vitkit export --format onnx``: onnxruntime runs the exported model with PyTorch's outputs (peers environment,
where onnx / onnxscript / onnxruntime are installed)."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli

import vitkit
from vitkit.store import save_model

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.peers


def small_run(tmp_path, **overrides) -> torch.nn.Module:
    config = vitkit.ViTConfig(image_size=32, patch_size=8, dim=64, depth=2, heads=4, num_classes=3, **overrides)
    model = vitkit.VisionTransformer(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_model(tmp_path / "run", model)
    return model


def onnx_outputs(path, images: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return torch.from_numpy(session.run(None, {name: images.numpy()})[0])


def test_dynamic_batch_onnx_matches_pytorch_at_batch_1_and_7(tmp_path) -> None:
    model = small_run(tmp_path)
    result = run_cli("export", str(tmp_path / "run"), "--format", "onnx", "--dynamic-batch")
    assert result.returncode == 0, result.stderr
    assert "max abs diff vs PyTorch" in result.stdout and "batch sizes 1, 7" in result.stdout, result.stdout
    for batch in (1, 7):
        images = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            diff = (onnx_outputs(tmp_path / "run" / "model.onnx", images) - model(images)).abs().max().item()
        assert diff <= 1e-4, f"batch {batch}: max |onnxruntime - PyTorch| = {diff:.2e}"


def test_opset_is_honoured_and_mean_pooled_models_export(tmp_path) -> None:
    model = small_run(tmp_path, class_token=False, pool="mean", qkv_bias=False)
    out = tmp_path / "m.onnx"
    result = run_cli("export", str(tmp_path / "run"), "--format", "onnx", "--opset", "18", "--out", str(out))
    assert result.returncode == 0, result.stderr
    opsets = {entry.domain: entry.version for entry in onnx.load(str(out)).opset_import}
    assert opsets[""] == 18, opsets
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (onnx_outputs(out, images) - model(images)).abs().max().item() <= 1e-4
