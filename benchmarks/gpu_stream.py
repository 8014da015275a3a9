"""Does the streaming loader keep a GPU fed? ViT-B/16 bf16 training images/s from a 224 px JPEG folder (decoded
and augmented by loader workers, ``--cache none``) against the same steps on synthetic tensors already on the GPU.
Self-contained: it writes its own JPEG folder (3,000 images, re-encoded crops of ../shared/data photos when
present, else structured noise) and needs only the repo and its pip requirements.

    PYTHONPATH=. python benchmarks/gpu_stream.py                # one H200 + 16 cores: under 3 minutes
    PYTHONPATH=. python benchmarks/gpu_stream.py --device cpu --model vit_ti16 --batch-size 8 --steps 2 --count 64

Target (issue 18): the folder >= 0.9x the synthetic tensors. Windows alternate (synthetic, folder, synthetic,
folder); before each folder window the batches the workers prefetched meanwhile are taken untimed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CLASSES = 10


def _photos() -> list[Path]:
    found: list[Path] = []
    for name in ("imagenette_224", "cats_vs_dogs"):
        found += sorted((SHARED / name / "train").glob("*/*.[jJ][pP]*[gG]")) if (SHARED / name).is_dir() else []
    return found


def _write(job: tuple[int, str | None, str]) -> None:
    index, photo, out = job
    rng = random.Random(index)
    side = 256
    if photo is not None:  # a random crop of a real photo, short side 256
        with Image.open(photo) as image:
            image = image.convert("RGB")
            w, h = image.size
            crop = min(w, h) * rng.uniform(0.7, 1.0)
            left, top = rng.uniform(0, w - crop), rng.uniform(0, h - crop * 0.75)
            image = image.crop((round(left), round(top), round(left + crop), round(top + crop * 0.75)))
    else:  # smooth noise with a few bright shapes: compresses and decodes like a photo, not like flat noise
        g = np.random.default_rng(index)
        base = g.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((side * 4 // 3, side), Image.BICUBIC)
        array = np.asarray(image).copy()
        for _ in range(3):
            y, x, r = g.integers(0, side), g.integers(0, side * 4 // 3), g.integers(10, 60)
            yy, xx = np.ogrid[:side, : side * 4 // 3]
            array[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = g.integers(0, 255, 3)
        image = Image.fromarray(array)
    w, h = image.size
    image = image.resize((round(w * side / min(w, h)), round(h * side / min(w, h))), Image.BICUBIC)
    target = Path(out) / f"class{index % CLASSES}" / f"{index:05d}.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, "JPEG", quality=90)


def make_folder(out: Path, count: int) -> Path:
    if len(list(out.glob("*/*.jpg"))) >= count:
        return out
    photos = _photos()
    jobs = [(i, str(photos[i % len(photos)]) if photos else None, str(out)) for i in range(count)]
    with Pool(os.cpu_count()) as pool:
        pool.map(_write, jobs, chunksize=32)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "vitkit-gpu-stream")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--model", default="vit_b16")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per timed window")
    parser.add_argument("--workers", type=int, default=None, help="default: vitkit's (cores - 1, at most 16)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    from vitkit.train.config import TrainConfig
    from vitkit.train.loop import Trainer

    began = time.perf_counter()
    folder = make_folder(args.folder, args.count)
    made = time.perf_counter() - began
    config = TrainConfig(data=str(folder), model=args.model, img_size=224, batch_size=args.batch_size,
                         precision="bf16", cache="none", workers=args.workers, val_fraction=0.05,
                         out=tempfile.mkdtemp(prefix="vitkit-gpu-stream-run-"))
    run = Trainer(config, device=args.device)
    device, batch = run.device, args.batch_size
    synthetic = (torch.randn(batch, 3, 224, 224, device=device),
                 torch.nn.functional.one_hot(torch.randint(0, CLASSES, (batch,), device=device), CLASSES).float())
    state = {"epoch": 0, "batches": iter(()), "wait": 0.0}

    def next_batch():
        ready = next(state["batches"], None)
        if ready is None:
            state["epoch"] += 1
            state["batches"] = run.feed.batches(state["epoch"], 0, run.steps_per_epoch)
            ready = next(state["batches"])
        state["wait"] += run.feed.wait
        return ready

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def from_tensors() -> float:
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            run._optimizer_step(*synthetic)
        sync()
        return args.steps * batch / (time.perf_counter() - start)

    def from_folder() -> float:
        for _ in range(2 * run.feed.workers):  # prefetched while the other window ran
            next_batch()
        sync()
        state["wait"] = 0.0
        start = time.perf_counter()
        for _ in range(args.steps):
            ready = next_batch()
            run._optimizer_step(ready.inputs.to(device, non_blocking=True),
                                ready.targets.to(device, non_blocking=True))
        sync()
        return args.steps * batch / (time.perf_counter() - start)

    from_tensors()  # warm-up: kernels, allocator, workers started
    next_batch()
    rates: dict[str, list[float]] = {"synthetic tensors on the device": [], "JPEG folder, streamed": []}
    waits = []
    for _ in range(2):
        rates["synthetic tensors on the device"].append(from_tensors())
        rates["JPEG folder, streamed"].append(from_folder())
        waits.append(state["wait"] / args.steps)
    run.feed.close()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{args.model} bf16 training, batch {batch}, 224 px, {name}, {run.feed.workers} loader workers "
          f"({os.cpu_count()} cores), folder of {args.count} JPEGs (short side 256; made in {made:.0f} s)")
    print(f"{'input':<34} {'img/s (median of 2)':>20}  min / max")
    for label, values in rates.items():
        print(f"{label:<34} {statistics.median(values):>20.1f}  {min(values):.1f} / {max(values):.1f}")
    ratio = statistics.median(rates["JPEG folder, streamed"]) / statistics.median(rates["synthetic tensors on the device"])
    print(f"folder / synthetic = {ratio:.3f} ({'meets' if ratio >= 0.9 else 'misses'} the 0.9x target); the step "
          f"waited {1000 * statistics.median(waits):.1f} ms for data on average; total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
