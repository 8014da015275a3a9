"""A run folder's files besides the checkpoints (checkpoint.py): the training config saved in it (``--resume``),
the check that it can hold the run before training starts, the weights files and the final summary."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import VitkitError
from ..store import atomic_write, atomic_write_json, read_config
from .checkpoint import KEEP
from .config import TrainConfig


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The training config saved in a run folder."""
    meta = read_config(run_dir)
    if "train" not in meta:
        raise VitkitError(f"{run_dir} is a model folder, not a training run; nothing to resume")
    return TrainConfig.from_dict(meta["train"]).replace(out=str(run_dir))


def check_run_folder(run_dir: Path, weights_bytes: int, ema: bool, resume: bool) -> None:
    """Fail before training, not hours later: ``run_dir`` must be writable and have room for the checkpoints of a
    model whose weights take ``weights_bytes``."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".vitkit-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise VitkitError(f"cannot write to --out {run_dir} ({error.strerror or error}); "
                          "choose a writable folder") from None
    # A checkpoint holds the weights, AdamW's two moments and the EMA copy; KEEP + 1 exist while saving.
    checkpoint = weights_bytes * (3 + (1 if ema else 0))
    need = checkpoint if resume else (KEEP + 1) * checkpoint + 2 * weights_bytes
    free = shutil.disk_usage(run_dir).free
    if free < need * 1.1 + (16 << 20):
        raise VitkitError(f"not enough free space in {run_dir}: {free / 2**20:.0f} MiB free, checkpoints "
                          f"need about {need / 2**20:.0f} MiB; free space or choose another --out")


def write_weights(run_dir: Path, weights: bytes, best: bool, last_checkpoint: str | None) -> None:
    """``last.safetensors`` (and ``model.safetensors``, the best so far, when ``best``), each written atomically."""
    try:
        if best:
            atomic_write(run_dir / "model.safetensors", weights)
        atomic_write(run_dir / "last.safetensors", weights)
    except OSError as error:
        raise VitkitError(f"could not write weights to {run_dir} ({error.strerror or error}); the last "
                          f"good checkpoint, {last_checkpoint}, is intact: free space, then --resume") from None


def write_summary(run_dir: Path, config: TrainConfig, epochs_done: int, elapsed: float, metrics: dict[str, Any],
                  skipped_files: int) -> dict[str, Any]:
    """``summary.json`` (the run at a glance) and ``eval.json`` (the best model's ``metrics`` on val)."""
    summary = {
        "run": str(run_dir), "model": config.model, "data": config.data,
        "epochs_done": epochs_done, "train_minutes": round(elapsed / 60, 2),
        "best_val_accuracy": metrics["accuracy"], "val_top5_accuracy": metrics.get("top5_accuracy"),
        "val_samples": metrics["samples"], "skipped_files": skipped_files,
        "plots": [str(run_dir / "plots" / "curves.png"), str(run_dir / "plots" / "confusion_matrix.png")],
    }
    atomic_write_json(run_dir / "summary.json", summary)
    atomic_write_json(run_dir / "eval.json", metrics)
    return summary
