"""``--time-limit``: plan the run so that its learning-rate schedule ends annealed when the budget ends.

Before a new run starts, a short probe times a few optimiser steps (forward, backward, AdamW) on a copy of the
model with the run's first batch and precision, and one forward pass for the cost of evaluation. The plan is the
number of whole epochs whose steps, evaluations and checkpoints fit in the budget less a safety margin and one
final evaluation; the cosine schedule ends at ``min_lr`` at the last step of the last planned epoch.

After every epoch the plan is checked against the measured pace (steps, data waits included, evaluation and
checkpoint; the mean over this process's epochs but its first, whose start-up costs do not recur); when a
different number of epochs fits, the schedule's end moves (:meth:`WarmupCosine.retarget`: the rate stays
continuous and still reaches the floor at the new end). The end is never before the first epoch end after the
warmup. ``epochs`` of the config is an upper bound (the command line lifts it to ``EPOCH_CAP`` when
``--time-limit`` is given without ``--epochs``). The budget counts the time of training, evaluation and
checkpoints, across resumes (the time used is saved in each checkpoint); loading the data and the probe come
before it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .evaluate import autocast
from .optim import WarmupCosine, make_optimizer

now = time.monotonic
"""The budget's clock (tests replace it)."""
MARGIN = 0.03
"""Share of the budget left unplanned, for the pace's noise."""
PROBE_STEPS = 3
"""Timed optimiser steps of the probe (after one untimed step)."""
EPOCH_CAP = 1000
"""The most epochs a budget may plan when ``--epochs`` is not given."""


@dataclass(frozen=True)
class Pace:
    """Seconds per optimiser step, and per epoch outside the steps (evaluation, checkpoint, logs)."""

    step_s: float
    epoch_extra_s: float

    def epoch_s(self, steps_per_epoch: int) -> float:
        return steps_per_epoch * self.step_s + self.epoch_extra_s


def epochs_in_budget(budget_s: float, used_s: float, done: int, steps_per_epoch: int, pace: Pace, cap: int,
                     earliest: int = 1, margin: float = MARGIN) -> int:
    """Epochs in all (``done`` of them already trained, ``used_s`` spent) that fit in ``budget_s`` less the
    margin and one final evaluation; at least ``earliest`` and ``done + 1``, at most ``cap``."""
    left = budget_s * (1 - margin) - used_s - pace.epoch_extra_s
    more = math.floor(left / max(pace.epoch_s(steps_per_epoch), 1e-9)) if left > 0 else 0
    return min(cap, max(done + more, done + 1, earliest))


