"""From cached uint8 images to model-ready batches, for training (augmented) and evaluation (center crop).

A training batch is a pure function of (images, indices, generator): the trainer seeds the generator from
(seed, epoch, step), so any batch can be rebuilt exactly after a restart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from . import augment
from .images import ImageSet


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input; saved with every model so eval and predict do the same."""

    image_size: int
    short_side: int
    """Images are cached with this shorter side; eval center-crops ``image_size`` from them."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocess":
        return cls(int(data["image_size"]), int(data["short_side"]), tuple(data["mean"]), tuple(data["std"]))


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


def eval_batch(images: list[torch.Tensor], prep: Preprocess) -> torch.Tensor:
    """Center crops, normalised: float [B, 3, S, S]."""
    crops = [augment.center_crop(image.float(), prep.image_size) for image in images]
    return augment.normalize(torch.stack(crops), prep.mean, prep.std)


def train_batch(data: ImageSet, indices: list[int], prep: Preprocess, aug: Augment, num_classes: int,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented, normalised images [B, 3, S, S] and soft targets [B, classes]."""
    out = []
    for i in indices:
        image = data.images[i].float()
        if aug.crop == "rrc":
            image = augment.random_resized_crop(image, prep.image_size, g, aug.crop_scale)
        elif aug.crop == "shift":
            image = augment.random_shift(image, prep.image_size, g, aug.shift_pad)
        else:
            image = augment.center_crop(image, prep.image_size)
        if aug.flip and torch.rand((), generator=g).item() < 0.5:
            image = image.flip(-1)
        if aug.policy == "trivial":
            image = augment.trivial_augment(image, g)
        elif aug.policy == "randaugment":
            image = augment.rand_augment(image, g)
        out.append(image)
    images = augment.normalize(torch.stack(out), prep.mean, prep.std)
    labels = torch.tensor([data.labels[i] for i in indices])
    targets = torch.nn.functional.one_hot(labels, num_classes).float()
    return augment.mix(images, targets, g, aug.mixup, aug.cutmix)
