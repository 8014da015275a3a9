"""Evaluating and using a trained model: batched inference, metrics, predictions for files."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

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
    return _batched_logits(model, len(data), len(data.class_names), batch_size, precision, desc,
                           lambda chunk: eval_batch([data.images[i] for i in chunk], prep))


def _batched_logits(model: nn.Module, count: int, classes: int, batch_size: int, precision: str,
                    desc: str | None, make_batch: Callable[[range], torch.Tensor],
                    combine: Callable[[torch.Tensor], torch.Tensor] = lambda logits: logits) -> torch.Tensor:
    """``combine(model(make_batch(chunk)))`` in fp32 for consecutive chunks of ``count`` items, with a progress
    bar; ``combine`` may reduce a batch of views of one item to that item's row."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for chunk in tqdm(list(_chunks(count, batch_size)), desc=desc, unit="batch", leave=False,
                      disable=True if desc is None else None, dynamic_ncols=True):
        inputs = make_batch(chunk).to(device)
        with autocast(precision, device):
            outputs.append(combine(model(inputs).float()).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, classes)


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
    classes = len(data.class_names)
    if views is None:
        return _batched_logits(model, len(data), classes, batch_size, precision, desc,
                               lambda chunk: torch.stack([data.clip_at(i, False, None) for i in chunk]))
    # One video's views form one batch; averaging probabilities (not logits) is the usual multi-view rule.
    return _batched_logits(model, len(data), classes, 1, precision, desc, lambda chunk: data.views(chunk[0], *views),
                           lambda logits: logits.softmax(dim=-1).mean(dim=0, keepdim=True).clamp_min(1e-12).log())


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
