"""From cached uint8 images (or, for random-resized crops, straight from files) to model-ready batches, for
training (augmented) and evaluation (center crop).

A training batch is a pure function of (images, indices, seed, epoch, step): each sample's augmentation draws
from its own generator seeded by its position in the batch, so any batch (or any process's shard of it) can be
rebuilt exactly after a restart or with another number of processes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch.utils.data import get_worker_info

from ..errors import VitkitError
from . import augment
from .images import RESIZE_MODES, ImageSet, load_resized_crop


DEFAULT_CROP_PCT = 0.875  # timm's evaluation crop: the shorter side resized to size / 0.875, then center-cropped

@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input; saved with every model so eval and predict do the same."""

    image_size: int
    short_side: int
    """Images are cached with this shorter side; eval center-crops ``image_size`` from them."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    """How the shorter side is resized (antialiased): ``bicubic`` or ``bilinear``, as the checkpoint says."""

    def __post_init__(self) -> None:
        if self.interpolation not in RESIZE_MODES:
            raise VitkitError(f"the preprocess interpolation must be one of {', '.join(RESIZE_MODES)}, got "
                              f"{self.interpolation!r}; fix the model's config.json or pass --interpolation")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocess":
        """From a saved ``preprocess`` entry (folders written before ``interpolation`` was recorded: bicubic)."""
        return cls(int(data["image_size"]), int(data["short_side"]), tuple(data["mean"]), tuple(data["std"]),
                   data.get("interpolation", "bicubic"))


@dataclass(frozen=True)
class Augment:
    """The training augmentation switches (see ``TrainConfig`` for what each means)."""

    crop: str = "rrc"
    crop_scale: tuple[float, float] = (0.25, 1.0)
    shift_pad: int = 2
    flip: bool = True
    policy: str = "trivial"
    mixup: float = 0.0
    cutmix: float = 0.0
    randaugment_magnitude: int = 9
    randaugment_ops: int = 2


def eval_batch(images: list[torch.Tensor], prep: Preprocess) -> torch.Tensor:
    """Center crops, normalised: float [B, 3, S, S]."""
    crops = [augment.center_crop(image.float(), prep.image_size) for image in images]
    return augment.normalize(torch.stack(crops), prep.mean, prep.std)


def batch_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The generator of a batch-level draw (mixup / cutmix), a pure function of where the batch is in the run."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)


def sample_seed(seed: int, epoch: int, step: int, position: int) -> int:
    """The seed of one sample's augmentation: it depends on the sample's position in the global batch,
    never on which process builds it, so N processes see the same batch as one."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_000_003 + position + 1


def sample_generator(seed: int, epoch: int, step: int, position: int) -> torch.Generator:
    """A generator seeded with :func:`sample_seed`."""
    return torch.Generator().manual_seed(sample_seed(seed, epoch, step, position))


