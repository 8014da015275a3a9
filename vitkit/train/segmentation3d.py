"""``vitkit train --task segmentation3d``: per-point semantic segmentation of indoor scans.

A runner of its own beside the image/video loop (``loop.py``), with the same run-folder conventions:
``config.json`` + ``model.safetensors`` (best mIoU) + ``last.safetensors``, ``checkpoints/`` (resumable),
``metrics.jsonl``, ``plots/curves.png`` and ``plots/confusion_matrix.png``, ``eval.json`` and ``summary.json``.
Evaluations report mIoU and per-class IoU on the held-out scans: after the first and the last epoch, and in between
as often as keeps them to a tenth of the training time; the weights and the checkpoint are written after each.
``--time-limit`` is the wall time of the whole run, evaluations and checkpoints included. ``--model point_mlp``
trains the per-point baseline (an MLP on each point's colour, normal and height, no neighbours) on the same data.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.points.pipeline import Augment, PointBatch, crop, load_scans, make_batch
from ..errors import VitkitError
from ..models.registry import create_model
from ..models.swin3d.model import Swin3DUNet
from ..store import atomic_write, atomic_write_json, model_config_json, state_dict_bytes
from . import report
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint


@dataclass
class Seg3DConfig:
    """Every option of a segmentation3d run."""

    data: str = "indoor-rooms"
    model: str = "swin3d_tiny"
    out: str = "runs/indoor-rooms-swin3d_tiny"
    epochs: int = 30
    batch_size: int = 2
    """Scans (crops) per optimiser step."""
    lr: float = 3e-2
    """High for a transformer, because the model is narrow: AdamW moves each weight by about lr per step, so a
    layer's output moves by about lr x fan-in, and at swin3d_tiny's 16-64 channels 2e-3 left the logits crawling
    (one crop: 42% mIoU after 40 steps at 2e-3, 96% at 3e-2; tests/test_swin3d_training.py)."""
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    crop: float = 3.0
    """Training crops: columns of crop x crop metres (0: whole scans)."""
    train_scans: int = 32
    val_scans: int = 6
    time_limit: float = 0.0
    """Minutes of the run (training, evaluation, checkpoints): the last epoch is the one after which another would
    not fit (0: no limit)."""
    seed: int = 0
    model_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Seg3DConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


CURVES = (
    report.Panel((("train_loss", "train (augmented crops)"), ("val_loss", "val")),
                 {"ylabel": "cross-entropy", "title": "loss"}),
    report.Panel((("val_miou", "val mIoU"), ("val_accuracy", "val accuracy")),
                 {"title": "held-out scans", "ylim": (0, 1)}),
)
"""``plots/curves.png``: loss per epoch (train, val), and the val mIoU and accuracy."""


class PointMLP(nn.Module):
    """The per-point baseline: colour, normal and height of each point alone, through a 3-layer MLP."""

    def __init__(self, num_classes: int, width: int = 128, in_features: int = 7) -> None:
        super().__init__()
        self.config = {"num_classes": num_classes, "width": width}
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def logits_of(model: nn.Module, batch: PointBatch) -> torch.Tensor:
    """Per-point logits of either model kind."""
    return model(batch.inputs) if isinstance(model, Swin3DUNet) else model(batch.point_features)


def confusion(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    keep = labels >= 0
    pairs = labels[keep] * num_classes + logits[keep].argmax(1)
    return torch.bincount(pairs, minlength=num_classes**2).view(num_classes, num_classes)


def iou_scores(matrix: torch.Tensor, class_names: tuple[str, ...]) -> dict[str, Any]:
    """mIoU over the classes present (in labels or predictions), per-class IoU (None when absent), accuracy."""
    m = matrix.double()
    tp, total_true, total_pred = m.diag(), m.sum(1), m.sum(0)
    union = total_true + total_pred - tp
    per_class = {name: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, name in enumerate(class_names)}
    present = [v for v in per_class.values() if v is not None]
    return {"miou": sum(present) / max(1, len(present)), "accuracy": float(tp.sum() / max(1.0, float(m.sum()))),
            "per_class_iou": per_class, "confusion_matrix": matrix.tolist()}


EVAL_SHARE = 0.1
"""Evaluations between the first and the last epoch take at most this share of the training time."""


def evaluate_scans(model: nn.Module, scans: list, voxel_size: float, class_names: tuple[str, ...]) -> dict[str, Any]:
    """mIoU, per-class IoU, accuracy and mean loss over every point of ``scans`` (whole scans, no augmentation)."""
    return evaluate_batches(model, [make_batch([scan], voxel_size) for scan in scans], class_names)


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: list[PointBatch], class_names: tuple[str, ...]) -> dict[str, Any]:
    """:func:`evaluate_scans` on scans already batched (one scan per batch)."""
    model.eval()
    matrix = torch.zeros(len(class_names), len(class_names), dtype=torch.long)
    loss_sum, count = 0.0, 0
    for batch in batches:
        logits = logits_of(model, batch)
        keep = batch.labels >= 0
        loss_sum += float(nn.functional.cross_entropy(logits[keep], batch.labels[keep], reduction="sum"))
        count += int(keep.sum())
        matrix += confusion(logits, batch.labels, len(class_names))
    return {**iou_scores(matrix, class_names), "loss": loss_sum / max(1, count), "points": count}


def build(config: Seg3DConfig, num_classes: int) -> tuple[nn.Module, float]:
    """The model and the voxel size its inputs use."""
    if config.model == "point_mlp":
        return PointMLP(num_classes), 0.05
    model = create_model(config.model, num_classes=num_classes, **config.model_args)
    if not isinstance(model, Swin3DUNet):
        raise VitkitError(f"--task segmentation3d needs a point-cloud model (swin3d_*, point_mlp), not {config.model}")
    return model, model.config.voxel_size


def make_optimizer(model: nn.Module, config: Seg3DConfig) -> torch.optim.Optimizer:
    """AdamW at ``config.lr``; weight decay on matrices but not on biases, norms and cRSE tables."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "table" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "table" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=config.lr)


