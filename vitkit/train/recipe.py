"""Choosing a from-scratch recipe for a data set and a time budget, so ``vitkit train --data PATH`` needs no
other flag.

ViTs trained from scratch on small data live or die by their recipe, and the right model depends on how many
epochs of it the budget buys: a model too large for the time underfits, one too small wastes it. So the
planner

1. profiles the data (``vitkit.data.profile``: images or video, items, classes, typical short side) and picks
   its row of :data:`RULES` (by task and number of training items);
2. measures one short probe per candidate model of that row, cheapest first (a few optimiser steps on random
   inputs of the candidate's shape, in the precision ``--precision auto`` picks), and keeps the largest
   candidate that still trains the row's ``epochs`` inside the budget;
3. fills every training setting from the row; anything the user gave on the command line wins.

The epochs themselves are then planned by ``budget.py`` from the real run's pace (``--time-limit`` or the row's
default budget), so the learning-rate schedule ends annealed when the time does. The rows were derived from
the runs recorded in docs/training.md ("Planned recipes"); rows marked "not yet run here" extrapolate from
them and from the papers named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..data.profile import DataProfile

PROBE_STEPS = 2
"""Timed optimiser steps per candidate (after one untimed step)."""
FIT_MARGIN = 0.10
"""Share of the budget the choice leaves for the loader, evaluation and checkpoints the probe does not see."""
NATIVE_SLACK = 1.15
"""A candidate may upscale the typical image by at most this factor (more costs time and adds nothing)."""


@dataclass(frozen=True)
class Candidate:
    """A model at an input size, as TrainConfig values."""

    label: str
    model: str
    model_args: dict[str, Any]
    img_size: int
    frames: int | None = None

    def values(self) -> dict[str, Any]:
        found = {"model": self.model, "model_args": dict(self.model_args), "img_size": self.img_size}
        return found if self.frames is None else {**found, "frames": self.frames}


@dataclass(frozen=True)
class Rule:
    """One row of the table: a kind of data set and the recipe that suits it."""

    name: str
    task: str
    max_items: float
    epochs: int
    """Epochs the row's models want from scratch: the largest candidate that fits them in the budget wins."""
    default_minutes: float
    """The budget when ``--time-limit`` is not given."""
    candidates: tuple[Candidate, ...]
    """Cheapest first."""
    settings: dict[str, Any] = field(default_factory=dict)
    evidence: str = ""


def _vit(depth: int, size: int, stem: str = "conv", name: str = "vit_ti16", **extra: Any) -> Candidate:
    label = f"{name} ({stem} stem, {depth} blocks) at {size} px"
    return Candidate(label, name, {"stem": stem, "depth": depth, **extra}, size)


def _vivit(depth: int, temporal: int, size: int, frames: int) -> Candidate:
    args = {"depth": depth, "temporal_depth": temporal, "tubelet_size": [2, 16, 16]}
    return Candidate(f"vivit_m2_ti ({depth}+{temporal} blocks) at {frames} x {size} px", "vivit_m2_ti", args,
                     size, frames)