def augment_image(image: torch.Tensor, prep: Preprocess, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """One cached uint8 image -> an augmented float image [3, S, S] in 0..255. The crop is resampled in uint8
    (as torchvision does with uint8 images: the fast kernel, and only the crop is converted to float)."""
    if aug.crop == "rrc":
        image = augment.random_resized_crop(image, prep.image_size, g, aug.crop_scale)
    elif aug.crop == "shift":
        image = augment.random_shift(image.float(), prep.image_size, g, aug.shift_pad)
    else:
        image = augment.center_crop(image, prep.image_size)
    return flip_and_policy(image, aug, g)


def augment_file(source: str | Path | bytes, prep: Preprocess, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """:func:`augment_image` for a file that is not cached, with ``aug.crop == "rrc"``: the same draws cut the
    same part of the picture as from its cached copy, but resample it once, from the decoded pixels (as timm and
    torchvision do; a large JPEG decodes at the reduction the crop allows), instead of from a copy already
    resized to ``short_side``. So a streamed sample differs from its cached twin only by resampling. Raises
    BadImage."""
    def draw(h: int, w: int) -> augment.Box:
        return augment.random_crop_box(h, w, g, aug.crop_scale)

    return flip_and_policy(load_resized_crop(source, prep.image_size, prep.short_side, draw), aug, g)


def flip_and_policy(image: torch.Tensor, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """What follows the crop (uint8 or float): a horizontal flip half the time, then ``--augment``'s policy, in
    float (the flip comes first: on uint8 pixels it moves a quarter of the bytes)."""
    if aug.flip and torch.rand((), generator=g).item() < 0.5:
        image = image.flip(-1)
    return augment.apply_policy(image.float(), aug.policy, g, aug.randaugment_ops, aug.randaugment_magnitude)


Sample = Callable[[int], tuple[torch.Tensor, int]]
"""Position p of a global batch -> its augmented image (0..255, not normalised) and the index it was made from."""


def train_batch(data: ImageSet, indices: list[int], prep: Preprocess, aug: Augment, num_classes: int,
                where: tuple[int, int, int], positions: range | None = None,
                sample: Sample | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented, normalised images [b, 3, S, S] and soft targets [b, classes] for ``positions`` (default: all)
    of the global batch ``indices``; ``where`` is (seed, epoch, step). ``sample``, when given, builds each
    position's image elsewhere (from files, where an unreadable file is replaced by another: see files.py).

    Mixing pairs position p with position B-1-p of the global batch, so a process that builds a shard also
    builds its partners' images: every shard is exactly the matching rows of the one-process batch.
    """
    def cached_sample(p: int) -> tuple[torch.Tensor, int]:
        return augment_image(data.images[indices[p]], prep, aug, sample_generator(*where, p)), indices[p]

    def rows(ps: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        sources: list[int] = []

        def images() -> Iterator[torch.Tensor]:
            for p in ps:
                image, index = (sample or cached_sample)(p)
                sources.append(index)
                yield image

        inputs = normalized_stack(images(), prep, len(ps))
        labels = torch.tensor([data.labels[i] for i in sources], dtype=torch.long)
        return inputs, torch.nn.functional.one_hot(labels, num_classes).float()

    wanted = list(range(len(indices)) if positions is None else positions)
    draw = mix_draw(where, aug.mixup, aug.cutmix, prep.image_size)
    return augment.mix_rows(rows, wanted, len(indices), draw)


def mix_draw(where: tuple[int, int, int], mixup: float, cutmix: float, size: int) -> augment.MixDraw | None:
    """The batch's mixup / cutmix draw for ``size`` px inputs (None when both are off), a pure function of
    ``where`` = (seed, epoch, step): images and video clips draw the same way."""
    return augment.draw_mix(batch_generator(*where), mixup, cutmix, (size, size))


def normalized_stack(images: Iterable[torch.Tensor], prep: Preprocess, count: int) -> torch.Tensor:
    """``augment.normalize(torch.stack(list(images)))`` for ``count`` images, the same numbers, faster: each image
    is normalised as soon as it is made, while it is in the CPU cache, straight into the batch, which in a loader
    worker lies in shared memory (as the DataLoader's own collation does), so handing it to the training process
    copies nothing. Taken one at a time, the images never pile up: the next one is built in the memory of the
    last (a list of 64 would be ~40 MB of fresh pages per batch, ~10% of the loader's time on 2 cores)."""
    shape = (count, 3, prep.image_size, prep.image_size)
    mean = torch.tensor(prep.mean).view(-1, 1, 1) * 255
    std = torch.tensor(prep.std).view(-1, 1, 1) * 255
    out = None
    for i, image in enumerate(images):
        if out is None:
            shape = (count, *image.shape)
            out = _shared(shape) if get_worker_info() is not None else torch.empty(shape)
        torch.sub(image, mean, out=out[i]).div_(std)
    return torch.empty(shape) if out is None else out


def _shared(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float tensor in shared memory."""
    numel = math.prod(shape)
    return torch.empty(0).new(torch.empty(0)._typed_storage()._new_shared(numel)).view(shape)
