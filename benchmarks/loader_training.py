"""Training throughput with the data loader against the model alone: images/s of optimiser steps fed by
(a) the streamed folder (``--cache none``: JPEGs decoded and augmented by worker processes at each step),
(b) the in-memory cache with the same workers and (c) the cache built in the training process (``--workers 0``),
against (d) the same steps on pre-built batches (the model alone). Interleaved rounds, medians.

    PYTHONPATH=. python benchmarks/loader_training.py [--data ../shared/data/cats_vs_dogs] [--workers 2]
        [--steps 12] [--rounds 3] [--batch-size 32]

The README's cats_vs_dogs recipe: conv-stem ViT-Ti (9 blocks), 128 px, RandAugment. Targets (issue 18): the
streamed folder >= 0.75x the model alone, the cache >= 0.85x. On a 2-core CPU the workers share the cores with
the model, so the loader's work is not free there as it is next to a GPU. Before each timed window the batches
the workers prefetched while another candidate ran are taken untimed. Workers beside a CPU model run at niceness 19
by default (``data/stream.WORKER_NICENESS``); the "niceness 0" rows are the same loaders at the model's priority.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable
from unittest import mock

from vitkit.train.config import TrainConfig
from vitkit.train.loop import Trainer

REPO = Path(__file__).resolve().parents[1]


def trainer(data: str, cache: str, workers: int, batch: int, niceness: int | None = None) -> Trainer:
    """A run of the recipe below; ``niceness`` overrides the workers' default (``data/stream.worker_niceness``)."""
    config = TrainConfig(data=data, model="vit_ti16", model_args={"stem": "conv", "depth": 9}, img_size=128,
                         batch_size=batch, augment="randaugment", crop_scale=(0.35, 1.0), cache=cache, workers=workers,
                         out=tempfile.mkdtemp(prefix="vitkit-loaderbench-"))
    if niceness is None:
        return Trainer(config)
    with mock.patch("vitkit.train.feed.worker_niceness", lambda device: niceness):
        return Trainer(config)


def fed(run: Trainer, steps: int) -> Callable[[], float]:
    """Images/s of ``steps`` optimiser steps on the batches of ``run``'s feed (epochs roll over)."""
    state = {"epoch": 0, "batches": iter(())}

    def next_batch():
        batch = next(state["batches"], None)
        if batch is None:
            state["epoch"] += 1
            state["batches"] = run.feed.batches(state["epoch"], 0, run.steps_per_epoch)
            batch = next(state["batches"])
        return batch

    def measure() -> float:
        for _ in range(2 * run.feed.workers):  # prefetched while another candidate ran
            next_batch()
        start = time.perf_counter()
        for _ in range(steps):
            batch = next_batch()
            run._optimizer_step(batch.inputs, batch.targets)
        return steps * run.config.batch_size / (time.perf_counter() - start)

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cats_vs_dogs"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per timed window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    runs = {"streamed folder (--cache none)": trainer(args.data, "none", args.workers, args.batch_size),
            "streamed, workers at niceness 0": trainer(args.data, "none", args.workers, args.batch_size, 0),
            "memory cache, workers": trainer(args.data, "ram", args.workers, args.batch_size),
            "memory cache, workers at niceness 0": trainer(args.data, "ram", args.workers, args.batch_size, 0),
            "memory cache, --workers 0": trainer(args.data, "ram", 0, args.batch_size)}
    measures = {name: fed(run, args.steps) for name, run in runs.items()}
    reference = runs["memory cache, --workers 0"]
    prebuilt = [(b.inputs, b.targets) for b, _ in zip(reference.feed.batches(99, 0, reference.steps_per_epoch),
                                                      range(args.steps))]

    def model_alone() -> float:
        start = time.perf_counter()
        for images, targets in prebuilt:
            reference._optimizer_step(images, targets)
        return len(prebuilt) * args.batch_size / (time.perf_counter() - start)

    measures["model alone (pre-built batches)"] = model_alone
    for measure in measures.values():  # warm-up: workers started, first steps untimed
        measure()
    rates: dict[str, list[float]] = {name: [] for name in measures}
    names = list(measures)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            rates[name].append(measures[name]())
    alone = statistics.median(rates["model alone (pre-built batches)"])
    print(f"training images/s, {args.data}, batch {args.batch_size}, {args.workers} workers, median of "
          f"{args.rounds} interleaved windows of {args.steps} steps")
    targets = {"streamed folder (--cache none)": 0.75, "memory cache, workers": 0.85, "memory cache, --workers 0": 0.85}
    for name, values in rates.items():
        value = statistics.median(values)
        verdict = f"  {value / alone:.3f}x the model alone" if name in targets else ""
        if name in targets:
            verdict += f" ({'meets' if value / alone >= targets[name] else 'misses'} {targets[name]}x)"
        print(f"  {name:<34} {value:7.1f} img/s (min {min(values):.1f}, max {max(values):.1f}){verdict}")
    for run in runs.values():
        run.feed.close()


if __name__ == "__main__":
    main()
