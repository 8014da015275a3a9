"""The EMA copy of the weights (``--ema``): an ``AveragedModel`` whose decay ramps up over the first updates."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

EmaUpdate = Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]


def ema_with_warmup(decay: float) -> EmaUpdate:
    """An EMA update whose decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates.

    A fixed 0.999 keeps about half of the random initial weights for the first ~700 steps, so early evaluations
    (and "best" checkpoints) of the EMA copy show an untrained mixture; the ramp makes it follow the model early
    and average over ~1 / (1 - decay) steps later.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        if averaged[0].is_floating_point():  # AveragedModel groups the tensors by dtype
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (BatchNorm's batch count): keep the current value
            torch._foreach_copy_(averaged, current)

    return update


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """The EMA copy of ``model`` for ``--ema decay`` (None when ``decay`` is 0).

    ``use_buffers``: the copy also tracks BatchNorm statistics (conv stem), or it would evaluate with the running
    mean/var it was created with.
    """
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=ema_with_warmup(decay), use_buffers=True)
