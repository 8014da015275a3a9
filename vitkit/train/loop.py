"""The training loop: data, model, optimiser, schedule, evaluation each epoch, checkpoints, resume.

    run = train(TrainConfig(data="path/to/images", model="vit_ti16", epochs=30, out="runs/pets"))

A run folder holds config.json, model.safetensors (best val accuracy), last.safetensors, trainer_state.pt,
metrics.jsonl, tensorboard/, plots/ and summary.json.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..data.datasets import load_datasets
from ..data.images import ImageSet
from ..data.pipeline import Augment, Preprocess, train_batch
from ..errors import VitkitError
from ..models import create_model
from ..store import CONFIG_FILE, atomic_write, atomic_write_json, model_config_json, read_config, state_dict_bytes
from . import report
from .checkpoint import STATE_FILE, load_state, save_state
from .config import TrainConfig
from .evaluate import autocast, evaluate
from .optim import make_optimizer, warmup_cosine


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


class _StopRequest:
    """Turns SIGINT / SIGTERM into a flag the loop checks between steps, so it can save and exit cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, sig: int, frame: Any) -> None:
        self.signal = sig

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def batch_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The generator for one batch's augmentation, a pure function of where the batch is in the run."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7_919 + epoch))


class Trainer:
    """One training run. Build it with a config (new run) or with ``resume=True`` (continue ``config.out``)."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, device: str | torch.device | None = None) -> None:
        self.config = config
        self.run_dir = Path(config.out)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if not resume and (self.run_dir / STATE_FILE).exists():
            raise VitkitError(f"{self.run_dir} already holds a run; use --resume {self.run_dir} or another --out")
        if config.batch_size % config.accum_steps:
            raise VitkitError(f"--batch-size {config.batch_size} is not divisible by --accum-steps {config.accum_steps}")
        torch.manual_seed(config.seed)
        self.model = self._build_model_for_data()
        self.optimizer = make_optimizer(self.model, config.lr, config.weight_decay)
        self.steps_per_epoch = len(self.train_set) // config.batch_size
        if self.steps_per_epoch == 0:
            raise VitkitError(f"only {len(self.train_set)} training images for --batch-size {config.batch_size}; "
                              "lower the batch size")
        total = self.steps_per_epoch * config.epochs
        warmup = min(total - 1, round(config.warmup_epochs * self.steps_per_epoch))
        self.scheduler = warmup_cosine(self.optimizer, total, max(1, warmup), config.lr, config.min_lr)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema)) if config.ema else None
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.epoch, self.step, self.best_accuracy = 0, 0, -1.0
        self.history: list[dict[str, Any]] = []
        if resume:
            self._restore()

    # --- setup -------------------------------------------------------------------------------------------

    def _build_model_for_data(self) -> nn.Module:
        c = self.config
        probe = create_model(c.model, device="meta", **c.model_args)
        image_size = c.img_size or probe.config.image_size[0]
        self.prep = Preprocess(image_size, round(image_size / c.crop_pct), c.mean, c.std)
        self.train_set, self.val_set = load_datasets(c.data, self.prep.short_side, c.val_fraction, c.seed)
        skipped = self.train_set.skipped + self.val_set.skipped
        if skipped:
            log(report.skipped_warning(skipped))
        if not len(self.train_set) or not len(self.val_set):
            raise VitkitError(f"no readable images left in {'train' if not len(self.train_set) else 'val'} of {c.data}")
        self.class_names = self.train_set.class_names
        overrides = {**c.model_args, "num_classes": len(self.class_names), "image_size": image_size}
        if c.init:
            from ..interop.load import load as load_pretrained  # lazy: the interop layer is optional here

            model = load_pretrained(c.init, num_classes=len(self.class_names), image_size=image_size)
        else:
            model = create_model(c.model, **overrides)
        model.grad_checkpointing = c.grad_checkpointing
        return model.to(self.device)

    def _restore(self) -> None:
        state = load_state(self.run_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_accuracy, self.history = state["best_accuracy"], state["history"]
        log(f"resuming {self.run_dir} at epoch {self.epoch + 1}, step {self.step} of {self.steps_per_epoch}")

    # --- the loop ----------------------------------------------------------------------------------------

    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train to the end (or until a signal, the time limit or ``stop_after_steps``); returns the summary."""
        c = self.config
        self._write_config()
        board = report.TensorBoard(self.run_dir, purge_step=self.epoch * self.steps_per_epoch + self.step)
        start, steps_done = time.monotonic(), 0
        self._print_start()
        with _StopRequest() as stop:
            while self.epoch < c.epochs:
                train_stats = self._train_epoch(stop, stop_after_steps, steps_done)
                steps_done += train_stats.pop("steps")
                if self.step < self.steps_per_epoch:  # interrupted mid-epoch
                    self._save_checkpoint()
                    reason = f"signal {stop.signal}" if stop.signal else "stop requested"
                    log(f"{reason}: saved {self.run_dir} at epoch {self.epoch + 1} step {self.step}; "
                        f"continue with `vitkit train --resume {self.run_dir}`")
                    board.close()
                    return {"interrupted": True, "epoch": self.epoch, "step": self.step}
                self._end_epoch(train_stats, time.monotonic() - start, board)
                if c.time_limit is not None and time.monotonic() - start > c.time_limit * 60:
                    log(f"time limit of {c.time_limit} min reached after epoch {self.epoch}")
                    break
        board.close()
        return self._finish(time.monotonic() - start)

    def _train_epoch(self, stop: _StopRequest, stop_after_steps: int | None, steps_done: int) -> dict[str, float]:
        c = self.config
        self.model.train()
        order = epoch_order(c.seed, self.epoch, len(self.train_set)).tolist()
        aug = Augment(c.crop, c.crop_scale, c.shift_pad, c.flip, c.augment, c.mixup, c.cutmix)
        loss_sum, correct, seen, steps = 0.0, 0, 0, 0
        bar = tqdm(total=self.steps_per_epoch * c.batch_size, initial=self.step * c.batch_size, unit="img",
                   desc=f"epoch {self.epoch + 1}/{c.epochs}", leave=False, dynamic_ncols=True, disable=None)
        while self.step < self.steps_per_epoch:
            if stop.signal is not None or (stop_after_steps is not None and steps_done + steps >= stop_after_steps):
                break
            indices = order[self.step * c.batch_size : (self.step + 1) * c.batch_size]
            g = batch_generator(c.seed, self.epoch, self.step)
            images, targets = train_batch(self.train_set, indices, self.prep, aug, len(self.class_names), g)
            loss, hits = self._optimizer_step(images.to(self.device), targets.to(self.device))
            loss_sum, correct, seen = loss_sum + loss * len(indices), correct + hits, seen + len(indices)
            self.step, steps = self.step + 1, steps + 1
            bar.update(len(indices))
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        return {"train_loss": loss_sum / max(1, seen), "train_accuracy": correct / max(1, seen), "steps": steps}

    def _optimizer_step(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
        c = self.config
        micro = c.batch_size // c.accum_steps
        total_loss, hits = 0.0, 0
        for start in range(0, len(images), micro):
            x, y = images[start : start + micro], targets[start : start + micro]
            with autocast(c.precision, self.device):
                logits = self.forward(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=c.label_smoothing)
            (loss * len(x) / len(images)).backward()
            total_loss += loss.item() * len(x) / len(images)
            hits += int((logits.argmax(1) == y.argmax(1)).sum())
        if not math.isfinite(total_loss):
            raise VitkitError(f"loss became {total_loss} at epoch {self.epoch + 1} step {self.step}; "
                              "lower --lr or use --precision fp32")
        if c.clip_grad:
            nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return total_loss, hits

    def _end_epoch(self, train_stats: dict[str, float], elapsed: float, board: report.TensorBoard) -> None:
        metrics = evaluate(self.eval_model, self.val_set, self.prep, precision=self.config.precision)
        self.epoch, self.step = self.epoch + 1, 0
        row = {"epoch": self.epoch, **train_stats, "val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"],
               "lr": self.scheduler.get_last_lr()[0], "elapsed_s": round(elapsed, 1)}
        if "top5_accuracy" in metrics:
            row["val_top5_accuracy"] = metrics["top5_accuracy"]
        self.history.append(row)
        improved = metrics["accuracy"] > self.best_accuracy
        if improved:
            self.best_accuracy = metrics["accuracy"]
            atomic_write(self.run_dir / "model.safetensors", state_dict_bytes(self.eval_model))
        self._save_checkpoint()
        report.write_metrics(self.run_dir, self.history)
        board.scalars({k: v for k, v in row.items() if k != "epoch"}, self.epoch * self.steps_per_epoch)
        report.plot_curves(self.run_dir, self.history)
        log(f"epoch {self.epoch}/{self.config.epochs}  train loss {row['train_loss']:.4f}  "
            f"val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.2%}{'  (best)' if improved else ''}  "
            f"[{elapsed / 60:.1f} min]")

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _save_checkpoint(self) -> None:
        atomic_write(self.run_dir / "last.safetensors", state_dict_bytes(self.eval_model))
        save_state(self.run_dir, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "rng": torch.get_rng_state(), "epoch": self.epoch, "step": self.step,
            "best_accuracy": self.best_accuracy, "history": self.history,
        })

    def _write_config(self) -> None:
        atomic_write_json(self.run_dir / CONFIG_FILE, model_config_json(
            self.model, class_names=self.class_names, preprocess=self.prep.to_dict(), train=self.config.to_dict()))

    def _print_start(self) -> None:
        c = self.config
        params = sum(p.numel() for p in self.model.parameters())
        log(f"training {c.model} ({params / 1e6:.2f}M params) on {c.data}: {len(self.train_set)} train / "
            f"{len(self.val_set)} val images, {len(self.class_names)} classes, {self.prep.image_size} px, "
            f"batch {c.batch_size} x {self.steps_per_epoch} steps/epoch x {c.epochs} epochs, {c.precision}, "
            f"{self.device} -> {self.run_dir}")

    def _finish(self, elapsed: float) -> dict[str, Any]:
        from ..store import load_model

        best, _ = load_model(self.run_dir, device=self.device)
        metrics = evaluate(best, self.val_set, self.prep, precision="fp32")
        report.plot_confusion(self.run_dir / "plots" / "confusion_matrix.png", metrics["confusion_matrix"],
                              self.class_names)
        summary = {
            "run": str(self.run_dir), "model": self.config.model, "data": self.config.data,
            "epochs_done": self.epoch, "train_minutes": round(elapsed / 60, 2),
            "best_val_accuracy": metrics["accuracy"], "val_top5_accuracy": metrics.get("top5_accuracy"),
            "val_samples": metrics["samples"], "skipped_files": len(self.train_set.skipped) + len(self.val_set.skipped),
            "plots": [str(self.run_dir / "plots" / "curves.png"), str(self.run_dir / "plots" / "confusion_matrix.png")],
        }
        atomic_write_json(self.run_dir / "summary.json", summary)
        atomic_write_json(self.run_dir / "eval.json", metrics)
        return summary


def train(config: TrainConfig, *, resume: bool = False, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns its summary."""
    return Trainer(config, resume=resume).fit(stop_after_steps=stop_after_steps)


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The training config saved in a run folder."""
    meta = read_config(run_dir)
    if "train" not in meta:
        raise VitkitError(f"{run_dir} is a model folder, not a training run; nothing to resume")
    return TrainConfig.from_dict(meta["train"]).replace(out=str(run_dir))


def load_run(run: str | Path) -> tuple[nn.Module, Preprocess, list[str]]:
    """The best model of a run (or any vitkit model folder with preprocessing info), ready for inference."""
    from ..store import load_model

    model, meta = load_model(run)
    prep = meta.get("preprocess")
    if prep is None:
        size = model.config.image_size[0]
        prep = {"image_size": size, "short_side": round(size / 0.875), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    names = meta.get("class_names") or [str(i) for i in range(model.config.num_classes)]
    return model, Preprocess.from_dict(prep), names


__all__ = ["Trainer", "train", "resume_config", "load_run", "ImageSet"]
