"""What a training run's planner needs to know of ``--data`` before anything is decoded: how many training items
and classes, images or video, and the typical short side of a file (read from headers, never decoded)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

SAMPLE_FILES = 32
"""Files whose headers are read for the typical size (evenly spaced over the training split)."""


@dataclass(frozen=True)
class DataProfile:
    """The facts of a data set that choose a recipe (see ``vitkit.train.recipe``)."""

    task: str
    """``image`` or ``video``."""
    items: int
    """Training images or clips."""
    classes: int
    short_side: int | None
    """Median short side in pixels of a sample of training files (None where no header could be read)."""

    def describe(self) -> str:
        kind = "images" if self.task == "image" else "videos"
        side = f", typical short side {self.short_side} px" if self.short_side else ""
        return f"{self.items:,} training {kind} in {self.classes} classes{side}"


def profile_data(data: str, task: str, val_fraction: float = 0.2, seed: int = 0) -> DataProfile:
    """The profile of an image folder, a video folder or a shard set (``--data`` as the trainer reads it)."""
    from .shards import is_shard_spec

    if is_shard_spec(data):
        return _shard_profile(data, task)
    if task == "video":
        from .video_folder import find_videos

        names, splits = find_videos(data)
        paths = splits["train"][0]
        return DataProfile("video", len(paths), len(names), _median_side(paths, _video_size))
    from .folders import find_dataset

    found = find_dataset(data, val_fraction, seed)
    paths = found.train.paths
    return DataProfile("image", len(paths), len(found.class_names), _median_side(paths, _image_size))


def guess_task(data: str) -> str:
    """``video`` for a folder whose first media file is a video, else ``image``: so ``vitkit train --data
    PATH`` needs no ``--task`` for a video folder. Embedded sets and shards keep ``image`` (their recipe or the
    user says otherwise)."""
    import os

    from .decode import is_image_file
    from .video import is_video_file

    root = Path(data)
    if not root.is_dir():
        return "image"
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if is_video_file(path):
                return "video"
            if is_image_file(path):
                return "image"
    return "image"


def _shard_profile(data: str, task: str) -> DataProfile:
    from .shards import open_shards

    shards = open_shards(data, "train")
    return DataProfile(task, shards.size, len(shards.class_names), None)  # sizes would need a read of the tars


def _median_side(paths: list[Path], size_of) -> int | None:
    step = max(1, len(paths) // SAMPLE_FILES)
    sides = [min(size) for size in map(size_of, paths[::step][:SAMPLE_FILES]) if size]
    return round(statistics.median(sides)) if sides else None


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except Exception:  # a corrupt file: the loader reports it later; the profile just skips it
        return None


def _video_size(path: Path) -> tuple[int, int] | None:
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height
    except Exception:
        return None
