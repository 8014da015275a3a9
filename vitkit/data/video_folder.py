"""A labelled video dataset on disk, ``PATH/{train,val}/<class>/*.{avi,mp4,mkv,webm}``, yielding
``(clip [C, T, H, W], label)``. Videos that cannot be used are skipped and listed in ``.skipped``, as for images.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from ..errors import VitkitError
from .folders import VAL_NAMES
from .video import BadVideo, ClipSampler, DecodedCache, is_video_file, min_frames


def find_videos(root: str | Path) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    """Class names and ``{split: (paths, labels)}`` for ``root/train`` and ``root/val`` (or validation / test)."""
    root = Path(root)
    train = root / "train"
    val = next((root / name for name in VAL_NAMES if (root / name).is_dir()), None)
    if not train.is_dir() or val is None:
        raise VitkitError(f"{root} needs train/ and val/ folders of class sub-folders holding video files")
    names, train_paths, train_labels = labelled_videos(train)
    if len(names) < 2:
        raise VitkitError(f"{train} needs at least two class folders, found {len(names)}")
    val_names, val_paths, val_labels = labelled_videos(val)
    if val_names != names:
        raise VitkitError(f"{val} has classes {val_names} but {train} has {names}; use the same class folders")
    return names, {"train": (train_paths, train_labels), "val": (val_paths, val_labels)}


def labelled_videos(folder: str | Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names, paths and labels of the videos in ``folder/<class>/*``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VitkitError(f"{folder} is not a folder; give PATH/<class>/<video files> or a dataset root with val/")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (folder / name).glob("*") if p.is_file() and is_video_file(p))
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise VitkitError(f"{folder} holds no video files (.avi, .mp4, .mkv, .webm) in class folders")
    return names, paths, labels


MAX_FRAMES = 96
"""Frames kept of each decoded video by default (evenly spaced): what training, eval and explain cut clips from."""


class VideoFolder:
    """Clips of the videos of one split. Every video is decoded once at construction (into ``cache``), so bad
    ones are found up front; training clips are random (frames, crop, flip), evaluation clips are central."""

    def __init__(self, paths: list[Path], labels: list[int], class_names: list[str], sampler: ClipSampler, *,
                 train: bool, cache: DecodedCache | None = None, short_side: int = 128,
                 max_frames: int | None = MAX_FRAMES) -> None:
        self.class_names = class_names
        self.sampler = sampler
        self.train = train
        self.cache = cache or DecodedCache()
        self.short_side, self.max_frames = short_side, max_frames
        self.paths: list[Path] = []
        self.labels: list[int] = []
        self.skipped: list[tuple[Path, str]] = []
        needed = min_frames(sampler.num_frames, sampler.sampling, sampler.stride)
        for path, label in zip(paths, labels):
            try:
                length = len(self.video(path))
                if length < needed:
                    raise BadVideo(f"too short: {length} frames, a clip needs {needed}")
            except BadVideo as reason:
                self.skipped.append((path, str(reason)))
                continue
            self.paths.append(path)
            self.labels.append(label)

    def video(self, path: Path) -> torch.Tensor:
        """The decoded (cached) frames of one file, uint8 [L, 3, H, W]."""
        return self.cache.get(path, self.short_side, self.max_frames)

    def __len__(self) -> int:
        return len(self.paths)

    def clip_at(self, index: int, train: bool, rng: random.Random) -> torch.Tensor:
        """The clip of video ``index``: random (drawn from ``rng``) in training, central otherwise."""
        return self.sampler.clip(self.video(self.paths[index]), train, rng)

    def views(self, index: int, clips: int = 2, crops: int = 3) -> torch.Tensor:
        """Multi-view evaluation clips of one video, [clips * crops, C, T, H, W]."""
        return self.sampler.views(self.video(self.paths[index]), clips, crops)

    def skipped_report(self) -> str:
        """One line per skipped video: the file and why."""
        return "\n".join(f"skipped {path}: {reason}" for path, reason in self.skipped)
