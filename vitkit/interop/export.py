"""Exporting a model for deployment: ONNX (checked against onnxruntime) and ``torch.export`` programs (``.pt2``).

Every export is verified before it is reported: the exported program runs on random images and its outputs
are compared with the PyTorch model's (fp32; at most 1e-4 apart). With a dynamic batch, the check uses
batch sizes 1 and 7, so a graph that silently specialised to one batch size fails.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import VitkitError

TOLERANCE = 1e-4
EXPORT_BATCH = 2  # traced with 2 images: a batch of 1 would let the exporter specialise the batch axis to 1


def check_batches(dynamic_batch: bool) -> tuple[int, ...]:
    """The batch sizes an export is verified on."""
    return (1, 7) if dynamic_batch else (EXPORT_BATCH,)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, dynamic_batch: bool = False,
                opset: int | None = None) -> float:
    """Write ``model`` as ONNX to ``path``, run it with onnxruntime, and return the max abs difference."""
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise VitkitError(f"ONNX export needs {', '.join(missing)}: pip install onnx onnxscript onnxruntime")
    import onnxruntime

    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = _images(model, EXPORT_BATCH)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter is chatty about internals the user cannot act on
        torch.onnx.export(
            model, (example,), str(path), input_names=["images"], output_names=["output"], dynamo=True,
            opset_version=opset, dynamic_shapes=_dynamic_shapes(dynamic_batch), external_data=False, verbose=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _verify(model, lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0]),
                   check_batches(dynamic_batch), path)


def export_pt2(model: nn.Module, path: str | os.PathLike, *, dynamic_batch: bool = False) -> float:
    """Write ``model`` as a ``torch.export`` program (``.pt2``), reload it, and return the max abs difference."""
    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.export.export(model, (_images(model, EXPORT_BATCH),),
                                      dynamic_shapes=_dynamic_shapes(dynamic_batch))
    torch.export.save(program, str(path))
    reloaded = torch.export.load(str(path)).module()
    return _verify(model, reloaded, check_batches(dynamic_batch), path)


def _dynamic_shapes(dynamic_batch: bool) -> tuple | None:
    return ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None


def _images(model: nn.Module, batch: int) -> torch.Tensor:
    config = model.config
    shape = getattr(config, "input_shape", None) or (config.in_channels, *config.image_size)
    return torch.randn(batch, *shape)


def _verify(model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], batches: tuple[int, ...],
            path: Path) -> float:
    """The largest |exported - PyTorch| over ``batches``; a one-line error if it exceeds :data:`TOLERANCE`."""
    worst = 0.0
    for batch in batches:
        images = _images(model, batch)
        with torch.no_grad():
            expected, got = model(images), run(images)
        if got.shape != expected.shape:
            raise VitkitError(f"{path}: batch {batch} gave shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
        worst = max(worst, (got - expected).abs().max().item())
    if worst > TOLERANCE:
        raise VitkitError(f"{path} disagrees with the PyTorch model (max abs diff {worst:.2e} > {TOLERANCE:g})")
    return worst
