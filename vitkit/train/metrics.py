"""Classification metrics from logits: accuracy, top-5, per-class precision / recall / F1, confusion matrix."""

from __future__ import annotations

from typing import Any

import torch


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[true class, predicted class] counts."""
    index = targets.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(logits: torch.Tensor, targets: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """All metrics of a labelled evaluation, as plain JSON-ready values."""
    num_classes = len(class_names)
    predictions = logits.argmax(dim=1)
    matrix = confusion_matrix(predictions, targets, num_classes)
    true_positive = matrix.diag().double()
    predicted = matrix.sum(dim=0).double()
    actual = matrix.sum(dim=1).double()
    precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), torch.zeros_like(predicted))
    recall = torch.where(actual > 0, true_positive / actual.clamp(min=1), torch.zeros_like(actual))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(precision))
    report: dict[str, Any] = {
        "samples": int(targets.numel()),
        "accuracy": float(true_positive.sum() / max(1, targets.numel())),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(actual[i])}
            for i, name in enumerate(class_names)
        },
        "macro_f1": float(f1.mean()),
        "confusion_matrix": matrix.tolist(),
    }
    if num_classes >= 5:
        top5 = logits.topk(5, dim=1).indices
        report["top5_accuracy"] = float((top5 == targets[:, None]).any(dim=1).double().mean())
    return report
