"""A labelled set of images held as uint8 tensors, decoded once and cached in memory.

The first pass decodes every file in full (this is also how corrupt files are found: they are dropped and
reported, never fatal) and keeps each image with its shorter side resized to ``short_side``, so later epochs
never decode a JPEG again. Training crops and evaluation center crops are cut from these cached images.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from . import augment
from .augment import Box
from .decode import BadImage, load_rgb_array

MAX_ASPECT = 4  # a 10000x50 strip is cut to at most 4:1 around its center, so it cannot blow up memory
RESIZE_MODES = ("bicubic", "bilinear")
"""How the shorter side is fitted (antialiased): bicubic unless the checkpoint says otherwise (timm's
``pretrained_cfg['interpolation']``, a transformers processor's ``resample``)."""


@dataclass
class ImageSet:
    """Images (uint8 [3, h, w], shorter side ``short_side``) with integer labels."""

    images: list[torch.Tensor]
    labels: list[int]
    class_names: list[str]
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of each file that could not be used."""

    def __len__(self) -> int:
        return len(self.images)


def central_part(h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the part of an ``h`` x ``w`` image that is used: all of it, or its central
    ``MAX_ASPECT``:1 part when it is more elongated than that."""
    keep = MAX_ASPECT * min(w, h)
    height, width = min(h, keep), min(w, keep)
    return (h - height) // 2, (w - width) // 2, height, width


def fit_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """Resize so the shorter side is ``short_side`` (bicubic, antialiased), cropping extreme aspect ratios.
    Models' inputs go through :func:`fit_tensor`, the same on tensors (faster)."""
    top, left, h, w = central_part(image.size[1], image.size[0])
    if (h, w) != (image.size[1], image.size[0]):
        image = image.crop((left, top, left + w, top + h))
    size = fitted_size(h, w, short_side)[::-1]
    return image if size == (w, h) else image.resize(size, Image.BICUBIC)


def fitted_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    """(height, width) of an ``h`` x ``w`` picture resized to shorter side ``short_side``."""
    scale = short_side / min(w, h)
    return max(1, round(h * scale)), max(1, round(w * scale))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """Pillow RGB -> uint8 tensor [3, H, W]."""
    return _planar(image).contiguous()


def _planar(image: Image.Image) -> torch.Tensor:
    """Pillow RGB -> uint8 [3, H, W] viewing the pixels as Pillow lays them out (channels last in memory)."""
    return _planar_array(np.asarray(image, dtype=np.uint8).copy())


def _planar_array(array: np.ndarray) -> torch.Tensor:
    """A writable uint8 array [H, W, 3] -> a uint8 [3, H, W] view of it (channels last in memory)."""
    return torch.from_numpy(array).permute(2, 0, 1)


def fit_tensor(image: torch.Tensor, short_side: int, interpolation: str = "bicubic") -> torch.Tensor:
    """:func:`fit_short_side` on a uint8 tensor [3, H, W] -> contiguous uint8 [3, h, w]. torch's uint8 bicubic
    antialiased kernel is within 2 levels of Pillow's (0.3% of pixels differ, by 1) and ~3x faster.
    ``interpolation``: one of :data:`RESIZE_MODES`."""
    top, left, h, w = central_part(*image.shape[-2:])
    image = image[:, top : top + h, left : left + w]
    size = fitted_size(h, w, short_side)
    if size == (h, w):
        return image.contiguous()
    return F.interpolate(image[None], size=size, mode=interpolation, antialias=True)[0].contiguous()


def fit_image(image: Image.Image, short_side: int, interpolation: str = "bicubic") -> torch.Tensor:
    """A Pillow RGB image fitted to ``short_side`` (:func:`fit_tensor`): uint8 [3, h, w]."""
    return fit_tensor(_planar(image), short_side, interpolation)


def load_for_model(path: str | Path | bytes, short_side: int, interpolation: str = "bicubic") -> torch.Tensor:
    """Decode one file (or its bytes) and fit it to ``short_side``: uint8 [3, h, w]. Raises BadImage."""
    return fit_tensor(_planar_array(load_rgb_array(path, min_size=short_side)), short_side, interpolation)


def load_resized_crop(path: str | Path | bytes, size: int, short_side: int,
                      draw: Callable[[int, int], Box]) -> torch.Tensor:
    """Decode one file and resample a box of it to ``size`` x ``size`` (bilinear, antialiased): uint8 [3, size, size].

    ``draw(h, w)`` picks the box (top, left, height, width) on the size the picture has once fitted to
    ``short_side`` (:func:`load_for_model`, what the in-memory cache holds), from that size alone; the same part of
    the picture is then cut from the file's own pixels and resampled once. Since the box is known before decoding,
    a large JPEG decodes at the largest reduction that keeps it at least ``size`` pixels a side. Raises BadImage.
    """
    box: list[float] = []  # left, top, right, bottom as fractions of the picture

    def needed(width: int, height: int) -> tuple[int, int]:
        top, left, h, w = central_part(height, width)
        fit_h, fit_w = fitted_size(h, w, short_side)
        crop_top, crop_left, crop_h, crop_w = draw(fit_h, fit_w)
        x0, y0 = left + crop_left * w / fit_w, top + crop_top * h / fit_h
        x1, y1 = x0 + crop_w * w / fit_w, y0 + crop_h * h / fit_h
        box[:] = [x0 / width, y0 / height, x1 / width, y1 / height]
        return math.ceil(size / (box[2] - box[0])), math.ceil(size / (box[3] - box[1]))

    image = _planar_array(load_rgb_array(path, needed=needed))
    height, width = image.shape[-2:]  # maybe reduced
    left, top = min(round(box[0] * width), width - 1), min(round(box[1] * height), height - 1)
    right, bottom = max(left + 1, round(box[2] * width)), max(top + 1, round(box[3] * height))
    return augment.resize(image[:, top:bottom, left:right], (size, size)).contiguous()


def decode_files(paths: list[Path], labels: list[int], class_names: list[str], short_side: int,
                 workers: int = 4, desc: str = "decoding", interpolation: str = "bicubic") -> ImageSet:
    """Decode every file (threads: Pillow releases the GIL while decoding); bad files are skipped and listed."""
    def work(path: Path) -> torch.Tensor | str:
        try:
            return load_for_model(path, short_side, interpolation)
        except BadImage as error:
            return str(error)

    result = ImageSet([], [], class_names)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        decoded = pool.map(work, paths)
        for path, label, item in tqdm(zip(paths, labels, decoded), total=len(paths), desc=desc, unit="img",
                                      leave=False, dynamic_ncols=True, disable=None):
            if isinstance(item, str):
                result.skipped.append((str(path), item))
                continue
            result.images.append(item)
            result.labels.append(label)
            result.paths.append(str(path))
    return result


def from_arrays(images: np.ndarray, labels: np.ndarray, class_names: list[str], short_side: int) -> ImageSet:
    """An ImageSet from in-memory grayscale [N, H, W] or RGB [N, H, W, 3] uint8 arrays."""
    tensors = []
    for array in images:
        image = Image.fromarray(array).convert("RGB")
        tensors.append(fit_image(image, short_side))
    return ImageSet(tensors, [int(x) for x in labels], class_names, [f"#{i}" for i in range(len(tensors))])
