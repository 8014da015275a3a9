"""Video clips decoded on demand, in loader worker processes: the streaming counterpart of
:class:`~vitkit.data.video_folder.VideoFolder`, which decodes every video up front into memory.

Each clip decodes only the frames it takes (:func:`~vitkit.data.video.decode_frames`) and cuts them exactly as
``VideoFolder`` cuts its cached frames, so a streamed training batch equals the in-memory one bit for bit and
stays a pure function of (seed, epoch, step, position). A video that cannot be used (unreadable, too short) is
met when a batch needs it: it is recorded for :func:`~vitkit.data.files.take_skipped` and its position takes
the next usable video of the same global batch, as for images.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import torch
from torch.nn.functional import one_hot

from .pipeline import sample_seed
from .loader_workers import reading
from .files import StreamedSet, build_or_replace, found_bad
from .video import BadVideo, ClipSampler, decode_frames
from .video_folder import MAX_FRAMES


class FileVideos:
    """``videos.clip(i, ...)`` decodes video ``i`` (a file, or bytes read from a shard) when asked; nothing is
    kept. Unusable videos raise :class:`BadVideo` after being recorded under their name."""

    def __init__(self, paths: Sequence[str | Path], sampler: ClipSampler, short_side: int,
                 max_frames: int | None = MAX_FRAMES, data: Sequence[bytes] | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.sampler, self.short_side, self.max_frames = sampler, short_side, max_frames
        self.data = data
        """The encoded videos, when they were read from shards (``paths`` are then their names)."""

    def __len__(self) -> int:
        return len(self.paths)

    def clip(self, index: int, train: bool, rng: random.Random) -> torch.Tensor:
        """The clip [C, T, S, S] that ``VideoFolder.clip_at`` cuts: random (drawn from ``rng``) in training,
        central otherwise."""
        frames = self._frames(index, lambda length: self.sampler.indices(length, train, rng))
        return self.sampler.shape(frames, train, rng)

    def views(self, index: int, clips: int = 2, crops: int = 3) -> torch.Tensor:
        """Multi-view evaluation clips of one video, [clips * crops, C, T, S, S], as ``VideoFolder.views``."""
        frames = self._frames(index, lambda length: [i for view in self.sampler.view_indices(length, clips)
                                                     for i in view])
        t = self.sampler.num_frames
        return self.sampler.views_of([frames[k * t : (k + 1) * t] for k in range(clips)], crops)

    def _frames(self, index: int, pick) -> torch.Tensor:
        reading(self.paths[index])
        source = self.paths[index] if self.data is None else self.data[index]
        try:
            return decode_frames(source, self.short_side, self.max_frames, pick)
        except BadVideo as error:
            found_bad(self.paths[index], str(error))
            raise


class StreamedVideoSet(StreamedSet):
    """A labelled video folder (or shard batch) read at each use; ``skipped`` fills as unusable videos are met."""

    @property
    def videos(self) -> FileVideos:
        return self.files


def train_clips_from_files(data: StreamedVideoSet, indices: list[int], num_classes: int, where: tuple[int, int, int],
                           positions: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``positions`` of the training batch ``indices`` at ``where`` = (seed, epoch, step): the clips and
    one-hot targets the in-memory ``VideoTask.batch`` builds. An unusable video's position takes the next usable
    video of the batch (its clip still drawn with the position's own seed)."""
    positions = range(len(indices)) if positions is None else positions
    bad: set[int] = set()
    clips, labels = [], []
    for p in positions:
        def clip(index: int, p: int = p) -> torch.Tensor:
            return data.videos.clip(index, True, random.Random(sample_seed(*where, p)))

        built, index = build_or_replace(indices, p, clip, bad, BadVideo, where, data.paths)
        clips.append(built)
        labels.append(data.labels[index])
    return torch.stack(clips), one_hot(torch.tensor(labels), num_classes).float()
