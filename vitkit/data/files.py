"""A folder decoded on demand, the streaming counterpart of the in-memory :class:`~vitkit.data.images.ImageSet`:
:class:`FileImages` decodes item ``i`` when asked (nothing is held) and :func:`train_batch_from_files` builds a
training batch from it, replacing an unreadable file by the next readable sample of the same batch. What a loader
worker (stream.py) runs for each step of a folder or a shard batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch

from ..errors import VitkitError
from .decode import BadImage
from .images import load_for_model
from .loader_workers import reading
from .pipeline import Augment, Preprocess, augment_file, augment_image, sample_generator, train_batch


T = TypeVar("T")  # a sample: an image, a clip

_found_bad: list[tuple[str, str]] = []  # unreadable files met by this process since the last take_skipped()


def found_bad(path: str, reason: str) -> None:
    """Record an unreadable file met by this process (handed back with its batch by :func:`take_skipped`)."""
    _found_bad.append((path, reason))


def take_skipped() -> list[tuple[str, str]]:
    """(path, reason) of the unreadable files this process met since the last call."""
    found = list(_found_bad)
    _found_bad.clear()
    return found


class FileImages:
    """``images[i]`` decodes file ``i`` (shorter side ``short_side``) when asked; nothing is kept."""

    def __init__(self, paths: Sequence[str | Path], short_side: int, interpolation: str = "bicubic") -> None:
        self.paths = [str(p) for p in paths]
        self.short_side = short_side
        self.interpolation = interpolation
        """How the shorter side is fitted (``data.images.RESIZE_MODES``)."""

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        """uint8 [3, h, w]; raises BadImage (after recording it for :func:`take_skipped`)."""
        return self._recorded(index, lambda source: load_for_model(source, self.short_side, self.interpolation))

    def augmented(self, index: int, prep: Preprocess, aug: Augment, g: torch.Generator) -> torch.Tensor:
        """Item ``index`` as a training sample: a random-resized crop cut straight from its file
        (:func:`~vitkit.data.pipeline.augment_file`), other crops from the fitted image, as from the cache
        (:func:`~vitkit.data.pipeline.augment_image`); raises BadImage (recorded)."""
        if aug.crop == "rrc":
            return self._recorded(index, lambda source: augment_file(source, prep, aug, g))
        return augment_image(self[index], prep, aug, g)

    def source(self, index: int) -> str | bytes:
        """What to decode for item ``index`` (a path; the bytes, for images read from a shard)."""
        return self.paths[index]

    def _recorded(self, index: int, decode: Callable[[str | bytes], torch.Tensor]) -> torch.Tensor:
        reading(self.paths[index])
        try:
            return decode(self.source(index))
        except BadImage as error:
            found_bad(self.paths[index], str(error))
            raise


@dataclass
class StreamedSet:
    """A labelled folder (or a shard batch) read at each use: ``files`` decodes item ``i`` when asked
    (:class:`FileImages`, or ``video_stream.FileVideos``) and has their ``paths``."""

    files: Any
    labels: list[int]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Unreadable files found so far (they are met while training, not up front)."""

    @property
    def paths(self) -> list[str]:
        return self.files.paths

    def __len__(self) -> int:
        return len(self.labels)


class StreamedImageSet(StreamedSet):
    """A labelled image folder read from disk at each use; the counterpart of ``ImageSet``."""

    @property
    def images(self) -> FileImages:
        return self.files


def train_batch_from_files(data: StreamedImageSet, indices: list[int], prep: Preprocess, aug: Augment,
                           num_classes: int, where: tuple[int, int, int],
                           positions: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``pipeline.train_batch`` on files decoded now, each sample going into the batch before the next is made
    (``FileImages.augmented``, with the generator of its position). An unreadable file at position p is replaced by
    the next readable position of the same global batch (p+1, p+2, ... cyclically): still a pure function of the
    batch, whichever process or worker builds it. Unreadable files are recorded for :func:`take_skipped`."""
    unreadable: set[int] = set()

    def sample(p: int) -> tuple[torch.Tensor, int]:
        def build(index: int) -> torch.Tensor:
            return data.images.augmented(index, prep, aug, sample_generator(*where, p))

        return build_or_replace(indices, p, build, unreadable, BadImage, where, data.paths)

    return train_batch(data, indices, prep, aug, num_classes, where, positions, sample)  # type: ignore[arg-type]


def build_or_replace(indices: list[int], p: int, build: Callable[[int], T], unusable: set[int],
                     errors: type[Exception], where: tuple[int, int, int], paths: Sequence[str]) -> tuple[T, int]:
    """Position ``p``'s sample of a global batch of ``indices``, ``build(index)``: from its own item, else from the
    next one (p+1, p+2, ... cyclically) that builds. Items that raise ``errors`` join ``unusable`` and are not tried
    again. Returns the sample and the index it was built from; a batch of unusable items -> VitkitError."""
    size = len(indices)
    for q in range(p, p + size):
        index = indices[q % size]
        if index in unusable:
            continue
        try:
            return build(index), index
        except errors:
            unusable.add(index)
    raise VitkitError(f"no file of training batch {where[2] + 1} (epoch {where[1] + 1}) is readable, e.g. "
                      f"{paths[indices[p]]}; check the data folder")
