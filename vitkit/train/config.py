"""Every setting of a training run, as one dataclass saved in the run's config.json (so ``--resume`` needs
nothing else)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..data.pipeline import Augment
from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TrainConfig:
    """Defaults are a sound from-scratch recipe for small image folders; see docs/training.md."""

    data: str = "mnist-5k"
    task: str = "image"
    """``image`` (image folders, ViT) or ``video`` (video folders, ViViT); see tasks.py."""
    model: str = "vit_ti16"
    model_args: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model config, e.g. {"depth": 6}."""
    init: str | None = None
    """Pretrained weights to start from (a run folder or any source ``vitkit.load`` reads)."""
    out: str = "runs/run"
    epochs: int = 30
    batch_size: int = 64
    accum_steps: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    clip_grad: float = 1.0
    label_smoothing: float = 0.1
    precision: str = "auto"
    """``bf16`` (autocast), ``fp32``, or ``auto``: bf16 where the device computes it faster than fp32 (a bf16
    GPU; a CPU with native bf16 where a cached probe measured it faster, ``vitkit.fast.probe``), else fp32."""
    img_size: int | None = None
    """Training resolution; None uses the model's own."""
    crop: str = Augment.crop
    """``rrc`` random resized crop, ``shift`` pad-and-crop (small digits), ``center`` none."""
    crop_scale: tuple[float, float] = Augment.crop_scale
    shift_pad: int = Augment.shift_pad
    flip: bool = Augment.flip
    augment: str = Augment.policy
    """``trivial`` (TrivialAugment-Wide), ``randaugment`` or ``none``; a video clip gets one draw, applied alike to
    every frame."""
    randaugment_magnitude: int = Augment.randaugment_magnitude
    """RandAugment's strength M on the paper's 0..30 scale (timm's ``rand-m9``)."""
    randaugment_ops: int = Augment.randaugment_ops
    """RandAugment's number N of operations per image (timm's ``rand-n2``)."""
    mixup: float = Augment.mixup
    cutmix: float = Augment.cutmix
    frames: int | None = None
    """Video: frames per clip (default: the model's ``num_frames``)."""
    frame_sampling: str = "uniform"
    """Video: ``uniform`` (one frame per equal segment of the video) or ``strided`` (``frame_stride`` apart)."""
    frame_stride: int = 2
    inflate: str = "central_frame"
    """Video with ``init`` from an image ViT: how its patch kernel becomes a tubelet kernel (or ``filter_average``)."""
    ema: float = 0.0
    """EMA decay of the weights (e.g. 0.999); 0 turns it off."""
    compile: bool = False
    grad_checkpointing: bool = False
    seed: int = 0
    workers: int | None = None
    """Loader worker processes per training process (None: the cores left after one per training process)."""
    cache: str = "auto"
    """Image folders: ``ram`` decodes everything once into memory, ``none`` reads the files at every use,
    ``auto`` caches when the estimated decoded size fits 1/4 of the available memory (see data/cache.py)."""
    val_data: str | None = None
    """Shards: the val shards (default: the val split of a ``vitkit shard`` folder given as ``data``)."""
    val_fraction: float = 0.2
    crop_pct: float | None = None
    """Evaluation: resize the shorter side to img_size / crop_pct, then center-crop img_size. None: the ``init``
    checkpoint's (timm's ``crop_pct``, ...), else data.pipeline.DEFAULT_CROP_PCT; resolved when the run starts (normalisation.py)."""
    interpolation: str | None = None
    """How eval resizes the shorter side (antialiased): ``bicubic`` or ``bilinear``. None: the ``init``
    checkpoint's (timm's ``interpolation``, a transformers processor's ``resample``), else bicubic."""
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    """Input normalisation per channel. None (either): the ``init`` checkpoint's, else ImageNet's
    (IMAGENET_MEAN / IMAGENET_STD); the run resolves it when it starts and saves the values (normalisation.py)."""
    time_limit: float | None = None
    """Minutes for the run: a measured plan picks the epochs that fit (``epochs`` is the most) and ends the
    cosine schedule at ``min_lr`` when the time ends (see budget.py)."""
    save_every: int = 0
    """Also checkpoint every this many optimiser steps inside an epoch (0: only at epoch ends)."""
    max_bad_steps: int = 10
    """Steps with non-finite loss or gradients to skip (not applied) before the run stops."""
    fsdp: bool = False
    """Under torchrun, shard parameters, gradients and optimiser state (FSDP2) instead of replicating (DDP)."""
    plan: list[str] = field(default_factory=list)
    """Why the recipe planner chose what it did, one line per choice (train/recipe.py); printed at the start."""

    def __post_init__(self) -> None:
        self.crop_scale = tuple(self.crop_scale)  # type: ignore[assignment]
        self.mean = None if self.mean is None else tuple(self.mean)  # type: ignore[assignment]
        self.std = None if self.std is None else tuple(self.std)  # type: ignore[assignment]
        checks = [
            (self.epochs > 0, f"--epochs must be positive, got {self.epochs}"),
            (self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}"),
            (self.accum_steps > 0, f"--accum-steps must be positive, got {self.accum_steps}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.task in ("image", "video"), f"--task must be image or video, got {self.task!r}"),
            (self.frames is None or self.frames > 0, f"--frames must be positive, got {self.frames}"),
            (self.frame_sampling in ("uniform", "strided"),
             f"--frame-sampling must be uniform or strided, got {self.frame_sampling!r}"),
            (self.frame_stride > 0, f"--frame-stride must be positive, got {self.frame_stride}"),
            (self.inflate in ("central_frame", "filter_average"),
             f"--inflate must be central_frame or filter_average, got {self.inflate!r}"),
            (self.precision in ("auto", "bf16", "fp32"),
             f"--precision must be auto, bf16 or fp32, got {self.precision!r}"),
            (self.crop in ("rrc", "shift", "center"), f"--crop must be rrc, shift or center, got {self.crop!r}"),
            (self.augment in ("trivial", "randaugment", "none"),
             f"--augment must be trivial, randaugment or none, got {self.augment!r}"),
            (0 <= self.randaugment_magnitude <= 30,
             f"--randaugment-magnitude must be in 0..30, got {self.randaugment_magnitude}"),
            (self.randaugment_ops > 0, f"--randaugment-ops must be positive, got {self.randaugment_ops}"),
            (0 <= self.ema < 1, f"--ema must be in [0, 1), got {self.ema}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix must be >= 0"),
            (0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, f"--crop-scale must be 0 < a <= b <= 1, got {self.crop_scale}"),
            (self.img_size is None or self.img_size > 0, f"--img-size must be positive, got {self.img_size}"),
            (self.workers is None or self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.cache in ("auto", "ram", "none"), f"--cache must be auto, ram or none, got {self.cache!r}"),
            (self.save_every >= 0, f"--save-every must be >= 0, got {self.save_every}"),
            (self.max_bad_steps >= 0, f"--max-bad-steps must be >= 0, got {self.max_bad_steps}"),
            (self.time_limit is None or self.time_limit > 0, f"--time-limit must be positive, got {self.time_limit}"),
            (self.min_lr >= 0, f"--min-lr must be >= 0, got {self.min_lr}"),
            (self.weight_decay >= 0 and self.warmup_epochs >= 0 and self.clip_grad >= 0,
             "--weight-decay, --warmup-epochs and --clip-grad must be >= 0"),
            (self.crop_pct is None or 0 < self.crop_pct <= 1, f"--crop-pct must be in (0, 1], got {self.crop_pct}"),
            (self.interpolation in (None, "bicubic", "bilinear"),
             f"--interpolation must be bicubic or bilinear, got {self.interpolation!r}"),
            (0 < self.val_fraction < 1, f"--val-fraction must be between 0 and 1, got {self.val_fraction}"),
            (self.mean is None or len(self.mean) == 3, f"--mean needs 3 values (R G B), got {self.mean}"),
            (self.std is None or (len(self.std) == 3 and all(s > 0 for s in self.std)),
             f"--std needs 3 positive values (R G B), got {self.std}"),
        ]
        for name, value in self._numbers():
            if not math.isfinite(value):  # nan / inf pass every comparison above or poison training later
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def _numbers(self) -> list[tuple[str, float]]:
        found = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            found += [(f.name, float(v)) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return found

    def augmentation(self) -> Augment:
        """The training augmentation these settings describe (its defaults are Augment's, written once)."""
        return Augment(self.crop, self.crop_scale, self.shift_pad, self.flip, self.augment, self.mixup, self.cutmix,
                       self.randaugment_magnitude, self.randaugment_ops)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