# The rules. Change them only with runs recorded in docs/training.md ("Planned recipes"), chosen on splits of
# the training data, never by comparing runs on a val set.
RULES: tuple[Rule, ...] = (
    Rule("small image set", "image", 10_000, epochs=150, default_minutes=30,
         candidates=(_vit(6, 96), _vit(9, 128), _vit(12, 160), _vit(12, 224, name="vit_s16")),
         settings=dict(batch_size=32, lr=4e-4, warmup_epochs=3.0, weight_decay=0.05, augment="randaugment",
                       crop_scale=(0.5, 1.0), label_smoothing=0.1, ema=0.999, mixup=0.0, cutmix=0.0,
                       drop_path=0.05),
         evidence="cats_vs_dogs: 9 blocks, conv stem, 128 px, 100 epochs 81.1%; crop (0.35, 1) and drop-path 0.1 "
                  "underfit (74.7%); imagenette_224 with the same recipe 60.1% after 16 epochs; on a held-out "
                  "fifth of cats_vs_dogs/train, 20 min: 9 blocks at 128 px (79 epochs) 76.0% beat 12 at 160 px "
                  "(50 epochs) 73.3%, so 100 epochs were too few for the larger models"),
    Rule("medium image set", "image", 200_000, epochs=60, default_minutes=240,
         candidates=(_vit(9, 128), _vit(12, 160), _vit(12, 224, name="vit_s16"), _vit(12, 224, "patch", "vit_b16")),
         settings=dict(batch_size=64, lr=8e-4, warmup_epochs=5.0, weight_decay=0.05, augment="randaugment",
                       crop_scale=(0.25, 1.0), label_smoothing=0.1, ema=0.9998, mixup=0.0, cutmix=0.0,
                       drop_path=0.1),
         evidence="the small row's recipe with the lr scaled to the batch, more crop and drop-path as data grows "
                  "(DeiT, Touvron et al. 2021); not yet run here"),
    Rule("large image set", "image", math.inf, epochs=30, default_minutes=24 * 60,
         candidates=(_vit(12, 224, "patch", "vit_s16"), _vit(12, 224, "patch", "vit_b16")),
         settings=dict(batch_size=256, lr=1e-3, warmup_epochs=5.0, weight_decay=0.05, augment="randaugment",
                       crop_scale=(0.08, 1.0), label_smoothing=0.1, ema=0.0, mixup=0.8, cutmix=1.0, drop_path=0.1),
         evidence="DeiT's ImageNet recipe (Touvron et al. 2021; lr 5e-4 x batch / 512 at batch 1024), shortened; "
                  "not yet run here"),
    Rule("small video set", "video", 5_000, epochs=60, default_minutes=30,
         candidates=(_vivit(4, 1, 112, 8), _vivit(6, 2, 112, 8), _vivit(8, 2, 160, 8)),
         settings=dict(batch_size=12, lr=5e-4, warmup_epochs=3.0, weight_decay=0.1, crop_scale=(0.25, 1.0),
                       label_smoothing=0.1, ema=0.0, augment="randaugment", mixup=0.8, cutmix=1.0, drop_path=0.2),
         evidence="ucf101_mini from scratch: ViViT Model 2, 4+1 blocks, 8 x 112 px, 60 epochs 53.7% at the last "
                  "epoch (61.1% best); a 30-min plan of 238 epochs overfit (train 99%), hence mixup 0.8 / cutmix 1.0 "
                  "and RandAugment alike on every frame, as in VideoMAE's UCF101 fine-tuning (Tong et al. 2022), "
                  "at the small image row's strength"),
    Rule("large video set", "video", math.inf, epochs=30, default_minutes=24 * 60,
         candidates=(_vivit(6, 2, 112, 8), _vivit(8, 2, 160, 16), _vivit(12, 4, 224, 16)),
         settings=dict(batch_size=32, lr=5e-4, warmup_epochs=3.0, weight_decay=0.05, crop_scale=(0.25, 1.0),
                       label_smoothing=0.1, ema=0.0, drop_path=0.1),
         evidence="the small row scaled as ViViT's Kinetics recipes (Arnab et al. 2021); not yet run here"),
)


def rule_for(profile: DataProfile) -> Rule:
    """The first row for the data's task whose ``max_items`` covers the training set."""
    return next(r for r in RULES if r.task == profile.task and profile.items <= r.max_items)


