"""Generated JPEG folders for the loader benchmarks, from the real photos in ../shared/data (cats_vs_dogs and
imagenette_224): each file is a random crop of a photo, resized to a random long side and re-encoded, so
decoding costs what real photos cost. Never commit the output.

    PYTHONPATH=. python benchmarks/loader_data.py OUT --count 5000 [--long-side 300 1600] [--seed 0]

OUT/<class>/<n>.jpg, classes = the source photo's class; the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import random
from multiprocessing import Pool
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def sources() -> list[tuple[Path, str]]:
    """(photo, class) of every train photo of cats_vs_dogs and imagenette_224, in a fixed order."""
    found = []
    for name in ("cats_vs_dogs", "imagenette_224"):
        root = SHARED / name / "train"
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            found += [(p, folder.name) for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg")]
    if not found:
        raise SystemExit(f"no photos under {SHARED}; the generator needs ../shared/data")
    return found


def _one(job: tuple[int, Path, str, Path, int, int, int]) -> None:
    index, photo, label, out, low, high, seed = job
    rng = random.Random(seed * 1_000_003 + index)
    target = out / label / f"{index:06d}.jpg"
    if target.exists():
        return
    with Image.open(photo) as image:
        image = image.convert("RGB")
        w, h = image.size
        area = rng.uniform(0.5, 1.0)
        cw, ch = max(16, round(w * area ** 0.5)), max(16, round(h * area ** 0.5))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = image.crop((left, top, left + cw, top + ch))
        long_side = rng.randint(low, high)
        scale = long_side / max(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)
        target.parent.mkdir(parents=True, exist_ok=True)
        crop.save(target, "JPEG", quality=rng.randint(85, 95))


def make_folder(out: Path, count: int, long_side: tuple[int, int] = (300, 1600), seed: int = 0,
                processes: int = 2) -> Path:
    """Write ``count`` JPEGs under ``out`` (kept if already there)."""
    photos = sources()
    rng = random.Random(seed)
    jobs = [(i, *photos[rng.randrange(len(photos))], out, long_side[0], long_side[1], seed) for i in range(count)]
    with Pool(processes) as pool:
        for done, _ in enumerate(pool.imap_unordered(_one, jobs, chunksize=64), 1):
            if done % 5000 == 0:
                print(f"{out}: {done}/{count}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--long-side", type=int, nargs=2, default=(300, 1600))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    make_folder(args.out, args.count, tuple(args.long_side), args.seed, args.processes)


if __name__ == "__main__":
    main()
