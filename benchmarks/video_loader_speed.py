"""Video training feed throughput: ready training clips per second of a video folder (``--task video``), the
loader alone (no model), clips decoded in the training process (``--workers 0``) against loader worker processes
(``--workers 2``), both streamed (``--cache none``: each clip decodes only the frames it takes), interleaved in one
run. Also printed: the in-memory path's up-front decode time (``--cache ram``: every video decoded once before
training, in the training process) and its clips/s afterwards.

    PYTHONPATH=. $(scripts/venv.sh core)/bin/python benchmarks/video_loader_speed.py \\
        [--data ../shared/data/ucf101_mini] [--frames 16] [--size 112] [--batch 8] [--rounds 3] [--batches 8]

Each loader keeps its workers for the whole run; before each timed window the batches its workers prefetched
meanwhile (2 per worker) are taken untimed, so every window measures steady-state production.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path
from typing import Iterator

import torch

REPO = Path(__file__).resolve().parents[1]


def feed(data: Path, frames: int, size: int, batch: int, workers: int, cache: str) -> Iterator[torch.Tensor]:
    """Training batches of ``data`` as ``vitkit train --task video`` builds them (random frames, crop, flip)."""
    from vitkit.data.stream import StepLoader
    from vitkit.train.config import TrainConfig
    from vitkit.train.feed import _FolderSteps
    from vitkit.train.loop import epoch_order
    from vitkit.train.video_stream_tasks import choose_video_task

    config = TrainConfig(task="video", data=str(data), img_size=size, frames=frames, workers=workers, cache=cache,
                         crop_pct=0.875, mean=(0.5,) * 3, std=(0.5,) * 3)
    task = choose_video_task(config, size, frames)
    loader = StepLoader(_FolderSteps(task, 0, batch, range(batch), epoch_order), workers, prefetch=2)
    steps = task.sizes[0] // batch
    for epoch in itertools.count():
        for ready in loader.batches(epoch, range(steps), per_epoch=steps):  # as training asks for them
            yield ready.inputs


def clips_per_second(batches: Iterator[torch.Tensor], count: int, workers: int) -> float:
    """Clips/s over ``count`` batches, after taking untimed what its workers prefetched meanwhile (up to 2 each)."""
    for _ in range(max(1, 2 * workers)):
        next(batches)
    start, clips = time.perf_counter(), 0
    for _ in range(count):
        clips += len(next(batches))
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ucf101_mini")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loader alone: what a training process leaves it on a small machine
    shape = (args.data, args.frames, args.size, args.batch)
    loaders = {f"streamed, --workers {w}": (feed(*shape, w, "none"), w) for w in (0, 2)}
    results: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.rounds):
        for name, (batches, workers) in loaders.items():
            results[name].append(clips_per_second(batches, args.batches, workers))
    start = time.perf_counter()
    in_memory = feed(*shape, 0, "ram")
    first = next(in_memory)  # decodes every video up front
    decode_s = time.perf_counter() - start
    memory_rate = clips_per_second(in_memory, args.batches, 0) if len(first) else 0.0
    print(f"{args.data.name}: {args.frames} frames x {args.size} px clips, batch {args.batch}, "
          f"{args.rounds} rounds x {args.batches} batches (median, all rounds)")
    for name, rates in results.items():
        print(f"  {name:<24} {statistics.median(rates):7.1f} clips/s  {[round(r, 1) for r in rates]}")
    print(f"  {'in memory, --workers 0':<24} {memory_rate:7.1f} clips/s  after {decode_s:.0f} s decoding every video")


if __name__ == "__main__":
    main()
