"""Video folders read clip by clip in loader worker processes, and video shards: the video counterpart of
``stream_tasks.py``.

``choose_video_task`` picks where a video folder's frames live: decoded into memory up front (``VideoTask``,
small folders) or decoded in the workers for each clip (``StreamedVideoTask``: ``--cache none``, or ``auto`` when
the decoded frames would not fit the budget), or reads video shards (``VideoShardTask``). A folder's two tasks
build the same batches bit for bit (a pure function of seed, epoch, step and position), so resume and N processes
stay exact. Evaluation, ``vitkit eval`` and ``vitkit predict`` on video folders stream too: workers decode one
chunk of videos at a time.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..data.augment import mix_rows
from ..data.cache import BUDGET_SHARE, CachePlan, available_memory, plan_cache
from ..data.pipeline import mix_draw
from ..data.shards import ShardBatches, ShardPlan, ShardSet, is_shard_spec, label_of, open_shards, sample_bytes
from ..data.stream import StepBatch
from ..data.video import VIDEO_EXTENSIONS, BadVideo, ClipSampler, DecodedCache
from ..data.video_folder import MAX_FRAMES, find_videos
from ..data.video_preprocess import VideoPreprocess
from ..data.video_stream import FileVideos, StreamedVideoSet, train_clips_from_files
from .config import TrainConfig
from .feed import processes_per_machine, resolve_workers
from .stream_tasks import ChunkEval, ShardEval, ShardSplits, StreamedEvalSet, evaluate_stream, predict_stream
from .tasks import VideoTask

EVAL_VIDEOS = 8
"""Videos per evaluation chunk (each one clip, or clips x crops views)."""


class VideoFolderEval(ChunkEval):
    """The central clips (or ``views`` = (clips, crops) views, as consecutive rows) of the usable videos of each
    chunk; unusable ones are skipped and listed."""

    unreadable = BadVideo

    def __init__(self, videos: FileVideos, labels: list[int], batch_size: int = EVAL_VIDEOS,
                 views: tuple[int, int] | None = None) -> None:
        self.files, self.labels, self.batch_size, self.views = videos, labels, batch_size, views
        self.views_per_sample = views[0] * views[1] if views else 1

    def item(self, index: int) -> torch.Tensor:
        if self.views:
            return self.files.views(index, *self.views)
        return self.files.clip(index, False, random.Random(0))[None]

    def inputs(self, items: list[torch.Tensor]) -> torch.Tensor:
        sampler = self.files.sampler
        return torch.cat(items) if items else torch.empty(0, 3, sampler.num_frames, sampler.size, sampler.size)


class StreamedVideoTask(VideoTask):
    """A video folder whose clips are decoded in the loader workers, each time a batch needs them."""

    train_set: StreamedVideoSet
    val_set: StreamedVideoSet

    def __init__(self, config: TrainConfig, image_size: int, num_frames: int, workers: int,
                 cache: CachePlan | None) -> None:
        super().__init__(config, image_size, num_frames)
        self.workers, self.cache = workers, cache

    def load_sets(self, config: TrainConfig) -> tuple[StreamedVideoSet, StreamedVideoSet]:
        names, splits = find_videos(config.data)
        return tuple(StreamedVideoSet(FileVideos(splits[s][0], self.sampler, self.short_side), splits[s][1], names)
                     for s in ("train", "val"))  # type: ignore[return-value]

    def clips(self, indices: list[int], where: tuple[int, int, int],
              positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return train_clips_from_files(self.train_set, indices, len(self.class_names), where, positions)

    def evaluate(self, model: nn.Module, precision: str) -> dict[str, Any]:
        return self._evaluate(model, VideoFolderEval(self.val_set.videos, self.val_set.labels), precision)

    def _evaluate(self, model: nn.Module, source: Any, precision: str) -> dict[str, Any]:
        """Metrics of ``source`` built in the workers; the unusable val videos they met are added to ``skipped``."""
        metrics = evaluate_stream(model, source, self.workers, self.class_names, precision)
        known = {p for p, _ in self.val_set.skipped}
        self.val_set.skipped += [(s["path"], s["reason"]) for s in metrics["skipped"] if s["path"] not in known]
        return metrics


VIDEO_KEYS = tuple(sorted(e.lstrip(".") for e in VIDEO_EXTENSIONS))


def _clip_set(chunk: list[dict[str, Any]], sampler: ClipSampler, short_side: int,
              class_names: list[str]) -> StreamedVideoSet:
    """The videos of shard samples ``chunk`` (``KEY.avi``, ``KEY.mp4``, ... and ``KEY.cls``) as a clip set."""
    named = [sample_bytes(s, VIDEO_KEYS, "video") for s in chunk]
    videos = FileVideos([n for n, _ in named], sampler, short_side, data=[d for _, d in named])
    return StreamedVideoSet(videos, [label_of(s, len(class_names)) for s in chunk], class_names)


class VideoShardBatches(ShardBatches):
    """``ShardBatches`` (the same order, lanes and resume) whose samples are videos cut into training clips."""

    def __init__(self, plan: ShardPlan, rank: int, sampler: ClipSampler, short_side: int,
                 mix: tuple[float, float] = (0.0, 0.0)) -> None:
        self.plan, self.rank, self.sampler, self.short_side, self.mix = plan, rank, sampler, short_side, mix

    def train_batch(self, chunk: list[dict[str, Any]],
                    where: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        data = _clip_set(chunk, self.sampler, self.short_side, self.plan.shards.class_names)
        everything = list(range(len(chunk)))
        return mix_rows(lambda ps: train_clips_from_files(data, everything, len(data.class_names), where, ps),
                        everything, len(chunk), mix_draw(where, *self.mix, self.sampler.size))


class VideoShardEval(ShardEval):
    """``ShardEval`` over video samples: the central clip of each (or ``views`` views, as consecutive rows)."""

    def __init__(self, shards: ShardSet, sampler: ClipSampler, short_side: int, views: tuple[int, int] | None = None,
                 batch_size: int = EVAL_VIDEOS) -> None:
        self.shards, self.sampler, self.short_side, self.views, self.batch_size = shards, sampler, short_side, views, \
            batch_size
        self.views_per_sample = views[0] * views[1] if views else 1

    def eval_batch(self, chunk: list[dict[str, Any]]) -> StepBatch:
        data = _clip_set(chunk, self.sampler, self.short_side, self.shards.class_names)
        return VideoFolderEval(data.videos, data.labels, len(chunk), self.views)(0, 0)


class VideoShardTask(ShardSplits, StreamedVideoTask):
    """Video WebDataset shards (written by ``vitkit shard --task video``): read in order by the loader workers,
    clips cut as from a folder; what is exact on resume is what ``data/shards.py`` says for image shards."""

    def __init__(self, config: TrainConfig, image_size: int, num_frames: int, workers: int) -> None:
        self.seed = config.seed
        super().__init__(config, image_size, num_frames, workers, None)

    def load_sets(self, config: TrainConfig) -> tuple[StreamedVideoSet, StreamedVideoSet]:
        names = self.open_splits(config)
        return tuple(StreamedVideoSet(FileVideos([], self.sampler, self.short_side), [], names)
                     for _ in range(2))  # type: ignore[return-value]  # (they collect the skipped videos)

    def shard_batches(self, batch_size: int, world: int, rank: int) -> VideoShardBatches:
        return VideoShardBatches(self.plan(batch_size, world), rank, self.sampler, self.short_side, self.mix)

    def evaluate(self, model: nn.Module, precision: str) -> dict[str, Any]:
        return self._evaluate(model, VideoShardEval(self.val_shards, self.sampler, self.short_side), precision)


def video_cache_plan(choice: str, videos: int, short_side: int) -> CachePlan:
    """``--cache`` for a video folder: the decoded frames (at most ``MAX_FRAMES`` a video) in memory only when
    they fit both the memory budget and the decoded-video cache (beyond it, that cache would decode again)."""
    budget = min(available_memory() // BUDGET_SHARE // processes_per_machine(), DecodedCache().max_bytes)
    return plan_cache(choice, videos * MAX_FRAMES, short_side, budget=budget)


def choose_video_task(config: TrainConfig, image_size: int, num_frames: int) -> VideoTask:
    """The video task of ``config``: in memory (the embedded moving digits, a small folder) or streamed."""
    from ..data import moving_digits

    if is_shard_spec(config.data):
        return VideoShardTask(config, image_size, num_frames, resolve_workers(config.workers))
    if config.data == moving_digits.NAME or not Path(config.data).is_dir():
        return VideoTask(config, image_size, num_frames)  # (a missing folder is reported there)
    _, splits = find_videos(config.data)
    short_side = round(image_size / config.crop_pct)
    plan = video_cache_plan(config.cache, sum(len(paths) for paths, _ in splits.values()), short_side)
    if not plan.in_memory:
        return StreamedVideoTask(config, image_size, num_frames, resolve_workers(config.workers), plan)
    task = VideoTask(config, image_size, num_frames)
    task.cache = plan  # type: ignore[attr-defined]  # for the start line
    return task


class StreamedVideoEvalSet(StreamedEvalSet):
    """The labelled videos ``vitkit eval --data`` names (``data/val``, ``data/<class>/*``, or video shards),
    evaluated one chunk of videos at a time in worker processes; a folder's classes are checked before any video
    is decoded."""

    def __init__(self, data: str, prep: VideoPreprocess, class_names: list[str], views: tuple[int, int] | None,
                 batch_size: int = EVAL_VIDEOS) -> None:
        self.skipped: list[tuple[str, str]] = []
        if is_shard_spec(data):
            shards = open_shards(data, "val")
            self.class_names = shards.class_names
            self.source: Any = VideoShardEval(shards, prep.sampler, prep.short_side, views, batch_size)
            return
        self.class_names, paths, labels = prep.labelled(data, class_names)
        self.source = VideoFolderEval(FileVideos(paths, prep.sampler, prep.short_side), labels, batch_size, views)


def predict_video_files(model: nn.Module, paths: list[Path], prep: VideoPreprocess, workers: int,
                        views: tuple[int, int] | None,
                        precision: str = "fp32") -> Iterator[tuple[list[str], torch.Tensor, list[tuple[str, str]]]]:
    """(paths, logits, skipped) a chunk of videos at a time, decoded in worker processes (views averaged as
    ``evaluate.predict_clip_logits`` does)."""
    source = VideoFolderEval(FileVideos(paths, prep.sampler, prep.short_side), [0] * len(paths), views=views)
    return predict_stream(model, source, workers, precision)
