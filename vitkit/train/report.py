"""What a run leaves for people to read: metrics.jsonl, TensorBoard events, PNG plots, a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from ..store import atomic_write


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl from the full history (so a resumed run never holds duplicate epochs)."""
    atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history).encode())


class TensorBoard:
    """TensorBoard scalars, if the tensorboard package is installed (silently off otherwise, or when not
    ``enabled``: the processes other than rank 0 of a distributed run)."""

    def __init__(self, run_dir: Path, purge_step: int | None = None, enabled: bool = True) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Panel(NamedTuple):
    """One plot of :func:`plot_curves`: its curves as (metric key, legend label), and its axes' settings."""

    curves: tuple[tuple[str, str], ...]
    axes: dict[str, Any]


CLASSIFICATION_PANELS = (
    Panel((("train_loss", "train"), ("val_loss", "val")), {"ylabel": "cross-entropy", "title": "loss"}),
    Panel((("train_accuracy", "train (augmented)"), ("val_accuracy", "val")),
          {"ylabel": "accuracy", "title": "accuracy", "ylim": (0, 1)}),
)
"""Loss and accuracy, train and val: the image and video runs' curves."""


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(run_dir: Path, history: list[dict[str, Any]], panels: Sequence[Panel] = CLASSIFICATION_PANELS) -> Path:
    """Metrics per epoch, one plot per panel side by side, as ``plots/curves.png``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for key, label in panel.curves:  # an epoch without a value (not evaluated) is left out of that curve
            points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
            ax.plot([epoch for epoch, _ in points], [value for _, value in points], label=label)
        ax.set(xlabel="epoch", **panel.axes)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = run_dir / "plots" / "curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(path: Path, matrix: list[list[int]], class_names: list[str]) -> Path:
    """A confusion matrix heat map with counts, true classes as rows."""
    plt = _pyplot()
    n = len(class_names)
    size = min(16, 2 + 0.5 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title="confusion matrix")
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    peak = max(max(row) for row in matrix) or 1
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center",
                        color="white" if matrix[i][j] > peak / 2 else "black", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def skipped_warning(skipped: list[tuple[str, str]]) -> str:
    """One warning that lists every skipped file and why."""
    lines = [f"warning: skipped {len(skipped)} unreadable file(s):"]
    lines += [f"  {path}: {reason}" for path, reason in skipped]
    return "\n".join(lines)
