"""What the training loop asks of its data, for the two kinds of input it trains on: images and video clips.

A task turns ``--data`` into train and val sets, says how the model must be shaped for them, builds the
training batch at a position of the run (a pure function of seed, epoch, step and sample position, so resume
and multi-process runs see the same batches), and evaluates a model. The loop in ``loop.py`` is the same for
both tasks.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from torch import nn

from ..data.datasets import load_datasets
from ..data.augment import mix_rows
from ..data.pipeline import Preprocess, mix_draw, sample_seed, train_batch
from ..data.video_preprocess import VideoPreprocess, video_preprocess  # noqa: F401 (VideoPreprocess: re-exported)
from ..errors import VitkitError
from .config import TrainConfig
from .evaluate import evaluate, evaluate_clips


def image_prep(config: TrainConfig, image_size: int) -> Preprocess:
    """The eval preprocessing of a run: resize to ``image_size / crop_pct``, center crop, the run's mean/std."""
    return Preprocess(image_size, round(image_size / config.crop_pct), config.mean, config.std,
                      config.interpolation or "bicubic")


class BaseImageTask:
    """What every image task shares (in memory here, streamed in ``stream_tasks.py``): the preprocessing, the
    model's input size, the set sizes and the unreadable files."""

    kind = "image"
    prep: Preprocess
    class_names: list[str]
    train_set: Any
    val_set: Any

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.train_set), len(self.val_set)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Unreadable files met so far (a streamed task adds those its workers report)."""
        return self.train_set.skipped + self.val_set.skipped

    def describe(self) -> str:
        return f"{self.prep.image_size} px"

    def model_overrides(self) -> dict[str, Any]:
        return {"image_size": self.prep.image_size}

    def preprocess(self) -> dict[str, Any]:
        return self.prep.to_dict()


class ImageTask(BaseImageTask):
    """Image folders (or an embedded image set), center-crop evaluation."""

    cache: Any = None
    """The ``CachePlan`` that ``--cache`` chose (set by :func:`make_task`), for the start line."""

    def __init__(self, config: TrainConfig, image_size: int) -> None:
        self.prep = image_prep(config, image_size)
        self.train_set, self.val_set = load_datasets(config.data, self.prep.short_side, config.val_fraction,
                                                     config.seed, interpolation=self.prep.interpolation)
        self.class_names = self.train_set.class_names
        self.aug = config.augmentation()

    def batch(self, indices: list[int], where: tuple[int, int, int],
              positions: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return train_batch(self.train_set, indices, self.prep, self.aug, len(self.class_names), where, positions)

    def evaluate(self, model: nn.Module, precision: str) -> dict[str, Any]:
        return evaluate(model, self.val_set, self.prep, precision=precision)


class VideoTask:
    """Video folders ``PATH/{train,val}/<class>/*`` (or the embedded moving digits): clips of ``num_frames``
    frames; random frames, crop, flip and ``--augment`` (alike on every frame) in training, the central clip in
    evaluation."""

    kind = "video"

    def __init__(self, config: TrainConfig, image_size: int, num_frames: int) -> None:
        from ..data.video import ClipSampler

        self.mix = (config.mixup, config.cutmix)
        low, high = config.crop_scale  # an area fraction, as for images; the sampler takes a side fraction
        self.sampler = ClipSampler(num_frames, config.frame_sampling, config.frame_stride, image_size,  # type: ignore[arg-type]
                                   config.mean, config.std, (math.sqrt(low), math.sqrt(high)), config.flip,
                                   config.augment, (config.randaugment_ops, config.randaugment_magnitude))
        self.short_side = round(image_size / config.crop_pct)
        self.train_set, self.val_set = self.load_sets(config)
        self.class_names = self.train_set.class_names

    def load_sets(self, config: TrainConfig) -> tuple[Any, Any]:
        """The train and val clip sets (here: decoded into memory up front)."""
        return load_video_sets(config.data, self.sampler, self.short_side, config.seed)

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.train_set), len(self.val_set)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(str(p), r) for p, r in self.train_set.skipped + self.val_set.skipped]

    def describe(self) -> str:
        return f"{self.sampler.num_frames} frames x {self.sampler.size} px"

    def model_overrides(self) -> dict[str, Any]:
        return {"image_size": self.sampler.size, "num_frames": self.sampler.num_frames}

    def preprocess(self) -> dict[str, Any]:
        return video_preprocess(self.sampler, self.short_side)

    def batch(self, indices: list[int], where: tuple[int, int, int],
              positions: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``positions`` (default: all) of the training batch ``indices``; ``where`` is (seed, epoch, step).
        Mixup / CutMix pair each clip with position B-1-p, as for images (the same box in every frame)."""
        wanted = list(range(len(indices)) if positions is None else positions)
        draw = mix_draw(where, *self.mix, self.sampler.size)
        return mix_rows(lambda ps: self.clips(indices, where, ps), wanted, len(indices), draw)

    def clips(self, indices: list[int], where: tuple[int, int, int],
              positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The unmixed training clips and one-hot targets of ``positions`` of the batch ``indices``."""
        clips = [self.train_set.clip_at(indices[p], True, random.Random(sample_seed(*where, p))) for p in positions]
        labels = torch.tensor([self.train_set.labels[indices[p]] for p in positions])
        return torch.stack(clips), nn.functional.one_hot(labels, len(self.class_names)).float()

    def evaluate(self, model: nn.Module, precision: str) -> dict[str, Any]:
        return evaluate_clips(model, self.val_set, precision=precision)


def load_video_sets(data: str, sampler: Any, short_side: int, seed: int = 0) -> tuple[Any, Any]:
    """Train and val clip sets of ``data``: a video folder, or ``moving-digits`` (made from the embedded MNIST)."""
    from pathlib import Path

    from ..data import moving_digits
    from ..data.video_folder import VideoFolder, find_videos

    if data == moving_digits.NAME:
        return (moving_digits.MovingDigits("train", sampler.num_frames, sampler.size),
                moving_digits.MovingDigits("val", sampler.num_frames, sampler.size))
    if not Path(data).exists():
        raise VitkitError(f"--data {data} does not exist; give a folder PATH/{{train,val}}/<class>/<video files> "
                          f"or {moving_digits.NAME!r}")
    names, splits = find_videos(data)
    sets = [VideoFolder(*splits[split], names, sampler, train=split == "train", short_side=short_side)
            for split in ("train", "val")]
    for split, found in zip(("train", "val"), sets):
        if not len(found):
            raise VitkitError(f"no usable videos left in {split} of {data}: " +
                              "; ".join(f"{p}: {r}" for p, r in found.skipped[:3]))
    return sets[0], sets[1]


def make_task(config: TrainConfig, model_config: Any) -> ImageTask | VideoTask:
    """The task of ``config`` for a model of ``model_config`` (an image or a video model config)."""
    is_video_model = hasattr(model_config, "num_frames")
    if config.task == "video" and not is_video_model:
        raise VitkitError(f"--task video needs a video model (e.g. --model vivit_m2_ti), not {config.model}")
    if config.task == "image" and is_video_model:
        raise VitkitError(f"{config.model} is a video model: add --task video (and a folder of videos as --data)")
    size = config.img_size or side_of(model_config.image_size)
    if config.task == "video":
        from .video_stream_tasks import choose_video_task  # decoded in memory, or clip by clip in workers

        return choose_video_task(config, size, config.frames or model_config.num_frames)
    from .feed import choose_task  # shards, or a folder too large for memory: read from disk at each use

    streamed, cache = choose_task(config, size)
    if streamed is not None:
        return streamed
    task = ImageTask(config, size)
    task.cache = cache  # what --cache chose, for the start line
    return task


def side_of(size: int | tuple[int, int]) -> int:
    """The side of a square input size given as an int or a pair."""
    return size if isinstance(size, int) else size[0]
