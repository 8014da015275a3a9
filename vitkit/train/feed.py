"""Feeding the training loop: the batches of an epoch, built ahead in worker processes.

``choose_task`` decides where image data lives (``--cache``: in memory, from the folder, or from shards) and
``Feed`` hands the loop one ready batch per step, from any step of any epoch. A batch is the same pure function
of (seed, epoch, step, position) whichever worker builds it, so resume and N processes stay exact. The feed also
measures how long the loop waited for data, which says when the loader is the bottleneck.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

import torch

from ..data.cache import CachePlan, plan_cache
from ..data.shards import is_shard_spec
from ..data.files import take_skipped
from ..data.stream import StepBatch, StepLoader, default_workers, log_skipped, worker_niceness
from .config import TrainConfig


def processes_per_machine() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


def resolve_workers(workers: int | None) -> int:
    """``--workers``, or the default from the core count (shared by the training processes of the machine)."""
    return default_workers(processes_per_machine()) if workers is None else workers


def choose_task(config: TrainConfig, image_size: int) -> tuple[Any, CachePlan | None]:
    """The streamed task for image shards or an uncached folder, with the cache plan; (None, plan) when the
    in-memory ``ImageTask`` should load the folder (None, None for embedded sets and videos)."""
    from .stream_tasks import ShardTask, StreamedFolderTask

    workers = resolve_workers(config.workers)
    if config.task != "image":
        return None, None
    if is_shard_spec(config.data):
        return ShardTask(config, image_size, workers), None
    if not os.path.isdir(config.data):
        return None, None  # an embedded set (or a missing folder, which ImageTask reports)
    from ..data.folders import find_dataset

    found = find_dataset(config.data, val_fraction=config.val_fraction, seed=config.seed)
    short_side = round(image_size / config.crop_pct)
    plan = plan_cache(config.cache, len(found.train) + len(found.val), short_side, processes_per_machine())
    return (None if plan.in_memory else StreamedFolderTask(config, image_size, workers, plan)), plan


def resolved_cache(config: TrainConfig, task: Any) -> TrainConfig:
    """``config`` with ``--cache auto`` replaced by what it chose on this machine (ram or none), to be saved with
    the run: a resumed run must not switch, since streamed and cached random-resized crops are resampled apart."""
    plan: CachePlan | None = getattr(task, "cache", None)
    if config.cache != "auto" or plan is None:
        return config
    return config.replace(cache="ram" if plan.in_memory else "none")


class _FolderSteps:
    """Build function of step ``step`` of ``epoch`` for an indexable task: its rows ``positions`` of the global
    batch at that place of the epoch's order."""

    def __init__(self, task: Any, seed: int, batch_size: int, positions: range,
                 order: Callable[[int, int, int], torch.Tensor]) -> None:
        self.task, self.seed, self.batch_size, self.positions, self.order = task, seed, batch_size, positions, order
        self._epoch: tuple[int, list[int]] | None = None

    def __call__(self, epoch: int, step: int) -> StepBatch:
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self.order(self.seed, epoch, self.task.sizes[0]).tolist())
        indices = self._epoch[1][step * self.batch_size : (step + 1) * self.batch_size]
        images, targets = self.task.batch(indices, (self.seed, epoch, step), self.positions)
        return StepBatch(images, targets, take_skipped())


class Feed:
    """The loop's batches: ``for batch in feed.batches(epoch, first_step)``; ``feed.wait`` is the time the last
    step waited for its batch."""

    def __init__(self, task: Any, config: TrainConfig, *, rank: int, world: int, local_batch: int,
                 device: torch.device, order: Callable[[int, int, int], torch.Tensor], cache: CachePlan | None,
                 log: Callable[[str], None]) -> None:
        self.task, self.cache, self.log = task, cache, log
        self.workers = resolve_workers(config.workers)
        if hasattr(task, "plan"):  # shards: read in order
            source: Any = task.shard_batches(config.batch_size, world, rank)
        else:
            source = _FolderSteps(task, config.seed, config.batch_size,
                                  range(rank * local_batch, (rank + 1) * local_batch), order)
        self.pinned = device.type == "cuda"
        self.loader = StepLoader(source, self.workers, pin_memory=self.pinned, niceness=worker_niceness(device))
        self.wait = 0.0
        self._seen: set[str] = set()

    def first_batch(self) -> StepBatch:
        """Step 0 of epoch 0, on its own (for the pace probe)."""
        return next(self.loader.batches(0, range(1)))

    def batches(self, epoch: int, first_step: int, steps: int) -> Iterator[StepBatch]:
        """Steps ``first_step`` .. ``steps - 1`` of ``epoch`` (``steps`` per epoch: the workers go on into the next
        epoch while this one ends); new unreadable files are logged and recorded."""
        iterator = self.loader.batches(epoch, range(first_step, steps), per_epoch=steps)
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            self.wait = time.perf_counter() - start
            if batch is None:
                return
            if batch.skipped:
                new = log_skipped(batch.skipped, self._seen, self.log)
                self.task.train_set.skipped.extend(new)
            yield batch

    def describe(self) -> str:
        """For the start line: the loader, its workers, the cache choice and the data-set size."""
        kind = "shards" if hasattr(self.task, "plan") else "folder" if self.cache and not self.cache.in_memory \
            else "memory"
        workers = (f"{self.workers} worker process(es), prefetch 2" + (", pinned memory" if self.pinned else "")
                   if self.workers else "built in the training process (--workers 0)")
        size = f"{self.task.sizes[0]:,} train / {self.task.sizes[1]:,} val samples"
        cache = f", {self.cache.describe()}" if self.cache else ""
        return f"loader: {kind}, {workers}{cache}; {size}"

    def close(self) -> None:
        self.loader.close()
