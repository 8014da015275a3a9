"""Loader throughput: ready training batches per second at 224 px (random-resized crop + flip + RandAugment,
2 worker processes), vitkit's streaming loader against timm's ``create_loader`` and torchvision.transforms.v2 +
DataLoader, interleaved in one run, on real ~500x375 JPEGs and on 1,600 px JPEGs. Run it in the peers venv:

    PYTHONPATH=. $(scripts/venv.sh peers)/bin/python benchmarks/loader_speed.py \\
        [--small ../shared/data/cats_vs_dogs/train] [--large /work/cache/h6/jpeg1600] [--rounds 5] [--batches 30]

The large folder comes from ``benchmarks/loader_data.py OUT --count 400 --long-side 1600 1600``. Each loader keeps
its workers for the whole run; before each timed window the batches its workers prefetched meanwhile are taken
untimed, and after it the run waits until its workers have built what they were asked for ahead, so every window
measures steady-state production on an otherwise idle machine. Same augmentation for all three: crop scale
(0.08, 1), p=0.5 flip, RandAugment with 2 ops at strength 9 of 30 (timm writes it as m3 on its 0-10 scale).
Target (issue 18): vitkit >= 1.3x the better peer.
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
SIZE, WORKERS, PREFETCH = 224, 2, 2


def vitkit_batches(folder: Path, batch: int) -> Iterator[torch.Tensor]:
    from vitkit.data.cache import plan_cache
    from vitkit.data.stream import StepLoader
    from vitkit.train.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
    from vitkit.train.feed import _FolderSteps
    from vitkit.train.loop import epoch_order
    from vitkit.train.stream_tasks import StreamedFolderTask

    config = TrainConfig(data=str(folder), img_size=SIZE, augment="randaugment", crop_scale=(0.08, 1.0),
                         workers=WORKERS, cache="none", val_fraction=0.01, crop_pct=0.875, mean=IMAGENET_MEAN,
                         std=IMAGENET_STD)
    task = StreamedFolderTask(config, SIZE, WORKERS, plan_cache("none", 0, 256))
    loader = StepLoader(_FolderSteps(task, 0, batch, range(batch), epoch_order), WORKERS, prefetch=PREFETCH)
    steps = len(task.train_set) // batch
    for epoch in itertools.count():
        for ready in loader.batches(epoch, range(steps), per_epoch=steps):  # as training asks for them
            yield ready.inputs


def _folder_dataset(folder: Path, transform):
    """An ImageFolder over ``folder`` (torchvision's: class sub-folders)."""
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(folder), transform=transform)


def torchvision_batches(folder: Path, batch: int) -> Iterator[torch.Tensor]:
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomResizedCrop(SIZE, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                            v2.RandAugment(num_ops=2, magnitude=9), v2.PILToTensor(),
                            v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    loader = torch.utils.data.DataLoader(_folder_dataset(folder, transform), batch_size=batch, shuffle=True,
                                         drop_last=True, num_workers=WORKERS, persistent_workers=True,
                                         prefetch_factor=PREFETCH)
    for _ in itertools.count():
        for images, _labels in loader:
            yield images


def timm_batches(folder: Path, batch: int) -> Iterator[torch.Tensor]:
    from timm.data import ImageDataset, create_loader

    loader = create_loader(ImageDataset(str(folder)), input_size=(3, SIZE, SIZE), batch_size=batch, is_training=True,
                           scale=(0.08, 1.0), auto_augment="rand-m3-n2", interpolation="bilinear",
                           num_workers=WORKERS, use_prefetcher=False, persistent_workers=True, device=torch.device("cpu"))
    for _ in itertools.count():
        for images, _labels in loader:
            yield images


CANDIDATES = {"vitkit": vitkit_batches, "timm create_loader": timm_batches, "torchvision v2": torchvision_batches}


def measure(folder: Path, batch: int, rounds: int, count: int) -> dict[str, list[float]]:
    streams = {name: make(folder, batch) for name, make in CANDIDATES.items()}
    for stream in streams.values():  # start the workers, first batch untimed
        assert next(stream).shape == (batch, 3, SIZE, SIZE)
    rates: dict[str, list[float]] = {name: [] for name in streams}
    names = list(streams)
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            stream = streams[name]
            for _ in range(WORKERS * PREFETCH):  # what its workers built while the others were timed
                next(stream)
            start = time.perf_counter()
            for _ in range(count):
                next(stream)
            rates[name].append(count / (time.perf_counter() - start))
            # Its workers go on building the batches they were asked for ahead: let them finish before the next
            # loader is timed, or that work lands in the next window (by ~4 batches: 10-17% of a 30-batch window).
            time.sleep(1.5 * WORKERS * PREFETCH / rates[name][-1] + 0.25)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=Path, default=REPO.parent / "shared" / "data" / "cats_vs_dogs" / "train")
    parser.add_argument("--large", type=Path, default=Path("/work/cache/h6/jpeg1600"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=30, help="batches per timed window")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main process only receives batches
    print(f"ready batches/s of {args.batch_size} x 3x{SIZE}x{SIZE}, {WORKERS} workers, median of {args.rounds} "
          f"interleaved windows of {args.batches} batches")
    for label, folder in (("~500x375 JPEGs", args.small), ("1,600 px JPEGs", args.large)):
        if not folder.is_dir():
            print(f"{label}: {folder} missing, skipped")
            continue
        rates = measure(folder, args.batch_size, args.rounds, args.batches)
        medians = {name: statistics.median(values) for name, values in rates.items()}
        best_peer = max(v for name, v in medians.items() if name != "vitkit")
        print(f"\n{label} ({folder})")
        for name, value in medians.items():
            spread = f"(min {min(rates[name]):.2f}, max {max(rates[name]):.2f})"
            print(f"  {name:<20} {value:7.2f} batches/s  {value * args.batch_size:7.1f} img/s  {spread}")
        ratio = medians["vitkit"] / best_peer
        print(f"  vitkit / best peer: {ratio:.2f}x ({'meets' if ratio >= 1.3 else 'misses'} the 1.3x target)")
        # The same ratio round by round (windows a few seconds apart), which the machine's drift moves less.
        paired = [v / max(rates[n][i] for n in rates if n != "vitkit") for i, v in enumerate(rates["vitkit"])]
        print(f"  per round: median {statistics.median(paired):.2f}x (min {min(paired):.2f}, max {max(paired):.2f})")


if __name__ == "__main__":
    main()
