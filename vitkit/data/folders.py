"""Finding a labelled image dataset on disk.

Two layouts are understood:

- ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` (``validation/`` and ``test/`` are accepted for val);
- ``PATH/<class>/*``, split into train and val by a seeded, stratified ``val_fraction``.

Class names are the folder names, sorted; they are saved with the model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import VitkitError
from .decode import is_image_file

VAL_NAMES = ("val", "validation", "test")


@dataclass
class Split:
    """The files of one split and their class indices."""

    paths: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class FolderDataset:
    """A labelled dataset found on disk: class names and the train and val splits."""

    root: Path
    class_names: list[str]
    train: Split
    val: Split


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """``{class name: image files}`` for the class sub-folders of ``folder`` (clear errors when unusable)."""
    if not folder.is_dir():
        raise VitkitError(f"{folder} is not a folder; pass --data with a folder of class sub-folders")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise VitkitError(f"{folder} has no class sub-folders; expected {folder}/<class>/<image files>")
    files = {c.name: sorted(p for p in c.rglob("*") if p.is_file() and is_image_file(p)) for c in classes}
    empty = [name for name, paths in files.items() if not paths]
    if len(empty) == len(files):
        raise VitkitError(f"{folder} contains no image files (looked for .jpg, .png, ... in {len(files)} class folders)")
    if empty:
        raise VitkitError(f"class folder {folder / empty[0]} has no images; add images or remove the folder")
    if len(files) < 2:
        raise VitkitError(f"{folder} has a single class ({next(iter(files))}); a classifier needs at least two")
    return files


def find_dataset(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> FolderDataset:
    """Find train and val splits under ``root`` (see module docstring)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise VitkitError(f"{root} does not exist; pass --data with an image folder")
    train_dir = root / "train"
    val_dir = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        train_files, val_files = class_folders(train_dir), class_folders(val_dir)
        if set(train_files) != set(val_files):
            only_train = sorted(set(train_files) - set(val_files))
            only_val = sorted(set(val_files) - set(train_files))
            raise VitkitError(
                f"train and val classes differ under {root} (only in train: {only_train or 'none'}; "
                f"only in val: {only_val or 'none'}); give both splits the same class folders"
            )
        names = sorted(train_files)
        return FolderDataset(root, names, _split(train_files, names), _split(val_files, names))
    if train_dir.is_dir():
        root = train_dir
    files = class_folders(root)
    names = sorted(files)
    train, val = stratified_split(files, names, val_fraction, seed)
    return FolderDataset(root, names, train, val)


def stratified_split(files: dict[str, list[Path]], names: list[str], val_fraction: float,
                     seed: int) -> tuple[Split, Split]:
    """Split each class separately so val keeps the class proportions; the same seed gives the same split."""
    if not 0.0 < val_fraction < 1.0:
        raise VitkitError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    train, val = Split([], []), Split([], [])
    for label, name in enumerate(names):
        paths = list(files[name])
        rng.shuffle(paths)
        n_val = max(1, round(len(paths) * val_fraction)) if len(paths) > 1 else 0
        for split, chunk in ((val, paths[:n_val]), (train, paths[n_val:])):
            split.paths += chunk
            split.labels += [label] * len(chunk)
    return train, val


def _split(files: dict[str, list[Path]], names: list[str]) -> Split:
    split = Split([], [])
    for label, name in enumerate(names):
        split.paths += files[name]
        split.labels += [label] * len(files[name])
    return split
