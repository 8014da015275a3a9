"""AdamW with the usual exemptions from weight decay, and a warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

# Decaying these pulls them toward zero for no benefit: norms' scales, biases, the position tables ("*pos_embed":
# also ViViT Model 2's and TimeSformer's ``temporal_pos_embed``), [CLS].
NO_DECAY_NAMES = ("pos_embed", "cls_token", "token")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices (decayed) and everything 1-D or embedding-like (not decayed)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        exempt = param.ndim <= 1 or any(part in NO_DECAY_NAMES or part.endswith("_pos_embed") for part in parts)
        (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; the fused kernel is used where this torch build supports it for the parameters' device."""
    groups = parameter_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


class WarmupCosine:
    """The learning-rate factor at each step: linear warmup over ``warmup`` steps, then a cosine from 1 down to
    ``floor`` (min_lr / lr), reached at step ``total``.

    The cosine's progress is linear in the step from (``start``, ``start_progress``) to (``total``, 1); at first
    that is (``warmup``, 0), the plain warmup + cosine. :meth:`retarget` moves the end: the progress reached so
    far is kept and the rest is spread over the new remaining steps, so the rate never jumps. A
    ``LambdaLR`` saves this object's attributes in its state dict, so a resumed run continues the same curve."""

    def __init__(self, total: int, warmup: int, floor: float) -> None:
        self.total, self.warmup, self.floor = total, warmup, floor
        self.start, self.start_progress = warmup, 0.0

    def progress(self, step: int) -> float:
        """0 at the end of the warmup, 1 from ``total`` on."""
        if step < self.start:
            return self.start_progress
        return min(1.0, self.start_progress + (1 - self.start_progress) * (step - self.start)
                   / max(1, self.total - self.start))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * self.progress(step)))

    def retarget(self, step: int, total: int) -> None:
        """Reach the floor at ``total`` (> ``step``) instead, continuing from the rate of ``step``."""
        if step > self.start:
            self.start, self.start_progress = step, self.progress(step)
        self.total = total


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, lr: float,
                  min_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``total_steps``
    (``scheduler.lr_lambdas[0]`` is the :class:`WarmupCosine`, for re-planning the end)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr / lr))
