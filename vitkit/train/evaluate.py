"""Evaluating and using a trained model: batched inference, metrics, predictions for files."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn
from tqdm import tqdm

from ..data.images import ImageSet
from ..data.pipeline import Preprocess, eval_batch
from .metrics import classification_report


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU or CUDA, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageSet, prep: Preprocess, batch_size: int = 64, precision: str = "fp32",
                   desc: str | None = "evaluating") -> torch.Tensor:
    """Logits (fp32) for every image of ``data``, center-cropped as ``prep`` says."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    batches = list(_chunks(len(data), batch_size))
    for chunk in tqdm(batches, desc=desc, unit="batch", leave=False, disable=True if desc is None else None, dynamic_ncols=True):
        images = eval_batch([data.images[i] for i in chunk], prep).to(device)
        with autocast(precision, device):
            outputs.append(model(images).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, len(data.class_names))


def evaluate(model: nn.Module, data: ImageSet, prep: Preprocess, batch_size: int = 64,
             precision: str = "fp32") -> dict[str, Any]:
    """Loss, accuracy, top-5, per-class precision / recall / F1 and the confusion matrix on ``data``."""
    logits = predict_logits(model, data, prep, batch_size, precision)
    return _report(logits, torch.tensor(data.labels, dtype=torch.long), data.class_names, data.skipped)


def _report(logits: torch.Tensor, targets: torch.Tensor, class_names: list[str],
            skipped: list[tuple[Any, str]]) -> dict[str, Any]:
    report = classification_report(logits, targets, class_names)
    report["loss"] = float(torch.nn.functional.cross_entropy(logits, targets)) if len(targets) else float("nan")
    report["skipped"] = [{"path": str(p), "reason": r} for p, r in skipped]
    return report


@torch.no_grad()
def predict_clip_logits(model: nn.Module, data: Any, batch_size: int = 8, precision: str = "fp32",
                        views: tuple[int, int] | None = None, desc: str | None = "evaluating") -> torch.Tensor:
    """Logits for every video of ``data`` (a clip set with ``clip_at`` / ``views``): of its central clip, or,
    with ``views=(clips, crops)``, the log of the softmax averaged over that many views (multi-view testing)."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for chunk in tqdm(list(_chunks(len(data), batch_size)), desc=desc, unit="batch", leave=False,
                      disable=True if desc is None else None, dynamic_ncols=True):
        if views is None:
            clips = torch.stack([data.clip_at(i, False, None) for i in chunk]).to(device)
            with autocast(precision, device):
                outputs.append(model(clips).float().cpu())
            continue
        for i in chunk:
            stack = data.views(i, *views).to(device)
            with autocast(precision, device):
                probs = model(stack).float().softmax(dim=-1).mean(dim=0)
            outputs.append(probs.clamp_min(1e-12).log().cpu()[None])
    return torch.cat(outputs) if outputs else torch.empty(0, len(data.class_names))


def evaluate_clips(model: nn.Module, data: Any, batch_size: int = 8, precision: str = "fp32",
                   views: tuple[int, int] | None = None) -> dict[str, Any]:
    """:func:`evaluate` for videos: the same metrics, from the central clip or averaged over ``views``."""
    logits = predict_clip_logits(model, data, batch_size, precision, views)
    return _report(logits, torch.tensor(data.labels, dtype=torch.long), data.class_names, data.skipped)


def top_k(logits: torch.Tensor, class_names: list[str], k: int) -> list[list[tuple[str, float]]]:
    """For each row, the ``k`` most probable classes with their probabilities."""
    probs = logits.float().softmax(dim=1)
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[(class_names[i], float(p)) for p, i in zip(v, idx)] for v, idx in zip(values.tolist(), indices.tolist())]
