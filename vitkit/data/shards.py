"""Training from WebDataset tar shards (the format of LAION, OpenCLIP and timm's ``wds`` loader), read with the
``webdataset`` package, in worker processes, with an order that is a pure function of (seed, epoch).

A shard set is ``PATTERN`` such as ``shards/train-{000000..000127}.tar`` (or a folder written by ``vitkit shard``,
whose ``index.json`` lists the shards, their sample counts and the class names). A sample is ``KEY.jpg`` (any
image extension) and ``KEY.cls`` (the class index as text).

The order of an epoch: the shards are permuted by (seed, epoch) and read as one stream. With a global batch of
B over R processes, ``steps = N // B``; process r reads the stream range ``[r * steps * b, (r + 1) * steps * b)``
(b = B / R), so every sample is read by exactly one process and the fewer than B left over are dropped (a
different few each epoch). A process's range is split into *lanes*, one per loader worker: lane l builds the
steps k with ``k % lanes == l`` from a contiguous part of the range, shuffled in blocks of ``SHUFFLE_BLOCK``
samples. Each byte is read once, and step k is the same whichever run builds it: resuming at step k reads (without
decoding) up to the first sample not yet trained on and continues in the same order, bit for bit, as long as
the process count and lane count are those of the run (the lane count is the run's saved ``--workers``).
"""

from __future__ import annotations

import itertools
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import VitkitError
from .decode import IMAGE_EXTENSIONS
from .pipeline import Augment, Preprocess
from .files import FileImages, StreamedImageSet, take_skipped, train_batch_from_files
from .stream import EpochStream, StepBatch, failure

INDEX_FILE = "index.json"
SHUFFLE_BLOCK = 256
IMAGE_KEYS = tuple(e.lstrip(".") for e in sorted(IMAGE_EXTENSIONS))


@dataclass(frozen=True)
class ShardSet:
    """The shards of one split: their URLs, sample counts and the class names."""

    urls: list[str]
    counts: list[int]
    class_names: list[str]

    @property
    def size(self) -> int:
        return sum(self.counts)

    def describe(self) -> str:
        return f"{len(self.urls)} shards, {self.size} samples"


def is_shard_spec(data: str) -> bool:
    """``--data`` names shards: a ``.tar`` pattern or a folder holding a shard index."""
    return data.endswith(".tar") or (Path(data).is_dir() and (Path(data) / INDEX_FILE).is_file())


def open_shards(spec: str, split: str = "train") -> ShardSet:
    """The shards of ``spec``: a folder written by ``vitkit shard`` (``split`` picks train or val) or a brace
    pattern; counts and class names come from the index next to the shards, else from reading the tar headers."""
    from webdataset.shardlists import expand_urls

    if Path(spec).is_dir():
        index = _read_index(Path(spec) / INDEX_FILE)
        if split not in index["splits"]:
            raise VitkitError(f"{spec}/{INDEX_FILE} has no {split} split; give --val-data with the val shards")
        entries = index["splits"][split]
        return ShardSet([str(Path(spec) / e["name"]) for e in entries], [int(e["count"]) for e in entries],
                        list(index["classes"]))
    urls = expand_urls(spec)
    if not urls:
        raise VitkitError(f"{spec} names no shards; give a pattern like shards/train-{{000000..000127}}.tar")
    folder = Path(urls[0]).parent
    if not (folder / INDEX_FILE).is_file():
        raise VitkitError(f"no {INDEX_FILE} next to {urls[0]} to name the classes; write the shards with "
                          "`vitkit shard` or add an index.json with a \"classes\" list")
    index = _read_index(folder / INDEX_FILE)
    known = {e["name"]: int(e["count"]) for s in index["splits"].values() for e in s}
    counts = [known[Path(u).name] if Path(u).name in known else _count_samples(u) for u in urls]
    return ShardSet(urls, counts, list(index["classes"]))