class Segmentation3DRun:
    """One training run; ``fit`` trains, evaluates each epoch, checkpoints, and resumes where it stopped."""

    def __init__(self, config: Seg3DConfig, resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(config.out)
        if not resume and has_checkpoint(self.run_dir):
            raise VitkitError(f"{self.run_dir} already holds a run; --resume {self.run_dir} to continue it, or "
                              "choose another --out")
        torch.manual_seed(config.seed)
        self.train_scans, self.val_scans = load_scans(config.data, config.train_scans, config.val_scans)
        self.class_names = tuple(self.train_scans[0].class_names)
        self.model, self.voxel_size = build(config, len(self.class_names))
        self.optimizer = make_optimizer(self.model, config)
        self.steps_per_epoch = max(1, len(self.train_scans) // config.batch_size)
        self.epoch, self.best_miou, self.history, self.train_seconds, self.finished = 0, -1.0, [], 0.0, False
        if resume:
            state, _ = load_checkpoint(self.run_dir)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.epoch, self.best_miou = state["epoch"], state["best_miou"]
            self.history, self.train_seconds = state["history"], state["train_seconds"]
            self.finished = state.get("finished", False)

    def lr_at(self, step: int, seconds: float = 0.0) -> float:
        """Linear warm-up, then a cosine to 0 over the run: over its steps, or over ``--time-limit`` when that
        comes first (``seconds`` of training so far), so that a timed run ends at a low learning rate."""
        warm = self.config.warmup_epochs * self.steps_per_epoch
        total = self.config.epochs * self.steps_per_epoch
        if step < warm:
            return self.config.lr * (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        if self.config.time_limit:
            progress = max(progress, seconds / (60 * self.config.time_limit))
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def fit(self) -> dict[str, Any]:
        c = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = {"class_names": list(self.class_names), "train": {**dataclasses.asdict(c), "task": "segmentation3d"},
                "voxel_size": self.voxel_size}
        config_json = (model_config_json(self.model, **meta) if isinstance(self.model, Swin3DUNet)
                       else {"format": "vitkit", "architecture": "PointMLP", "model": self.model.config, **meta})
        atomic_write_json(self.run_dir / "config.json", config_json)
        params = sum(p.numel() for p in self.model.parameters())
        print(f"training {c.model} ({params / 1e6:.3f}M params) on {c.data}: {len(self.train_scans)} train / "
              f"{len(self.val_scans)} val scans, {len(self.class_names)} classes, voxels {self.voxel_size} m, "
              f"crops {c.crop} m, {self.steps_per_epoch} steps/epoch x {c.epochs} epochs -> {self.run_dir}", flush=True)
        augment = Augment()
        val_batches = [make_batch([scan], self.voxel_size) for scan in self.val_scans]  # voxelised once
        every, eval_s = 1, 0.0
        while self.epoch < c.epochs and not self.finished:
            epoch_start = time.perf_counter()
            trained, loss_sum, correct, seen = self._train_epoch(augment, eval_s)
            self.epoch += 1
            left = 60 * c.time_limit - (self.train_seconds + time.perf_counter() - epoch_start)
            last = self.epoch >= c.epochs or bool(c.time_limit) and left < trained + eval_s
            row = {"epoch": self.epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen}
            metrics, self.finished = None, last
            if last or self.epoch == 1 or self.epoch % every == 0:
                begun = time.perf_counter()
                metrics = evaluate_batches(self.model, val_batches, self.class_names)
                eval_s = time.perf_counter() - begun
                every = max(1, math.ceil(eval_s / (EVAL_SHARE * trained)))
                row |= {"val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"], "val_miou": metrics["miou"],
                        "val_iou": metrics["per_class_iou"]}
            self._save(row, metrics, epoch_start)
        return self._finish()

    def _train_epoch(self, augment: Augment, eval_s: float) -> tuple[float, float, int, int]:
        """One epoch of optimiser steps (cut short when the time limit, less one evaluation, runs out): its
        seconds, summed loss, correct and seen points."""
        c = self.config
        rng = np.random.default_rng([c.seed, self.epoch])
        order = rng.permutation(len(self.train_scans))
        self.model.train()
        start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        for step in range(self.steps_per_epoch):
            so_far = self.train_seconds + time.perf_counter() - start
            if c.time_limit and seen and so_far + eval_s >= 60 * c.time_limit:
                break
            picks = order[step * c.batch_size : (step + 1) * c.batch_size]
            batch = make_batch([crop(augment(self.train_scans[i], rng), c.crop, rng) for i in picks], self.voxel_size)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.epoch * self.steps_per_epoch + step, so_far)
            logits = logits_of(self.model, batch)
            keep = batch.labels >= 0
            loss = nn.functional.cross_entropy(logits[keep], batch.labels[keep])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            loss_sum += float(loss.detach()) * int(keep.sum())
            correct += int((logits[keep].argmax(1) == batch.labels[keep]).sum())
            seen += int(keep.sum())
            print(f"\repoch {self.epoch + 1}/{c.epochs} step {step + 1}/{self.steps_per_epoch} "
                  f"loss {loss_sum / seen:.3f}", end="", flush=True)
        return time.perf_counter() - start, loss_sum, correct, seen

    def _save(self, row: dict[str, Any], metrics: dict[str, Any] | None, epoch_start: float) -> None:
        """Log the epoch; after an evaluation (the last epoch has one) also write the weights (``model.safetensors``
        when the mIoU is the best yet), the curves and the checkpoint, so that a kill loses at most the epochs since
        the last evaluation. The run's clock includes all of it."""
        row["train_minutes"] = (self.train_seconds + time.perf_counter() - epoch_start) / 60
        self.history.append(row)
        report.write_metrics(self.run_dir, self.history)
        if metrics is not None:
            weights = state_dict_bytes(self.model)
            if metrics["miou"] > self.best_miou:
                self.best_miou = metrics["miou"]
                atomic_write(self.run_dir / "model.safetensors", weights)
                atomic_write_json(self.run_dir / "eval.json", metrics)
            atomic_write(self.run_dir / "last.safetensors", weights)
            report.plot_curves(self.run_dir, self.history, CURVES)
            ious = " ".join(f"{k}={v:.2f}" for k, v in metrics["per_class_iou"].items() if v is not None)
            print(f"\repoch {self.epoch}/{self.config.epochs}: train loss {row['train_loss']:.3f}, val mIoU "
                  f"{metrics['miou']:.2%} acc {metrics['accuracy']:.2%} ({row['train_minutes']:.1f} min) | {ious}",
                  flush=True)
            save_checkpoint(self.run_dir, self.epoch, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "best_miou": self.best_miou, "history": self.history, "finished": self.finished,
                "train_seconds": self.train_seconds + time.perf_counter() - epoch_start})
        self.train_seconds += time.perf_counter() - epoch_start

    def _finish(self) -> dict[str, Any]:
        import json

        best = json.loads((self.run_dir / "eval.json").read_text()) if (self.run_dir / "eval.json").exists() else {}
        if best:
            report.plot_confusion(self.run_dir / "plots" / "confusion_matrix.png", best["confusion_matrix"],
                                  list(self.class_names))
        summary = {"run": str(self.run_dir), "epochs_done": self.epoch, "train_minutes": self.train_seconds / 60,
                   "best_val_miou": best.get("miou"), "per_class_iou": best.get("per_class_iou"),
                   "last_val_miou": self.history[-1]["val_miou"] if self.history else None,
                   "last_per_class_iou": self.history[-1]["val_iou"] if self.history else None,
                   "plots": [str(self.run_dir / "plots" / "curves.png"),
                             str(self.run_dir / "plots" / "confusion_matrix.png")]}
        atomic_write_json(self.run_dir / "summary.json", summary)
        return summary