def planned_warmup(warmup_epochs: float, steps_per_epoch: int, total: int) -> int:
    """``--warmup-epochs`` in steps, at most a fifth of the planned steps (a short budget mostly anneals)."""
    return max(1, min(round(warmup_epochs * steps_per_epoch), total // 5))


def first_end_after_warmup(warmup: int, steps_per_epoch: int) -> int:
    """The epochs up to the first epoch end after the warmup: the earliest end a re-plan may choose."""
    return warmup // steps_per_epoch + 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_pace(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, precision: str, val_size: int,
               steps: int = PROBE_STEPS) -> Pace:
    """Time ``steps`` optimiser steps on a copy of ``model`` (the run's model, RNG and weights are untouched)
    and a forward pass; the evaluation estimate is that forward pass per sample times ``val_size``."""
    device = images.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        twin = copy.deepcopy(model).train()
        optimizer = make_optimizer(twin, 1e-6, 0.0)
        times = []
        for _ in range(steps + 1):  # the first step warms caches and kernels up: not timed
            begun = now()
            with autocast(precision, device):
                logits = twin(images)
            F.cross_entropy(logits.float(), targets).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            times.append(now() - begun)
        begun = now()
        twin.eval()
        with torch.no_grad(), autocast(precision, device):
            twin(images)
        _sync(device)
        forward_s = now() - begun
    return Pace(sum(times[1:]) / steps, forward_s / len(images) * val_size)


class Budget:
    """The plan of a run with a time limit; the trainer asks it after every epoch whether the end moves."""

    def __init__(self, budget_s: float, steps_per_epoch: int, cap: int, used_s: float = 0.0) -> None:
        self.budget_s, self.steps_per_epoch, self.cap = budget_s, steps_per_epoch, cap
        self.used_before, self.started = used_s, now()
        self.pace: Pace | None = None
        self.paces: list[Pace] = []  # of this process's epochs

    def used(self) -> float:
        """Seconds of the budget spent, earlier processes of the run included."""
        return self.used_before + now() - self.started

    def first_plan(self, pace: Pace, warmup_epochs: float, floor: float) -> WarmupCosine:
        """The schedule of a new run at ``pace``."""
        self.pace = pace
        epochs = epochs_in_budget(self.budget_s, self.used_before, 0, self.steps_per_epoch, pace, self.cap)
        total = epochs * self.steps_per_epoch
        return WarmupCosine(total, planned_warmup(warmup_epochs, self.steps_per_epoch, total), floor)

    def replan(self, schedule: WarmupCosine, done: int, pace: Pace) -> str | None:
        """After epoch ``done`` at ``pace``: move the schedule's end if another number of epochs fits; says
        what changed (None if nothing did). The pace planned with is the mean of this process's epochs but its
        first, which carries the start-up (loader workers, caches, compilation): that one re-plans nothing."""
        self.paces.append(pace)
        planned, later = schedule.total // self.steps_per_epoch, self.paces[1:]
        if done >= planned or not later:
            return None
        self.pace = pace = Pace(sum(p.step_s for p in later) / len(later),
                                sum(p.epoch_extra_s for p in later) / len(later))
        earliest = first_end_after_warmup(schedule.warmup, self.steps_per_epoch)
        epochs = epochs_in_budget(self.budget_s, self.used(), done, self.steps_per_epoch, pace, self.cap, earliest)
        if epochs == planned:
            return None
        schedule.retarget(done * self.steps_per_epoch, epochs * self.steps_per_epoch)
        return (f"plan: {epochs} epochs instead of {planned} (an epoch takes "
                f"{pace.epoch_s(self.steps_per_epoch):.1f} s at {1000 * pace.step_s:.0f} ms/step; {self.used() / 60:.2f} of {self.budget_s / 60:g} min used)")

    def done_text(self, epochs: int, last_lr: float, min_lr: float) -> str:
        """The line after a planned run: the minutes used and the last learning rate (the schedule's floor)."""
        return (f"time limit plan done: {epochs} epochs in {self.used() / 60:.2f} of {self.budget_s / 60:g} min, "
                f"final lr {last_lr:.3e} (--min-lr {min_lr:g})")


def describe(schedule: WarmupCosine, steps_per_epoch: int, pace: Pace | None, precision: str, lr: float,
             min_lr: float, budget_s: float | None = None) -> str:
    """One line: epochs, steps, warmup, the expected minutes and the pace they come from."""
    epochs = schedule.total // steps_per_epoch
    text = (f"plan: {epochs} epochs x {steps_per_epoch} steps = {schedule.total} steps, warmup {schedule.warmup}, "
            f"lr {lr:g} -> {min_lr:g} at step {schedule.total}")
    if pace is not None:
        minutes = (epochs * pace.epoch_s(steps_per_epoch) + pace.epoch_extra_s) / 60
        text += (f"; expected {minutes:.2f}{f' of {budget_s / 60:g}' if budget_s else ''} min at "
                 f"{1000 * pace.step_s:.3g} ms/step ({precision}, measured) + {pace.epoch_extra_s:.3g} s/epoch "
                 "for evaluation and checkpoint")
    return text


def state(budget: Budget | None) -> dict[str, Any]:
    """What a checkpoint keeps of the budget: the seconds used (the schedule is in the scheduler's state)."""
    return {} if budget is None else {"budget_used_s": budget.used()}