def _read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text())
        if not isinstance(index.get("classes"), list) or not isinstance(index.get("splits"), dict):
            raise ValueError("needs \"classes\" and \"splits\"")
        return index
    except (OSError, ValueError) as error:
        raise VitkitError(f"cannot read the shard index {path} ({error}); write the shards again with "
                          "`vitkit shard`") from None


def _count_samples(url: str) -> int:
    """Samples in one local shard, from its tar headers (no data is read)."""
    try:
        with tarfile.open(url) as tar:
            return len({m.name.split(".", 1)[0] for m in tar if m.isfile() and not m.name.startswith("__")})
    except (OSError, tarfile.TarError) as error:
        raise VitkitError(f"cannot read shard {url} ({error}); check the pattern") from None


def read_samples(url: str) -> Iterator[dict[str, Any]]:
    """The samples of one shard (``__key__`` and one bytes entry per extension), read with webdataset."""
    from webdataset.tariterators import tarfile_samples

    try:
        yield from tarfile_samples([{"url": url}])
    except (OSError, tarfile.TarError, ValueError) as error:
        raise VitkitError(f"cannot read shard {url} ({str(error).splitlines()[0]}); check or rewrite it") from None


@dataclass(frozen=True)
class ShardPlan:
    """Which samples each process and lane reads in an epoch (see the module docstring)."""

    shards: ShardSet
    seed: int
    batch_size: int
    """The global batch."""
    world: int
    lanes: int

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.world

    @property
    def steps_per_epoch(self) -> int:
        return self.shards.size // self.batch_size

    def shard_order(self, epoch: int) -> list[int]:
        return torch.randperm(len(self.shards.urls), generator=torch.Generator().manual_seed(
            self.seed * 7_919 + epoch + 1)).tolist()

    def lane_range(self, rank: int, lane: int) -> tuple[int, int]:
        """(start, length) in the epoch's stream of the samples ``lane`` of process ``rank`` reads."""
        steps, b = self.steps_per_epoch, self.local_batch
        before = sum(len(range(v, steps, self.lanes)) for v in range(lane))
        return rank * steps * b + before * b, len(range(lane, steps, self.lanes)) * b

    def lane_samples(self, epoch: int, rank: int, lane: int) -> Iterator[dict[str, Any]]:
        """The samples of a lane in training order (shard order, then shuffled in blocks)."""
        start, length = self.lane_range(rank, lane)
        stream = self._stream(epoch, start, length)
        rng = random.Random((self.seed * 1_000_003 + epoch) * 1_000_003 + rank * 1_009 + lane)
        while True:
            block = list(itertools.islice(stream, SHUFFLE_BLOCK))
            if not block:
                return
            rng.shuffle(block)
            yield from block

    def _stream(self, epoch: int, start: int, length: int) -> Iterator[dict[str, Any]]:
        """``length`` samples of the epoch's concatenated shards from position ``start``."""
        offset = 0
        for shard in self.shard_order(epoch):
            count = self.shards.counts[shard]
            if offset + count > start and length > 0:
                skip = max(0, start - offset)
                taken = list(itertools.islice(read_samples(self.shards.urls[shard]), skip, skip + length))
                if len(taken) < min(length, count - skip):
                    raise VitkitError(f"shard {self.shards.urls[shard]} holds fewer samples than its index says "
                                      f"({count}); write its index again")
                yield from taken
                start, length = start + len(taken), length - len(taken)
            offset += count

    def steps_of(self, lane: int, first_step: int) -> range:
        """The steps a lane builds, from the first step of a (resumed) epoch on."""
        start = first_step + (lane - first_step) % self.lanes
        return range(start, self.steps_per_epoch, self.lanes)


def image_bytes(sample: dict[str, Any]) -> tuple[str, bytes]:
    """(name, encoded bytes) of a sample's image: ``KEY.jpg``, ``KEY.png``, ..."""
    return sample_bytes(sample, IMAGE_KEYS, "image")


