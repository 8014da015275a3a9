"""Writing an image (or video) folder as WebDataset tar shards: ``vitkit shard FOLDER OUT_DIR``.

Each split becomes ``OUT_DIR/{train,val}-000000.tar, ...``, at most ``shard_bytes`` each, in a seeded random
order (training reads shards sequentially, so the order inside a shard must already be mixed). A sample is
``KEY.<ext>`` (the file's bytes, or a JPEG resized to ``short_side`` when asked and the image is larger) and
``KEY.cls`` (the class index). ``OUT_DIR/index.json`` lists the classes and each shard's sample count (what
training needs to plan an epoch without reading the shards); ``classes.txt`` lists the class names.
"""

from __future__ import annotations

import io
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import VitkitError
from .decode import BadImage, load_rgb
from .images import MAX_ASPECT
from .shards import INDEX_FILE

JPEG_QUALITY = 90
CHUNK = 256  # files encoded ahead of the writer


@dataclass
class ShardReport:
    """What was written: samples and shards per split, and the files left out with the reason."""

    out: Path
    samples: dict[str, int] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def parse_size(text: str) -> int:
    """``1GB``, ``500MB``, ``64KiB``, ``2000000`` -> bytes."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    number = text.strip().upper().rstrip("S")
    digits = number.rstrip("KMGTIB")
    try:
        value = float(digits) * units[number[len(digits):]]
    except (KeyError, ValueError):
        raise VitkitError(f"--shard-size expects a size such as 1GB or 500MB, got {text!r}") from None
    if value < 1:
        raise VitkitError(f"--shard-size must be positive, got {text!r}")
    return int(value)


def shrink(path: Path, short_side: int) -> tuple[str, bytes]:
    """(extension, bytes): the file itself, or a JPEG with shorter side ``short_side`` when the image is
    larger (decoded at reduced size, resized once). Raises BadImage."""
    from PIL import Image

    image = load_rgb(path, min_size=short_side)
    w, h = image.size
    if min(w, h) <= short_side:
        return _extension(path), path.read_bytes()
    if max(w, h) > MAX_ASPECT * min(w, h):  # the same extreme-aspect cut as training applies
        keep = MAX_ASPECT * min(w, h)
        left, top = (w - min(w, keep)) // 2, (h - min(h, keep)) // 2
        image = image.crop((left, top, left + min(w, keep), top + min(h, keep)))
        w, h = image.size
    scale = short_side / min(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return "jpg", buffer.getvalue()


def _extension(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return "jpg" if ext == "jpeg" else ext


def _splits(folder: Path, task: str, val_fraction: float, seed: int) -> tuple[list[str], dict[str, tuple[list, list]]]:
    if task == "video":
        from .video_folder import find_videos

        return find_videos(folder)
    from .folders import find_dataset

    found = find_dataset(folder, val_fraction=val_fraction, seed=seed)
    return found.class_names, {"train": (found.train.paths, found.train.labels),
                               "val": (found.val.paths, found.val.labels)}


def write_shards(folder: str | Path, out: str | Path, shard_bytes: int = 10**9, short_side: int | None = None,
                 task: str = "image", val_fraction: float = 0.2, seed: int = 0, workers: int = 4,
                 progress: Callable[[str], None] = lambda message: None) -> ShardReport:
    """Write the train and val splits of ``folder`` as shards in ``out`` (see the module docstring)."""
    from webdataset import TarWriter

    folder, out = Path(folder), Path(out)
    if out.exists() and any(out.glob("*.tar")):
        raise VitkitError(f"{out} already holds shards; choose an empty OUT_DIR")
    names, splits = _splits(folder, task, val_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    report, index = ShardReport(out), {"classes": names, "task": task, "splits": {}}
    for split, (paths, labels) in splits.items():
        pairs = list(zip(paths, labels))
        random.Random(seed).shuffle(pairs)
        entries: list[dict] = []
        writer = None
        for key, (path, label, item) in enumerate(_encoded(pairs, short_side if task == "image" else None, workers)):
            if isinstance(item, str):
                report.skipped.append((str(path), item))
                continue
            ext, data = item
            # A sample takes a 512-byte header per member plus its data rounded up to 512 bytes.
            need = 2 * 512 + -(-len(data) // 512) * 512 + 512 + 10240  # and the end-of-archive record
            if writer is None or (writer.tarstream.offset + need > shard_bytes and entries[-1]["count"]):
                if writer is not None:
                    writer.close()
                entries.append({"name": f"{split}-{len(entries):06d}.tar", "count": 0})
                writer = TarWriter(str(out / entries[-1]["name"]), encoder=False, mtime=0.0)
            writer.write({"__key__": f"{key:09d}", ext: data, "cls": str(label).encode()})
            entries[-1]["count"] += 1
        if writer is not None:
            writer.close()
        index["splits"][split] = entries
        report.samples[split] = sum(e["count"] for e in entries)
        report.shards[split] = len(entries)
        progress(f"{split}: {report.samples[split]} samples in {len(entries)} shards")
    (out / INDEX_FILE).write_text(json.dumps(index, indent=1))
    (out / "classes.txt").write_text("".join(n + "\n" for n in names))
    return report


def _encoded(pairs: list[tuple[Path, int]], short_side: int | None,
             workers: int) -> Iterator[tuple[Path, int, tuple[str, bytes] | str]]:
    """(path, label, (ext, bytes) or the reason it is unusable) in order; resizing runs in threads."""
    def work(pair: tuple[Path, int]) -> tuple[str, bytes] | str:
        path = Path(pair[0])
        try:
            if short_side is None:
                data = path.read_bytes()
                return (_extension(path), data) if data else "empty file (0 bytes)"
            return shrink(path, short_side)
        except BadImage as error:
            return str(error)
        except OSError as error:
            return f"unreadable: {error.strerror or error}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(pairs), CHUNK):  # in chunks: memory stays bounded whatever the folder's size
            chunk = pairs[start : start + CHUNK]
            for (path, label), item in zip(chunk, pool.map(work, chunk)):
                yield path, label, item