def batch_for(rule: Rule, profile: DataProfile) -> int:
    """The row's batch, at most an eighth of a small training set (several optimiser steps per epoch)."""
    return min(rule.settings["batch_size"], max(8, profile.items // 8))


def candidates_for(rule: Rule, profile: DataProfile) -> list[Candidate]:
    """The row's candidates that do not upscale the typical file much (always at least the cheapest); small
    images (under 64 px) get 4-pixel patches at their own size instead."""
    side = profile.short_side
    if side is not None and side < 64 and profile.task == "image":
        size = max(16, side // 4 * 4)
        return [Candidate(f"vit_ti16 (4 px patches, {d} blocks) at {size} px", "vit_ti16",
                          {"patch_size": 4, "depth": d}, size) for d in (6, 9, 12)]
    if side is None:
        return list(rule.candidates)
    fitting = [c for c in rule.candidates if c.img_size <= side * NATIVE_SLACK]
    return fitting or list(rule.candidates[:1])


@dataclass
class Plan:
    """The chosen TrainConfig values, and one line per choice saying why."""

    values: dict[str, Any]
    reasons: list[str]


def choose(rule: Rule, budget_s: float, epoch_seconds: Callable[[Candidate], float],
           candidates: list[Candidate]) -> tuple[Candidate, str]:
    """The largest candidate whose ``rule.epochs`` epochs (at ``epoch_seconds`` each, measured) fit the budget
    less :data:`FIT_MARGIN`; the cheapest when none does. Stops measuring at the first that does not fit."""
    usable = budget_s * (1 - FIT_MARGIN)
    chosen, fits, tried = candidates[0], 0, []
    for index, candidate in enumerate(candidates):
        seconds = epoch_seconds(candidate)
        epochs = int(usable // seconds)
        tried.append(f"{candidate.label}: {seconds:.1f} s/epoch, {epochs} epochs")
        if epochs < rule.epochs and index > 0:
            break  # keep the previous one, which fits
        chosen, fits = candidate, epochs
        if epochs < rule.epochs:
            break  # even the cheapest does not fit: nothing larger will
    verdict = (f"the largest that trains {rule.epochs} epochs in the budget" if fits >= rule.epochs else
               f"the cheapest, and it fits only ~{fits} of the {rule.epochs} epochs this data wants: give a longer "
               "--time-limit for a better model")
    return chosen, f"model {chosen.label}: {verdict} (measured: {'; '.join(tried)})"


def plan_recipe(profile: DataProfile, given: dict[str, Any], time_limit_min: float | None,
                epoch_seconds: Callable[[Candidate], float] | None) -> Plan:
    """The recipe for ``profile`` (``given``: the options the user set, which the plan never changes).
    ``epoch_seconds`` measures a candidate; None (several processes, or a model given) skips the choice."""
    rule = rule_for(profile)
    reasons = [f"data: {profile.describe()} -> '{rule.name}' ({rule.evidence})"]
    values = {k: v for k, v in rule.settings.items() if k != "drop_path"}
    values.update(task=profile.task, batch_size=batch_for(rule, profile))
    model_args = {"drop_path": rule.settings["drop_path"]}
    budget_min = time_limit_min or rule.default_minutes
    if time_limit_min is None and "epochs" not in given:  # --epochs alone: exactly those epochs, no budget
        values["time_limit"] = rule.default_minutes
        values["epochs"] = 2 * rule.epochs
        reasons.append(f"budget: {rule.default_minutes:g} min, the default for a {rule.name} (at most "
                       f"{2 * rule.epochs} epochs); --time-limit M sets another")
    if model_given(given):
        reasons.append("model: as given on the command line (no candidates probed)")
    else:
        candidates = candidates_for(rule, profile)
        if epoch_seconds is None:
            chosen = candidates[min(1, len(candidates) - 1)]
            reasons.append(f"model {chosen.label}: the row's second candidate (several processes: one probe "
                           "per process could choose differently)")
        else:
            chosen, why = choose(rule, budget_min * 60, epoch_seconds, candidates)
            reasons.append(why)
        values.update(chosen.values())
        model_args.update(chosen.model_args)
    values["model_args"] = model_args
    if given.get("fsdp") and values.get("ema"):
        values["ema"] = 0.0
        reasons.append("no EMA: --fsdp cannot keep an EMA copy of the sharded model yet")
    overridden = given.keys() | given.get("model_args", {}).keys()
    settings = ", ".join(f"{k} {v}" for k, v in rule.settings.items() if k not in overridden)
    reasons.append(f"training: {settings} (the row's; a flag overrides any)")
    return Plan(values, reasons)


def model_given(given: dict[str, Any]) -> bool:
    """Whether the command line fixes the model (then no candidates are probed)."""
    own_args = {k for k in given.get("model_args", {}) if k != "drop_path"}
    return bool({"model", "img_size", "frames", "init"} & given.keys() or own_args)


def in_distributed_run() -> bool:
    from .distributed import launched_world

    return launched_world() > 1


def measure_epoch(profile: DataProfile, batch_size: int, precision: str, device: torch.device,
                  steps: int = PROBE_STEPS) -> Callable[[Candidate], float]:
    """Seconds per epoch of a candidate: a probe of optimiser steps on random inputs of its shape, plus an
    evaluation of a quarter of the training set's size (a typical val split)."""
    from .budget import probe_pace
    from .config import TrainConfig
    from .model_setup import build_model

    steps_per_epoch = math.ceil(profile.items / batch_size)

    def epoch_seconds(candidate: Candidate) -> float:
        sizes = {"num_classes": profile.classes, "image_size": candidate.img_size}
        if candidate.frames is not None:
            sizes["num_frames"] = candidate.frames
        run = TrainConfig(model=candidate.model, model_args=candidate.model_args, precision=precision)
        overrides = {**candidate.model_args, **sizes}
        model = build_model(run, overrides, candidate.frames is not None, device, log=print)  # as the run builds it
        inputs = torch.randn(batch_size, *model.config.input_shape, device=device)
        targets = torch.randint(0, profile.classes, (batch_size,), device=device)
        pace = probe_pace(model, inputs, targets, precision, max(1, profile.items // 4), steps)
        return pace.epoch_s(steps_per_epoch)

    return epoch_seconds


def plan_for_data(data: str, task: str | None, given: dict[str, Any], val_fraction: float = 0.2,
                  seed: int = 0) -> Plan:
    """Profile ``data``, probe the candidates on this machine and plan the recipe (see the module docstring).
    ``task`` None: ``video`` for a folder of videos, else ``image`` (the plan's values say which)."""
    from ..data.profile import guess_task, profile_data
    from ..fast.precision import precision_choice
    from .distributed import single_process_device

    profile = profile_data(data, task or guess_task(data), val_fraction, seed)
    device = single_process_device()  # several processes probe nothing (see plan_recipe)
    precision, why = (given["precision"], "as given") if given.get("precision", "auto") != "auto" else \
        precision_choice(device)
    measure = None
    if not in_distributed_run() and not model_given(given):
        batch = given.get("batch_size") or batch_for(rule_for(profile), profile)
        measure = measure_epoch(profile, batch, precision, device)
    plan = plan_recipe(profile, given, given.get("time_limit"), measure)
    plan.reasons.insert(1, f"precision {precision} for the probe and the run ({why})")
    return plan
