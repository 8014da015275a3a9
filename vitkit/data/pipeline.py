"""From cached uint8 images to model-ready batches, for training (augmented) and evaluation (center crop).

A training batch is a pure function of (images, indices, seed, epoch, step): each sample's augmentation draws
from its own generator seeded by its position in the batch, so any batch (or any process's shard of it) can be
rebuilt exactly after a restart or with another number of processes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.data import get_worker_info

from ..errors import VitkitError
from . import augment
from .images import RESIZE_MODES, ImageSet


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
        image = augment.random_resized_crop(image, prep.image_size, g, aug.crop_scale).float()
    elif aug.crop == "shift":
        image = augment.random_shift(image.float(), prep.image_size, g, aug.shift_pad)
    else:
        image = augment.center_crop(image, prep.image_size).float()
    if aug.flip and torch.rand((), generator=g).item() < 0.5:
        image = image.flip(-1)
    return augment.apply_policy(image, aug.policy, g, aug.randaugment_ops, aug.randaugment_magnitude)


def train_batch(data: ImageSet, indices: list[int], prep: Preprocess, aug: Augment, num_classes: int,
                where: tuple[int, int, int], positions: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented, normalised images [b, 3, S, S] and soft targets [b, classes] for ``positions`` (default: all)
    of the global batch ``indices``; ``where`` is (seed, epoch, step).

    Mixing pairs position p with position B-1-p of the global batch, so a process that builds a shard also
    builds its partners' images: every shard is exactly the matching rows of the one-process batch.
    """
    targets = torch.nn.functional.one_hot(torch.tensor([data.labels[i] for i in indices]), num_classes).float()

    def rows(ps: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        built = [augment_image(data.images[indices[p]], prep, aug, sample_generator(*where, p)) for p in ps]
        return normalized_stack(built, prep), targets[ps]

    wanted = list(range(len(indices)) if positions is None else positions)
    draw = mix_draw(where, aug.mixup, aug.cutmix, prep.image_size)
    return augment.mix_rows(rows, wanted, len(indices), draw)


def mix_draw(where: tuple[int, int, int], mixup: float, cutmix: float, size: int) -> augment.MixDraw | None:
    """The batch's mixup / cutmix draw for ``size`` px inputs (None when both are off), a pure function of
    ``where`` = (seed, epoch, step): images and video clips draw the same way."""
    return augment.draw_mix(batch_generator(*where), mixup, cutmix, (size, size))


def normalized_stack(images: list[torch.Tensor], prep: Preprocess) -> torch.Tensor:
    """``augment.normalize(torch.stack(images))``, the same numbers, faster: each image is normalised while it is
    in the CPU cache, straight into the batch, which in a loader worker lies in shared memory (as the DataLoader's
    own collation does), so handing it to the training process copies nothing."""
    shape = (len(images), *images[0].shape) if images else (0, 3, prep.image_size, prep.image_size)
    numel = shape[0] * shape[1] * shape[2] * shape[3]
    if get_worker_info() is not None and numel:
        out = torch.empty(0).new(torch.empty(0)._typed_storage()._new_shared(numel)).view(shape)
    else:
        out = torch.empty(shape)
    mean = torch.tensor(prep.mean).view(-1, 1, 1) * 255
    std = torch.tensor(prep.std).view(-1, 1, 1) * 255
    for row, image in zip(out, images):
        torch.sub(image, mean, out=row).div_(std)
    return out