def resume_run(run_dir: str | Path) -> Segmentation3DRun:
    """Continue the run in ``run_dir`` with its own settings."""
    import json

    meta = json.loads((Path(run_dir) / "config.json").read_text())
    config = Seg3DConfig.from_dict({**meta["train"], "out": str(run_dir)})
    return Segmentation3DRun(config, resume=True)


def run_from_args(args: Any) -> int:
    """``vitkit train --task segmentation3d`` (or ``--resume`` of such a run): train and print the result."""
    if getattr(args, "resume", None):
        run = resume_run(args.resume)
    else:
        data = args.data or "indoor-rooms"
        values: dict[str, Any] = {"data": data}
        for name in ("model", "out", "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "time_limit",
                     "seed"):
            if getattr(args, name, None) is not None:
                values[name] = getattr(args, name)
        if values.get("time_limit") and getattr(args, "epochs", None) is None:
            values["epochs"] = 1000  # the time limit ends the run; the cosine follows the time (lr_at)
        values.setdefault("out", f"runs/{Path(data).name or 'data'}-{values.get('model', Seg3DConfig.model)}")
        for pair in getattr(args, "model_arg", None) or []:
            key, _, value = pair.partition("=")
            values.setdefault("model_args", {})[key] = float(value) if value.replace(".", "", 1).isdigit() else value
        run = Segmentation3DRun(Seg3DConfig(**values))
    summary = run.fit()
    if summary["best_val_miou"] is not None:
        print(f"\nlast val mIoU {summary['last_val_miou']:.2%}, best val mIoU {summary['best_val_miou']:.2%} after "
              f"{summary['epochs_done']} epochs "
              f"({summary['train_minutes']:.1f} min); model in {summary['run']}")
        print("plots: " + ", ".join(summary["plots"]))
    return 0


def is_segmentation3d_run(run_dir: str | None) -> bool:
    """Whether ``run_dir`` holds a segmentation3d run (so that ``--resume`` goes to this runner)."""
    import json

    path = Path(run_dir or "") / "config.json"
    try:
        return json.loads(path.read_text()).get("train", {}).get("task") == "segmentation3d"
    except (OSError, ValueError):
        return False
