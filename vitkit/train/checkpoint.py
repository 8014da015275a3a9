"""The trainer's resumable state: weights (safetensors) plus optimiser, schedule, EMA, RNG and progress.

Saved atomically at every epoch end and on SIGINT/SIGTERM. ``--resume`` reads it back; because every batch is
a function of (seed, epoch, step) and the RNG state is restored, the resumed run ends with the same weights
as one that was never interrupted.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..errors import VitkitError
from ..store import atomic_write

STATE_FILE = "trainer_state.pt"


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(run_dir / STATE_FILE, buffer.getvalue())


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise VitkitError(f"{run_dir} has no {STATE_FILE}: nothing to resume (train without --resume to start)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise VitkitError(f"{path} is damaged ({type(error).__name__}); start again without --resume") from None
