"""Steps with non-finite values (``--max-bad-steps``): what went wrong, and the likely cause once the run stops."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TrainConfig


@dataclass(frozen=True)
class BadStep:
    """A step whose input batch, loss or gradient norm was NaN or infinite (checked in that order)."""

    loss: float
    norm: float
    bad_input: bool

    @property
    def what(self) -> str:
        return "input batch" if self.bad_input else "loss" if not math.isfinite(self.loss) else "gradient norm"

    @property
    def value(self) -> str:
        return "non-finite" if self.bad_input else str(self.loss if not math.isfinite(self.loss) else self.norm)

    def likely_cause(self, config: TrainConfig) -> str:
        """The setting to change, with its current value."""
        if self.bad_input:
            return "the images hold NaN/inf (check --mean/--std and the data)"
        if not math.isfinite(self.loss):
            return (f"the loss diverged: lower --lr (now {config.lr:g}), raise --warmup-epochs"
                    + (" or use --precision fp32" if config.precision != "fp32" else ""))
        return f"the gradients overflowed: set --clip-grad (now {config.clip_grad:g}) or lower --lr (now {config.lr:g})"
