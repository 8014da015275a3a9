"""The image tasks that read their data from disk at each use instead of decoding it all into memory:
an image folder with ``--cache none`` (or ``auto`` when it is too large), and WebDataset shards.

They answer what ``tasks.ImageTask`` answers (sizes, preprocessing, training batches, evaluation), so the
loop does not know the difference; evaluation streams too (worker processes, one batch at a time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..data.cache import CachePlan
from ..data.decode import BadImage
from ..data.folders import find_dataset
from ..data.pipeline import Preprocess, eval_batch
from ..data.shards import ShardBatches, ShardPlan, ShardSet, image_bytes, label_of, open_shards, read_samples
from ..data.files import FileImages, StreamedImageSet, take_skipped, train_batch_from_files
from ..data.stream import EpochStream, StepBatch, StepLoader, failure, worker_niceness
from ..errors import VitkitError
from .config import TrainConfig
from .evaluate import _report, autocast
from .tasks import BaseImageTask, image_prep

EVAL_BATCH = 64


class ChunkEval:
    """Build function of evaluation chunk ``chunk`` (``batch_size`` items of ``files``): the inputs of its readable
    items; unreadable ones (``unreadable`` errors, recorded by ``files`` for take_skipped()) are left out."""

    files: Any
    labels: list[int]
    batch_size: int
    unreadable: type[Exception] = BadImage

    def chunks(self) -> range:
        return range(-(-len(self.files) // self.batch_size))

    def item(self, index: int) -> torch.Tensor:
        """The input(s) of one item (raises ``unreadable``)."""
        raise NotImplementedError

    def inputs(self, items: list[torch.Tensor]) -> torch.Tensor:
        """The batch of the items of one chunk (maybe none)."""
        raise NotImplementedError

    def __call__(self, epoch: int, chunk: int) -> StepBatch:
        items, labels, kept = [], [], []
        for i in range(chunk * self.batch_size, min(len(self.files), (chunk + 1) * self.batch_size)):
            try:
                items.append(self.item(i))
            except self.unreadable:
                continue
            labels.append(self.labels[i])
            kept.append(self.files.paths[i])
        return StepBatch(self.inputs(items), torch.tensor(labels, dtype=torch.long), take_skipped(), kept)


class FolderEval(ChunkEval):
    """Center crops of the readable images of each chunk."""

    def __init__(self, files: FileImages, labels: list[int], prep: Preprocess, batch_size: int = EVAL_BATCH) -> None:
        self.files, self.labels, self.prep, self.batch_size = files, labels, prep, batch_size

    def item(self, index: int) -> torch.Tensor:
        return self.files[index]

    def inputs(self, items: list[torch.Tensor]) -> torch.Tensor:
        size = self.prep.image_size
        return eval_batch(items, self.prep) if items else torch.empty(0, 3, size, size)


class ShardEval(EpochStream):
    """Evaluation batches of a shard set: worker w reads shards w, w + W, ... (order does not matter here)."""

    def __init__(self, shards: ShardSet, prep: Preprocess, batch_size: int = EVAL_BATCH) -> None:
        self.shards, self.prep, self.batch_size = shards, prep, batch_size

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        mine = self.shards.urls[info.id :: info.num_workers] if info else self.shards.urls
        try:
            chunk: list[dict[str, Any]] = []
            for url in mine:
                for sample in read_samples(url):
                    chunk.append(sample)
                    if len(chunk) == self.batch_size:
                        yield self.eval_batch(chunk)
                        chunk = []
            if chunk:
                yield self.eval_batch(chunk)
        except Exception as error:  # noqa: BLE001 - reported in the main process with the shard's name
            yield failure(error)

    def eval_batch(self, chunk: list[dict[str, Any]]) -> StepBatch:
        """The evaluation batch of the samples ``chunk`` (images here; a video subclass cuts clips)."""
        from ..data.shards import _BytesImages

        files = _BytesImages([image_bytes(s) for s in chunk], self.prep.short_side, self.prep.interpolation)
        labels = [label_of(s, len(self.shards.class_names)) for s in chunk]
        return FolderEval(files, labels, self.prep, len(chunk))(0, 0)


@torch.no_grad()
def stream_logits(model: nn.Module, batches: Iterator[StepBatch], precision: str = "fp32",
                  desc: str | None = "evaluating",
                  views: int = 1) -> tuple[torch.Tensor, torch.Tensor, list[str], list]:
    """(logits, labels, names of the samples used, skipped) for streamed evaluation batches; nothing is kept
    but the logits. With ``views`` > 1, each sample is that many consecutive rows (a video's views): its row is
    the log of their averaged softmax, as ``evaluate.predict_clip_logits`` computes it."""
    from tqdm import tqdm

    model.eval()
    device = next(model.parameters()).device
    logits, labels, names, skipped = [], [], [], []
    for batch in tqdm(batches, desc=desc, unit="batch", leave=False, disable=True if desc is None else None):
        skipped += batch.skipped
        if len(batch.inputs):
            with autocast(precision, device):
                out = model(batch.inputs.to(device, non_blocking=True)).float().cpu()
            if views > 1:
                out = out.view(-1, views, out.shape[-1]).softmax(dim=-1).mean(dim=1).clamp_min(1e-12).log()
            logits.append(out)
            labels.append(batch.targets)
            names += batch.keys
    classes = model.config.num_classes if hasattr(model, "config") else 0
    return (torch.cat(logits) if logits else torch.empty(0, classes),
            torch.cat(labels) if labels else torch.empty(0, dtype=torch.long), names, skipped)


def _niceness_for(model: nn.Module) -> int:
    """The loader workers' niceness beside ``model`` (see ``data/stream.worker_niceness``)."""
    return worker_niceness(next(model.parameters()).device)


def evaluate_stream(model: nn.Module, source: Any, workers: int, class_names: list[str],
                    precision: str = "fp32") -> dict[str, Any]:
    """Loss, accuracy, per-class metrics of ``source`` (a :class:`FolderEval`, :class:`ShardEval` or another
    build function with ``chunks()``; ``views_per_sample`` rows per sample when it has one)."""
    loader = StepLoader(source, min(workers, len(source.shards.urls)) if isinstance(source, ShardEval) else workers,
                        niceness=_niceness_for(model))
    try:
        steps = source.chunks() if hasattr(source, "chunks") else range(0, 1)
        logits, labels, _, skipped = stream_logits(model, loader.batches(0, steps), precision,
                                                   views=getattr(source, "views_per_sample", 1))
    finally:
        loader.close()
    return _report(logits, labels, class_names, skipped)


class _StreamedImageTask(BaseImageTask):
    """What both streamed image tasks share: the val files that their eval workers found unreadable."""

    train_set: StreamedImageSet
    val_set: StreamedImageSet

    def _note_skipped(self, metrics: dict[str, Any]) -> dict[str, Any]:
        known = {p for p, _ in self.val_set.skipped}
        self.val_set.skipped += [(s["path"], s["reason"]) for s in metrics["skipped"] if s["path"] not in known]
        return metrics


class StreamedFolderTask(_StreamedImageTask):
    """An image folder read from disk at every use (``--cache none``, or ``auto`` for a large folder)."""

    def __init__(self, config: TrainConfig, image_size: int, workers: int, cache: CachePlan) -> None:
        self.prep = image_prep(config, image_size)
        found = find_dataset(Path(config.data), val_fraction=config.val_fraction, seed=config.seed)
        self.class_names = found.class_names
        fit = (self.prep.short_side, self.prep.interpolation)
        self.train_set = StreamedImageSet(FileImages(found.train.paths, *fit), found.train.labels,
                                          found.class_names)
        self.val_set = StreamedImageSet(FileImages(found.val.paths, *fit), found.val.labels,
                                        found.class_names)
        self.aug, self.workers, self.cache = config.augmentation(), workers, cache

    def batch(self, indices: list[int], where: tuple[int, int, int],
              positions: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return train_batch_from_files(self.train_set, indices, self.prep, self.aug, len(self.class_names), where,
                                      positions)

    def evaluate(self, model: nn.Module, precision: str) -> dict[str, Any]:
        source = FolderEval(self.val_set.images, self.val_set.labels, self.prep)
        return self._note_skipped(evaluate_stream(model, source, self.workers, self.class_names, precision))


class ShardSplits:
    """What the image and video shard tasks share: the train and val shards (``--data``, ``--val-data``), their
    sizes and the epoch plan. Training batches come from the task's ``shard_batches`` (shards are read in order,
    not by index), see ``feed.py``."""

    workers: int
    seed: int

    def open_splits(self, config: TrainConfig) -> list[str]:
        """Open the train and val shards (of one class list); returns the class names."""
        self.train_shards = open_shards(config.data, "train")
        self.val_shards = open_shards(config.val_data or config.data, "val")
        if self.val_shards.class_names != self.train_shards.class_names:
            raise VitkitError(f"the val shards have classes {self.val_shards.class_names[:5]} but the training "
                              f"shards {self.train_shards.class_names[:5]}; shard both from one folder")
        return self.train_shards.class_names

    @property
    def sizes(self) -> tuple[int, int]:
        return self.train_shards.size, self.val_shards.size

    def plan(self, batch_size: int, world: int) -> ShardPlan:
        """Which samples each process and worker lane reads (one lane per worker; see data/shards.py)."""
        return ShardPlan(self.train_shards, self.seed, batch_size, world, max(1, self.workers))


class ShardTask(ShardSplits, _StreamedImageTask):
    """Image WebDataset shards (``--data`` a shard folder or pattern, ``--val-data`` the val shards)."""

    def __init__(self, config: TrainConfig, image_size: int, workers: int) -> None:
        self.prep = image_prep(config, image_size)
        self.class_names = self.open_splits(config)
        self.aug, self.workers, self.seed = config.augmentation(), workers, config.seed
        self.train_set = StreamedImageSet(FileImages([], self.prep.short_side), [], self.class_names)
        self.val_set = StreamedImageSet(FileImages([], self.prep.short_side), [], self.class_names)

    def shard_batches(self, batch_size: int, world: int, rank: int) -> ShardBatches:
        """The training batches of process ``rank`` (what ``feed.Feed`` runs in its workers)."""
        return ShardBatches(self.plan(batch_size, world), rank, self.prep, self.aug)

    def evaluate(self, model: nn.Module, precision: str) -> dict[str, Any]:
        source = ShardEval(self.val_shards, self.prep)
        return self._note_skipped(evaluate_stream(model, source, self.workers, self.class_names, precision))


class StreamedEvalSet:
    """The labelled images ``vitkit eval --data`` names (a folder's val split or class folders, or shards),
    evaluated one batch at a time in worker processes; ``skipped`` is filled by :meth:`evaluate`."""

    def __init__(self, data: str, prep: Preprocess, batch_size: int = EVAL_BATCH) -> None:
        from ..data.folders import VAL_NAMES, class_folders
        from ..data.shards import is_shard_spec

        self.skipped: list[tuple[str, str]] = []
        if is_shard_spec(data):
            shards = open_shards(data, "val")
            self.class_names, self.source = shards.class_names, ShardEval(shards, prep, batch_size)
            return
        root = Path(data)
        root = next((root / n for n in VAL_NAMES if (root / n).is_dir()), root)
        files = class_folders(root)
        self.class_names = sorted(files)
        paths = [p for n in self.class_names for p in files[n]]
        labels = [i for i, n in enumerate(self.class_names) for _ in files[n]]
        self.source = FolderEval(FileImages(paths, prep.short_side, prep.interpolation), labels, prep, batch_size)

    def evaluate(self, model: nn.Module, workers: int, precision: str = "fp32") -> dict[str, Any]:
        metrics = evaluate_stream(model, self.source, workers, self.class_names, precision)
        self.skipped = [(s["path"], s["reason"]) for s in metrics["skipped"]]
        return metrics


def predict_files(model: nn.Module, paths: list[Path], prep: Preprocess, workers: int, batch_size: int = EVAL_BATCH,
                  precision: str = "fp32") -> Iterator[tuple[list[str], torch.Tensor, list[tuple[str, str]]]]:
    """(paths, logits, skipped) one batch at a time for image files, decoded in worker processes: predicting
    any number of files holds one batch of them at a time."""
    source = FolderEval(FileImages(paths, prep.short_side, prep.interpolation), [0] * len(paths), prep, batch_size)
    return predict_stream(model, source, workers, precision)


def predict_stream(model: nn.Module, source: Any, workers: int,
                   precision: str = "fp32") -> Iterator[tuple[list[str], torch.Tensor, list[tuple[str, str]]]]:
    """(names, logits, skipped) of each chunk of ``source`` (a build function with ``chunks()``), built in
    ``workers`` processes; one chunk is held at a time."""
    loader = StepLoader(source, workers, niceness=_niceness_for(model))
    try:
        for batch in loader.batches(0, source.chunks()):
            logits, _, names, skipped = stream_logits(model, iter([batch]), precision, desc=None,
                                                      views=getattr(source, "views_per_sample", 1))
            yield names, logits, skipped
    finally:
        loader.close()