def sample_bytes(sample: dict[str, Any], keys: tuple[str, ...], kind: str) -> tuple[str, bytes]:
    """(name, encoded bytes) of the first entry of ``sample`` with one of the extensions ``keys``."""
    for ext in keys:
        if ext in sample:
            return f"{sample.get('__url__', '')}:{sample['__key__']}.{ext}", sample[ext]
    raise VitkitError(f"sample {sample.get('__key__')} of {sample.get('__url__')} has no {kind} "
                      f"(looked for {', '.join(keys)}); write the shards with `vitkit shard`")


def label_of(sample: dict[str, Any], classes: int) -> int:
    try:
        label = int(sample["cls"].decode() if isinstance(sample["cls"], bytes) else sample["cls"])
    except (KeyError, ValueError, AttributeError):
        raise VitkitError(f"sample {sample.get('__key__')} of {sample.get('__url__')} has no integer .cls; write "
                          "the shards with `vitkit shard`") from None
    if not 0 <= label < classes:
        raise VitkitError(f"sample {sample.get('__key__')} of {sample.get('__url__')} has class {label}, outside "
                          f"the {classes} classes of the index")
    return label


class _BytesImages(FileImages):
    """``FileImages`` over encoded images already read from a shard."""

    def __init__(self, named: list[tuple[str, bytes]], short_side: int, interpolation: str = "bicubic") -> None:
        super().__init__([name for name, _ in named], short_side, interpolation)
        self.data = [data for _, data in named]

    def source(self, index: int) -> bytes:
        return self.data[index]


class ShardBatches(EpochStream):
    """The training batches of one process for one epoch (from ``first_step``), each worker building its lane."""

    def __init__(self, plan: ShardPlan, rank: int, prep: Preprocess, aug: Augment) -> None:
        self.plan, self.rank, self.prep, self.aug = plan, rank, prep, aug

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._batches()
        except Exception as error:  # noqa: BLE001 - reported in the main process with the shard's name
            yield failure(error)

    def _batches(self) -> Iterator[StepBatch]:
        info = torch.utils.data.get_worker_info()
        if info is None:  # in this process: all lanes, interleaved in step order
            lanes = [self.lane(v) for v in range(self.plan.lanes)]
            order = sorted((step, v) for v in range(self.plan.lanes) for step in self.plan.steps_of(v, self.first_step))
            for _, v in order:
                yield next(lanes[v])
            return
        if info.num_workers != self.plan.lanes:
            raise VitkitError(f"{info.num_workers} workers for {self.plan.lanes} lanes")
        # DataLoader asks worker 0 first: worker w builds the lane whose next step is first_step + w.
        yield from self.lane((self.first_step + info.id) % self.plan.lanes)

    def lane(self, lane: int) -> Iterator[StepBatch]:
        plan, b = self.plan, self.plan.local_batch
        start, _ = plan.lane_range(self.rank, lane)
        done = len(range(lane, self.first_step, plan.lanes))  # this lane's batches before first_step
        samples = itertools.islice(plan.lane_samples(self.epoch, self.rank, lane), done * b, None)
        for step in plan.steps_of(lane, self.first_step):
            chunk = list(itertools.islice(samples, b))
            where = (plan.seed, self.epoch, step * plan.world + self.rank)  # distinct augmentations per process
            inputs, targets = self.train_batch(chunk, where)
            yield StepBatch(inputs, targets, take_skipped(), [s["__key__"] for s in chunk])

    def train_batch(self, chunk: list[dict[str, Any]],
                    where: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of the samples ``chunk`` (images here; a video subclass cuts clips)."""
        classes = len(self.plan.shards.class_names)
        data = StreamedImageSet(_BytesImages([image_bytes(s) for s in chunk], self.prep.short_side,
                                                 self.prep.interpolation),
                                [label_of(s, classes) for s in chunk], self.plan.shards.class_names)
        return train_batch_from_files(data, list(range(len(chunk))), self.prep, self.aug, classes, where)
